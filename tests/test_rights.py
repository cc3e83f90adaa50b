"""The support desk's commands: access, opposition, rectification, erasure (NouMa's privacy policy).

Erasure is checked the way an auditor would: every table dumped, every outbox file read, and no
trace of the address, the name, the IP or the user agent anywhere.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mailer import consent
from mailer.batch import BatchSpec
from mailer.cli import main
from mailer.db import Base, session_scope
from mailer.delivery import deliver_batch
from mailer.models import ConsentSource, Delivery, DeliveryState, Recipient
from mailer.provider_events import batches as provider_events
from mailer.rights.models import RightsRequest
from tests.alert_factories import add_search, add_tenders, tender
from tests.factories import all_deliveries, make_recipient

ADDRESS = "zoe.quintal@example.com"
NAME = "Zoé Quintal"
IP = "198.51.100.77"
AGENT = "QuintalBrowser/7.1 (erasure-probe)"
OTHER = "paul.other@example.com"


def given_two_people() -> tuple[int, int]:
    """Zoé, with consents proven by an IP and a user agent, and Paul; both mailed once."""
    with session_scope() as session:
        zoe = make_recipient(session, ADDRESS, name=NAME, granted=["tender_alerts"])
        paul = make_recipient(session, OTHER, name="Paul Other", granted=["tender_alerts"])
        consent.grant(
            session,
            zoe.id,
            "nouma_offers",
            consent.Proof(source=ConsentSource.PREFERENCE_CENTRE, ip=IP, user_agent=AGENT),
        )
        ids = (zoe.id, paul.id)
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:rights", ids))
    return ids


def provider_events_about(delivery_ids: dict[int, str]) -> None:
    """SendGrid events for each delivery, stored as a webhook body and applied."""
    events = [
        {
            "email": address,
            "event": "open",
            "ip": IP if address == ADDRESS else "203.0.113.9",
            "useragent": AGENT if address == ADDRESS else "Other/1.0",
            "sg_event_id": f"evt-{delivery_id}",
            "timestamp": 1_764_000_000,
            "delivery_id": str(delivery_id),
        }
        for delivery_id, address in delivery_ids.items()
    ]
    batch = provider_events.store_batch("sendgrid", json.dumps(events).encode(), signed_at=1_764_000_000)
    provider_events.apply_batch(batch)


def deliveries_by_address(zoe: int, paul: int) -> dict[int, str]:
    return {d.id: ADDRESS if d.recipient_id == zoe else OTHER for d in all_deliveries()}


def test_export_holds_everything_on_that_person_and_nothing_on_anyone_else(db, tmp_path, capsys):
    # Given Zoé and Paul, mailed, with provider events, Zoé with a saved search and a tender naming her
    zoe, paul = given_two_people()
    provider_events_about(deliveries_by_address(zoe, paul))
    add_search(ADDRESS, name="Voirie Isère", keywords="voirie", departments=["38"])
    add_tenders(tender(title="Voirie", contact={"name": "Mme Z. Quintal", "email": "achats@example.invalid"}))

    # When the support desk exports what we hold on Zoé, with her name for tender notices
    out = tmp_path / "access-4521"
    assert (
        main(["subject", "export", ADDRESS, "--name", NAME, "--out", str(out), "--note", "ticket 4521"]) == 0
    )
    found = json.loads((tmp_path / "access-4521.json").read_text(encoding="utf-8"))
    page = (tmp_path / "access-4521.html").read_text(encoding="utf-8")

    # Then every part is there
    assert found["recipient"]["address"] == ADDRESS and found["recipient"]["name"] == NAME
    assert {e["purpose"] for e in found["consent_events"]} == {"tender_alerts", "nouma_offers"}
    assert any(e["ip"] == IP and e["user_agent"] == AGENT for e in found["consent_events"])
    assert [s["name"] for s in found["saved_searches"]] == ["Voirie Isère"]
    (mailed,) = found["deliveries"]
    assert mailed["state"] in ("sent", "delivered") and mailed["events"][0]["payload"]["ip"] == IP
    assert [t["found_by"] for t in found["tender_contact_of"]] == ["name"]
    # ... including this very request, once recorded
    assert found["rights_requests"] == [] or found["rights_requests"][0]["kind"] == "access"
    # ... and nothing on Paul
    whole = json.dumps(found)
    for other in (OTHER, "Paul", "203.0.113.9"):
        assert other not in whole, whole[max(0, whole.find(other) - 300) : whole.find(other) + 100]
    # ... and the readable page says it in Zoé's language
    assert "Vos données personnelles" in page and ADDRESS in page and OTHER not in page
    with session_scope(readonly=True) as session:
        assert [r.kind.value for r in session.scalars(sa.select(RightsRequest))] == ["access"]


def test_opposition_stops_sends_already_queued_and_withdraws_consents(db, capsys):
    # Given Zoé with two purposes granted, and a send of hers already claimed (pending)
    with session_scope() as session:
        zoe = make_recipient(session, ADDRESS, granted=["tender_alerts", "nouma_offers"]).id
    spec = BatchSpec("test_message", "nouma_offers", "test:queued", (zoe,))
    # When she opposes through the support desk before the worker gets to it
    assert main(["subject", "oppose", ADDRESS, "--note", "ticket 4522"]) == 0
    deliver_batch(spec)
    # Then the queued send is skipped, both consents are withdrawn with the request as proof
    (skipped,) = all_deliveries()
    assert (skipped.state, skipped.skip_reason) == (DeliveryState.SKIPPED, "suppressed:opposition")
    with session_scope(readonly=True) as session:
        current = consent.current(session, zoe)
        assert not current["tender_alerts"].granted and not current["nouma_offers"].granted
    assert "consent withdrawn: tender_alerts, nouma_offers" in capsys.readouterr().out
    # ... and as a tender contact too, by address or by name
    assert main(["subject", "oppose", "achats@example.invalid"]) == 0
    assert main(["subject", "oppose", "--name", "Élisabeth Chich-Bourgine"]) == 0
    assert main(["subject", "oppose"]) == 2
    assert main(["subject", "oppose", ADDRESS, "--name", "Zoé Quintal"]) == 2


def test_rectification_keeps_history_and_checks_the_new_address(db, capsys):
    # Given Zoé mailed at her old address, which she opposed for partner offers, and a new address
    # that bounced hard in the past
    zoe, _ = given_two_people()
    assert main(["subject", "oppose", ADDRESS, "--purpose", "partner_offers"]) == 0
    assert main(["suppress", "add", "zoe@example.com", "--all", "--reason", "hard_bounce"]) == 0
    # When she asks for her new address
    assert main(["subject", "rectify", ADDRESS, "zoe@example.com", "--note", "ticket 4524"]) == 0
    out = capsys.readouterr().out
    # Then her history is hers, the old address stays opposed, and the new one's bounce is shown
    with session_scope(readonly=True) as session:
        assert session.get(Recipient, zoe).address == "zoe@example.com"
        assert len(session.scalars(sa.select(Delivery).where(Delivery.recipient_id == zoe)).all()) == 1
    assert "already suppressed (all: hard_bounce)" in out
    assert main(["suppress", "check", ADDRESS]) == 0
    assert "partner_offers: opposition" in capsys.readouterr().out
    with session_scope(readonly=True) as session:
        kinds = [r.kind.value for r in session.scalars(sa.select(RightsRequest).order_by(RightsRequest.id))]
    assert kinds == ["opposition", "rectification"]


def dump_everything(url: str) -> str:
    """Every row of every table, as text (JSON columns included)."""
    from mailer.db import get_engine

    parts = []
    with get_engine(url).connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                parts.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(parts)


def test_erasure_leaves_no_trace_in_any_table_or_file(db, isolated_environment, capsys):
    # Given Zoé mailed (a copy in the outbox), with provider events and a stored webhook body about
    # her, a consent proven by her IP and user agent, a saved search, a note naming her address,
    # a tender naming her as its contact, and an error text quoting her address
    zoe, paul = given_two_people()
    assert any(ADDRESS in p.read_text(errors="replace") for p in isolated_environment.glob("*.eml"))
    provider_events_about(deliveries_by_address(zoe, paul))
    add_search(ADDRESS, name="Voirie Isère", keywords="voirie", departments=["38"])
    add_tenders(
        tender(title="Voirie", contact={"name": NAME, "email": ADDRESS, "phone": "+33 4 00 00 00 77"})
    )
    assert (
        main(["subject", "oppose", ADDRESS, "--purpose", "partner_offers", "--note", f"asked by {ADDRESS}"])
        == 0
    )
    with session_scope() as session:
        for delivery in session.scalars(sa.select(Delivery).where(Delivery.recipient_id == zoe)):
            delivery.error = f"550 mailbox {ADDRESS.upper()} unavailable"
    before = dump_everything(db)
    assert all(trace in before for trace in (ADDRESS, "Quintal", IP, AGENT))

    # When the support desk erases her
    assert main(["subject", "erase", ADDRESS, "--yes", "--note", "ticket 4525"]) == 0

    # Then nothing clear about her is left in any table, nor in the outbox
    after = dump_everything(db)
    for trace in (ADDRESS, ADDRESS.upper(), "Quintal", "quintal", IP, AGENT, "00 00 00 77"):
        assert trace not in after, trace
    for path in isolated_environment.glob("*"):
        assert ADDRESS not in path.read_text(errors="replace"), path.name
    # ... while Paul's data, the suppression hash and a pseudonymous trail stay
    assert OTHER in after and "203.0.113.9" in after
    with session_scope(readonly=True) as session:
        kinds = [r.kind.value for r in session.scalars(sa.select(RightsRequest).order_by(RightsRequest.id))]
        erased = session.get(Recipient, zoe)
    assert kinds == ["opposition", "erasure"] and erased.state.value == "erased"
    assert main(["suppress", "check", ADDRESS]) == 0
    assert "partner_offers: opposition" in capsys.readouterr().out
    # ... and a send to her now is skipped as erased
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:after", (zoe,)))
    assert [(d.state, d.skip_reason) for d in all_deliveries() if d.belongs_to == "test:after"] == [
        (DeliveryState.SKIPPED, "erased")
    ]


def test_erasing_an_unknown_address_says_so_and_records_nothing(db, capsys):
    assert main(["subject", "erase", "nobody@example.com", "--yes"]) == 1
    assert "nothing is held on that address" in capsys.readouterr().err
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RightsRequest)) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["subject", "export", "not-an-address"],
        ["subject", "oppose", "not-an-address"],
        ["subject", "rectify", "zoe@example.com", "not-an-address"],
        ["subject", "erase", "not-an-address", "--yes"],
    ],
)
def test_bad_addresses_get_one_line(sqlite_db, argv, capsys):
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_every_subject_command_has_help_with_an_example():
    from mailer.cli.subject import subject

    for name, command in subject.commands.items():
        assert "Example" in (command.help or ""), name
