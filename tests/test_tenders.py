"""Tenders in: the real TED notices and BOAMP records import; re-imports update; bad lines named."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
import sqlalchemy as sa

from mailer.alerts.formats import read_tender_file
from mailer.alerts.models import Tender
from mailer.alerts.places import places
from mailer.alerts.tenders import import_tenders
from mailer.cli import main
from mailer.db import session_scope
from mailer.errors import InvalidInput
from mailer.suppression.models import TenderContactKey
from tests.conftest import shared_data
from tests.factories import table_counts

#: TED document type codes of notices that announce no tender: results, awards, modifications,
#: ex ante transparency. Stated here apart from the reader's own table.
TED_NOT_ANNOUNCED = {"7": "result", "J": "result", "R": "result", "K": "modification", "V": "direct_award"}


def tenders_by_reference() -> dict[str, Tender]:
    with session_scope(readonly=True) as session:
        return {t.reference: t for t in session.scalars(sa.select(Tender))}


def ted_notices() -> list[dict]:
    path = shared_data("tenders", "ted_fr_notices.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_758_real_ted_notices_import_or_are_left_out_by_kind_and_a_second_import_changes_nothing(db):
    # Given the real TED notices
    path = shared_data("tenders", "ted_fr_notices.jsonl")
    notices = ted_notices()
    announced_kinds = [n for n in notices if n["document_type_code"] not in TED_NOT_ANNOUNCED]

    # When they are imported twice
    parsed = read_tender_file(path)
    with session_scope() as session:
        first = import_tenders(session, parsed.records)
    with session_scope() as session:
        second = import_tenders(session, read_tender_file(path).records)

    # Then none is refused; every result, award, modification and VEAT is left out, named by
    # its line and kind; every other one is stored once, and the second import changed nothing
    assert parsed.problems == []
    left_out = {s.where: s for s in parsed.skipped}
    assert {line: s.kind.value for line, s in left_out.items()} == {
        line: TED_NOT_ANNOUNCED[n["document_type_code"]]
        for line, n in enumerate(notices, start=1)
        if n["document_type_code"] in TED_NOT_ANNOUNCED
    }
    assert all(s.message.endswith("not announced") for s in parsed.skipped)
    assert len(left_out) + len(announced_kinds) == 758
    assert (first.created, first.updated) == (len(announced_kinds), 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, len(announced_kinds))
    stored = tenders_by_reference()
    assert sorted(stored) == sorted(f"ted:{n['doc_id']}" for n in announced_kinds)
    sample = stored["ted:141492-2016"]
    assert sample.buyer_name == "Commune de Saint-Didier-au-Mont-d'Or"
    assert sample.departments == ["69"] and sample.regions == ["84"]
    assert sample.cpv_codes[0] == "85300000" and "85312110" in sample.cpv_codes
    assert sample.value_cents == 6_250_000 * 100
    assert str(sample.deadline_on) == "2016-05-19" and str(sample.deadline_time) == "12:00:00"
    assert sample.contact_name == "M. le maire" and sample.contact_email == "mgbarra@example.invalid"
    assert (sample.notice_kind, sample.notice_type) == ("competition", "ted:H")


def test_ted_notice_kinds_follow_the_document_type_and_award_amounts_are_never_a_value(sqlite_db):
    # Given the real TED notices, imported
    notices = {f"ted:{n['doc_id']}": n for n in ted_notices()}
    with session_scope() as session:
        import_tenders(session, read_tender_file(shared_data("tenders", "ted_fr_notices.jsonl")).records)
    stored = tenders_by_reference()

    # Then each kind is what its document type says, in TED's own words
    words = Counter((notices[r]["document_type"], t.notice_kind.value) for r, t in stored.items())
    assert words[("Contract notice", "competition")] == 190
    assert words[("Prior information notice without call for competition", "planning")] == 22
    assert words[("Prior information notice with call for competition", "competition")] == 22
    assert words[("Buyer profile", "planning")] == 8
    assert words[("Additional information", "change")] == 2
    assert all(kind in {"competition", "planning", "change"} for _, kind in words)
    # and a stored value is always the estimated one, never a total awarded
    for reference, tender in stored.items():
        estimated = (notices[reference]["value_estimated_total"] or {}).get("amount")
        expected = round(float(estimated) * 100) if estimated else None
        assert tender.value_cents == expected, reference


def test_departments_derived_from_nuts_and_postal_codes_agree_with_the_flat_reference_file(sqlite_db):
    # Given the flat file, whose dep_code was derived independently for 733 notices
    flat = shared_data("tenders", "ted_fr_notices_flat.csv")
    parsed = read_tender_file(shared_data("tenders", "ted_fr_notices.jsonl"))
    stored = {n.record.reference: n.record for n in parsed.records}

    # Then every department it names is one we derived, for every notice kept
    with flat.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dep_code"]]
    assert len(rows) == 733
    kept = [r for r in rows if f"ted:{r['id']}" in stored]
    assert len(kept) > 400
    assert [r["id"] for r in kept if r["dep_code"] not in (stored[f"ted:{r['id']}"].departments or [])] == []
    # and the region follows the department (overseas collectivities belong to none)
    assert all(
        places().departments[d].region_code in t.regions
        for t in stored.values()
        for d in t.departments or []
        if places().departments[d].region_code
    )
    assert stored["ted:459173-2016"].departments == ["988"]


def test_reimporting_a_changed_tender_updates_it_keeps_its_id_and_its_contact_keys(db, tmp_path):
    # Given a tender imported once
    path = tmp_path / "tenders.jsonl"
    line = {
        "reference": "nouma:1",
        "title": "Voirie",
        "departments": ["38"],
        "contact": {"name": "Jean Dupré"},
    }
    path.write_text(json.dumps(line) + "\n")
    assert main(["tenders", "import", str(path)]) == 0
    (before,) = tenders_by_reference().values()

    # When the site sends it again with a new title and another contact
    line.update(title="Voirie et réseaux divers", contact={"email": "achats@example.invalid"})
    path.write_text(json.dumps(line) + "\n")
    assert main(["tenders", "import", str(path)]) == 0

    # Then it is the same tender (same id: not announced again), updated, with the new contact's keys
    (after,) = tenders_by_reference().values()
    assert (after.id, after.title, after.contact_name) == (before.id, "Voirie et réseaux divers", None)
    with session_scope(readonly=True) as session:
        keys = session.scalars(sa.select(TenderContactKey.key)).all()
    from mailer.addresses import hash_of
    from mailer.suppression.contacts import contact_keys

    assert sorted(keys) == sorted(contact_keys(None, "achats@example.invalid"))
    assert hash_of("achats@example.invalid") in keys
    assert not contact_keys("Jean Dupré", None) & set(keys)


def test_a_bad_line_is_named_and_nothing_is_imported(db, tmp_path, capsys):
    # Given a file whose third line has a bad CPV code and fourth is not JSON
    path = tmp_path / "tenders.jsonl"
    good = {"reference": "nouma:1", "title": "Voirie", "departments": ["38"]}
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "reference": "nouma:2"}),
                json.dumps({**good, "reference": "nouma:3", "cpv": ["4523"]}),
                "{not json",
                json.dumps({**good, "reference": "nouma:4", "departments": ["99"]}),
            ]
        )
    )
    before = table_counts()

    # When it is imported
    code = main(["tenders", "import", str(path)])

    # Then the command fails naming the lines, and the database is unchanged
    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:3: cpv: '4523' is not a CPV code (8 digits, optionally -check digit)" in err
    assert f"{path}:4: not valid JSON" in err
    assert f"{path}:5: departments: '99' is not a French department code" in err
    assert "line 3:" in err and "nothing was imported" in err and "Traceback" not in err
    assert table_counts() == before

    # And with --skip-invalid the good lines go in
    assert main(["tenders", "import", str(path), "--skip-invalid"]) == 0
    assert sorted(tenders_by_reference()) == ["nouma:1", "nouma:2"]


def test_a_missing_file_is_a_clear_error(sqlite_db, tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        read_tender_file(tmp_path / "absent.jsonl")


def test_a_file_in_no_known_format_gets_one_line_naming_the_formats(sqlite_db, tmp_path, capsys):
    # Given a CSV export, which no reader reads
    path = tmp_path / "tenders.csv"
    path.write_text("reference;title\nnouma:1;Voirie\n", encoding="utf-8")

    # When it is imported
    code = main(["tenders", "import", str(path)])

    # Then one line says so and names every format, and nothing is written
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(f"mailer: error: {path}: not a tender file the mailer reads")
    for name in ("nouma", "ted", "boamp", "eforms"):
        assert name in err


def test_postal_codes_name_corsican_and_overseas_departments():
    reference = places()
    assert reference.department_of_postal_code("20000") == "2A"
    assert reference.department_of_postal_code("20200") == "2B"
    assert reference.department_of_postal_code("97400") == "974"
    assert reference.department_of_postal_code("97133") == "977"
    assert reference.department_of_postal_code("97744") is None  # a CEDEX code of La Réunion
    assert reference.department_of_postal_code("98800") == "988"
    assert reference.department_of_postal_code("38000") == "38"
    assert reference.department_of_postal_code("3800") is None
    assert reference.from_nuts(["FR"]) == ([], [])
    assert reference.from_nuts(["FRK24"]) == (["38"], [])
    assert reference.from_nuts(["FRK2"]) == ([], ["84"])
