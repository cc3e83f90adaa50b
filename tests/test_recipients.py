"""Recipient imports (CSV and JSON Lines, all or nothing), rectification and erasure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailer import gate, recipients
from mailer.db import session_scope
from mailer.errors import InvalidInput, NotFound
from mailer.models import AccountState, ConsentEvent, ConsentSource, Recipient, SuppressionReason
from mailer.recipient_file import read_recipient_file
from mailer.suppression import entries
from tests.factories import table_counts

CSV = """address,name,locale,time_zone,tender_alerts,tender_alerts_at,tender_alerts_source,tender_alerts_ip,nouma_offers,nouma_offers_wording_version
Marie.Dupont@Example.com,Marie Dupont,fr,Europe/Paris,granted,2026-09-14T09:12:00,signup_form,192.0.2.10,withdrawn,offers-2026-01
john@example.com,John,en,,granted,,,,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def do_import(path: Path, **kwargs) -> recipients.ImportResult:
    parsed = read_recipient_file(path, **kwargs)
    assert parsed.problems == []
    with session_scope() as session:
        return recipients.import_records(session, parsed.records, recorded_by="test")


def test_csv_import_with_proof(db, tmp_path):
    result = do_import(write(tmp_path, "people.csv", CSV))
    assert (result.created, result.consent_events) == (2, 3)
    with session_scope(readonly=True) as session:
        marie = recipients.get(session, "marie.dupont@example.com")
        assert (marie.name, marie.locale, marie.address) == ("Marie Dupont", "fr", "marie.dupont@example.com")
        events = {
            e.purpose: e
            for e in session.scalars(sa.select(ConsentEvent).where(ConsentEvent.recipient_id == marie.id))
        }
        # a time without an offset is read in Europe/Paris (09:12 CEST = 07:12 UTC)
        assert events["tender_alerts"].at.isoformat() == "2026-09-14T07:12:00+00:00"
        assert (events["tender_alerts"].source, events["tender_alerts"].ip) == (
            ConsentSource.SIGNUP_FORM,
            "192.0.2.10",
        )
        assert events["nouma_offers"].wording_version == "offers-2026-01"
        assert gate.check(session, "tender_alerts", [marie.id]).reasons == {marie.id: None}
        assert gate.check(session, "nouma_offers", [marie.id]).reasons == {marie.id: "no_consent"}


def test_jsonl_import_and_reimport_changes_nothing(db, tmp_path):
    path = write(
        tmp_path,
        "people.jsonl",
        jsonl(
            {
                "address": "a@example.com",
                "consents": {"partner_offers": {"granted": True, "partner_list_version": "2026-09"}},
            },
            {"address": "b@example.com", "locale": "en"},
        ),
    )
    first = do_import(path)
    before = table_counts()
    second = do_import(path)
    assert (first.created, first.consent_events) == (2, 1)
    assert (second.created, second.updated, second.consent_events, second.unchanged_consents) == (0, 0, 0, 1)
    assert table_counts() == before


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("bad.jsonl", jsonl({"address": "ok@example.com"}) + "{not json\n", 2, "not valid JSON"),
        ("bad.jsonl", jsonl({"address": "ok@example.com"}, {"address": "nope"}), 2, "not an e-mail address"),
        ("bad.jsonl", jsonl({"address": "ok@example.com", "locale": "de"}), 1, "locale"),
        (
            "bad.jsonl",
            jsonl({"address": "ok@example.com", "consents": {"newsletter": {"granted": True}}}),
            1,
            "consents.newsletter",
        ),
        (
            "bad.jsonl",
            jsonl({"address": "ok@example.com", "consents": {"nouma_offers": {"granted": "maybe"}}}),
            1,
            "granted or withdrawn",
        ),
        (
            "bad.jsonl",
            jsonl(
                {
                    "address": "ok@example.com",
                    "consents": {"nouma_offers": {"granted": True, "at": "2099-01-01T00:00:00Z"}},
                }
            ),
            1,
            "future",
        ),
        (
            "bad.jsonl",
            jsonl({"address": "ok@example.com", "time_zone": "Mars/Olympus"}),
            1,
            "unknown time zone",
        ),
        ("bad.jsonl", jsonl({"address": "ok@example.com", "emial": "typo"}), 1, "unknown field"),
        (
            "bad.jsonl",
            jsonl({"address": "ok@example.com"}, {"address": "OK@example.com"}),
            2,
            "already given on line 1",
        ),
        ("bad.jsonl", "[1, 2]\n", 1, "expected a JSON object"),
        (
            "bad.jsonl",
            jsonl({"address": "ok@example.com", "name": "Jean\nBcc: x@example.com"}),
            1,
            "line break",
        ),
        ("bad.csv", "address,nouma_offer\nok@example.com,granted\n", 1, "unknown column 'nouma_offer'"),
        ("bad.csv", "name\nMarie\n", 1, "no address column"),
        (
            "bad.csv",
            "address,nouma_offers\nok@example.com,granted\nko@example.com,perhaps\n",
            3,
            "granted or withdrawn",
        ),
        ("bad.csv", "address\nok@example.com,extra\n", 2, "more values than header columns"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_imported(db, tmp_path, name, text, line, message):
    parsed = read_recipient_file(write(tmp_path, name, text))
    assert parsed.problems, "the file should have been refused"
    assert parsed.problems[0][0] == line and message in parsed.problems[0][1]


def test_skip_invalid_imports_the_good_lines(db, tmp_path):
    parsed = read_recipient_file(
        write(tmp_path, "mixed.jsonl", jsonl({"address": "good@example.com"}, {"address": "bad"}))
    )
    assert [n.line for n in parsed.records] == [1] and [p[0] for p in parsed.problems] == [2]
    with session_scope() as session:
        recipients.import_records(session, parsed.records, recorded_by="test")
    assert table_counts()["recipients"] == 1


def test_external_ref_of_another_recipient_is_refused_and_nothing_written(db, tmp_path):
    do_import(write(tmp_path, "one.jsonl", jsonl({"address": "a@example.com", "external_ref": "acct-1"})))
    before = table_counts()
    parsed = read_recipient_file(
        write(tmp_path, "two.jsonl", jsonl({"address": "b@example.com", "external_ref": "acct-1"}))
    )
    with (
        pytest.raises(InvalidInput, match="line 1: external_ref 'acct-1' belongs to another recipient"),
        session_scope() as session,
    ):
        recipients.import_records(session, parsed.records, recorded_by="test")
    assert table_counts() == before


def test_not_utf8_and_missing_files_are_clear_errors(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("address,name\nx@example.com,Hélène\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_recipient_file(path)
    with pytest.raises(InvalidInput, match="no such file"):
        read_recipient_file(tmp_path / "absent.jsonl")


def test_rectification_carries_the_persons_oppositions_not_the_mailbox_facts(db):
    with session_scope() as session:
        rid = recipients.create(session, "old@example.com").id
        entries.add(session, "old@example.com", scope="all", reason=SuppressionReason.OPPOSITION, source="t")
        entries.add(
            session, "old@example.com", scope="nouma_offers", reason=SuppressionReason.HARD_BOUNCE, source="t"
        )
    with session_scope() as session:
        recipients.rectify(session, "old@example.com", "New@Example.com", recorded_by="support")
    with session_scope(readonly=True) as session:
        moved = entries.entries_for(session, "new@example.com")
        kept = entries.entries_for(session, "old@example.com")
        assert [(e.scope, e.reason) for e in moved] == [("all", SuppressionReason.OPPOSITION)]
        assert len(kept) == 2  # the old address stays suppressed too
        assert gate.check(session, "tender_alerts", [rid]).reasons == {rid: "suppressed:opposition"}


def test_rectify_refuses_an_address_already_taken(db):
    with session_scope() as session:
        recipients.create(session, "a@example.com")
        recipients.create(session, "b@example.com")
    with pytest.raises(InvalidInput, match="already has the new address"), session_scope() as session:
        recipients.rectify(session, "a@example.com", "b@example.com", recorded_by="t")


def test_erasure_removes_personal_data_and_the_opposition_survives(db):
    with session_scope() as session:
        rid = recipients.create(session, "gone@example.com", name="Gone").id
        entries.add(session, "gone@example.com", scope="all", reason=SuppressionReason.OPPOSITION, source="t")
    with session_scope() as session:
        recipients.erase(session, "gone@example.com")
    with session_scope() as session:
        row = session.get(Recipient, rid)
        assert (row.address, row.name, row.address_hash, row.state) == (None, None, None, AccountState.ERASED)
        assert gate.check(session, "tender_alerts", [rid]).reasons == {rid: "erased"}
        # the person signs up again later: still opposed
        again = recipients.create(session, "gone@example.com")
        assert gate.check(session, "tender_alerts", [again.id]).reasons == {again.id: "suppressed:opposition"}
    with pytest.raises(NotFound), session_scope() as session:
        recipients.erase(session, "nobody@example.com")


@pytest.mark.parametrize("dated", [False, True])
def test_importing_a_file_again_after_a_withdrawal_never_grants_again(db, tmp_path, dated):
    from mailer import consent
    from mailer.models import ConsentSource

    grant = {"granted": True, **({"at": "2026-01-05T10:00:00+01:00"} if dated else {})}
    path = write(
        tmp_path, "people.jsonl", jsonl({"address": "a@example.com", "consents": {"nouma_offers": grant}})
    )
    do_import(path)
    # Given the person then withdrew, through the unsubscribe link
    with session_scope() as session:
        rid = recipients.get(session, "a@example.com").id
        consent.withdraw(session, rid, "nouma_offers", consent.Proof(source=ConsentSource.ONE_CLICK))
    before = table_counts()
    # When the same file is imported again
    result = do_import(path)
    # Then nothing is written and the gate still refuses
    assert (result.consent_events, result.unchanged_consents) == (0, 1)
    assert table_counts() == before
    with session_scope(readonly=True) as session:
        assert gate.check(session, "nouma_offers", [rid]).reasons == {rid: "no_consent"}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("name", "Zoé " * 51, "name: longer than 200 characters"),
        ("external_ref", "x" * 65, "external_ref: longer than 64 characters"),
        ("name", "Zoé\x00Quintal", "name: contains a line break, a NUL"),
        ("name", "Zoé \ud800 Quintal", "name: Input should be a valid string"),
        ("address", "zoe\x00@example.com", "address: not an e-mail address (control"),
        ("user_agent", "U" * 501, "user_agent: longer than 500 characters"),
        ("at", "9999-12-31T00:00:00+00:00", "at: is in the future"),
        ("ip", "198.51.100.7\n", "ip: contains a line break"),
    ],
)
def test_a_value_the_database_cannot_hold_is_refused_with_its_line(db, tmp_path, capsys, field, value, says):
    from mailer.cli import main
    from tests.factories import table_counts

    # Given a file whose second line holds a value too long, or a NUL, or an unpaired surrogate
    good = {"address": "ok@example.com", "name": "Ok"}
    bad: dict = {"address": "zoe@example.com", "name": "Zoé"}
    if field in ("user_agent", "at", "ip"):
        bad["consents"] = {"tender_alerts": {"granted": True, field: value}}
    else:
        bad[field] = value
    path = tmp_path / "people.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    before = table_counts()

    # When it is imported
    code = main(["recipients", "import", str(path)])

    # Then one line names the line and the field, without the value, and nothing was written
    err = capsys.readouterr().err
    assert code == 1 and ":2: " in err and says in err and "Traceback" not in err
    assert "Quintal" not in err and "UUUU" not in err and "xxxx" not in err
    assert table_counts() == before
