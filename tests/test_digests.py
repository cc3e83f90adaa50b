"""Digest runs end to end: windows, high-water marks, never twice, the gate, contacts, rendering."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

import pytest
import sqlalchemy as sa

from mailer.alerts import digest_content, digest_mail, planning, windows
from mailer.alerts.models import Digest, DigestRun, Frequency, SavedSearch
from mailer.cli import main
from mailer.db import session_scope
from mailer.delivery import deliver_batch
from mailer.message import substitute
from mailer.models import DeliveryState
from mailer.suppression import contacts
from tests.alert_factories import TODAY, add_search, add_tenders, plan, run_window, tender
from tests.conftest import counted_queries
from tests.factories import all_deliveries, make_recipient, make_recipients, oppose, withdraw

NBSP = "\u00a0"
NNBSP = "\u202f"


def digest_mails(outbox) -> dict[str, email.message.EmailMessage]:
    """Each .eml of the outbox by recipient address."""
    mails = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        mails[str(message["To"].addresses[0].addr_spec)] = message
    return mails


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def announced(outbox) -> dict[str, list[str]]:
    """Titles each recipient got, in order (from the text part)."""
    found = {}
    for address, message in digest_mails(outbox).items():
        found[address] = [line[2:] for line in text_of(message).splitlines() if line.startswith("* ")]
    return found


def clear(outbox) -> None:
    for path in outbox.glob("*.eml"):
        path.unlink()


@pytest.fixture
def two_readers():
    """Marie (fr) and John (en), both with tender alerts granted."""
    with session_scope() as session:
        marie = make_recipient(session, "marie@example.com", name="Marie", granted=["tender_alerts"]).id
        john = make_recipient(
            session, "john@example.com", name="John", locale="en", granted=["tender_alerts"]
        ).id
    return marie, john


def test_a_daily_run_sends_each_reader_one_digest_of_what_their_searches_found(
    db, two_readers, isolated_environment
):
    # Given tenders and two readers' searches
    add_search("marie@example.com", name="Voirie Isère", keywords="voirie", departments=["38"], position=1)
    add_search("marie@example.com", name="Tout l'Isère", departments=["38"], position=2)
    add_search("john@example.com", name="IT in Paris", cpv=["72*"], departments=["75"])
    add_tenders(
        tender(title="Travaux de voirie", departments=["38"], value=1_250_000, deadline="2026-12-15T12:00"),
        tender(title="Réfection de voirie", departments=["38"]),
        tender(title="Nettoyage des locaux", departments=["38"]),
        tender(title="Tierce maintenance applicative", departments=["75"], cpv=["72267000"]),
        tender(title="Voirie à Lyon", departments=["69"]),
    )

    # When the daily window runs
    planned = run_window()

    # Then each got one digest, the Isère tenders once each, under the first search that found them
    assert (planned.recipients, planned.digests) == (2, 2)
    assert announced(isolated_environment) == {
        "marie@example.com": ["Travaux de voirie", "Réfection de voirie", "Nettoyage des locaux"],
        "john@example.com": ["Tierce maintenance applicative"],
    }
    mails = digest_mails(isolated_environment)
    marie = mails["marie@example.com"]
    assert marie["Subject"] == "3 nouveaux appels d’offres pour vos 2 alertes"
    text = text_of(marie)
    assert f"«{NBSP}Voirie Isère{NBSP}»{NBSP}: 2 nouveaux appels d’offres" in text
    assert f"«{NBSP}Tout l'Isère{NBSP}»{NBSP}: 1 nouvel appel d’offres" in text
    assert f"Date limite{NBSP}: 15 décembre 2026 à 12:00" in text
    assert f"Valeur estimée{NBSP}: 1{NNBSP}250{NNBSP}000{NBSP}€" in text
    assert f"Lieu{NBSP}: Isère (38)" in text
    # Every digest carries the one-click unsubscribe for tender alerts, in headers and body
    assert marie["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = marie["List-Unsubscribe"].strip("<> ")
    assert link.startswith("https://mailer.example.com/u/") and link in text and link in html_of(marie)
    assert "https://www.nouma.fr/alertes" in html_of(marie)
    records = all_deliveries()
    assert {(d.belongs_to, d.kind, d.state) for d in records} == {
        ("digest:daily:2026-11-26", "tender_digest", DeliveryState.SENT)
    }


def test_french_and_english_plurals_dates_and_amounts(db, two_readers, isolated_environment):
    # Given one tender for Marie's search and three for John's
    add_search("marie@example.com", name="Voirie Isère", keywords="voirie")
    add_search("john@example.com", name="Roadworks", keywords="chaussée")
    add_tenders(
        tender(title="Voirie communale", value=1_250_000, deadline="2026-11-26"),
        *[tender(title=f"Chaussée {n}", value="1250000.50", deadline="2026-12-03T09:30") for n in range(3)],
    )
    run_window()
    mails = digest_mails(isolated_environment)

    # French: singular with "nouvel", guillemets, French date and amount
    marie = mails["marie@example.com"]
    assert marie["Subject"] == f"1 nouvel appel d’offres pour «{NBSP}Voirie Isère{NBSP}»"
    assert f"Date limite{NBSP}: 26 novembre 2026" in text_of(marie)
    assert f"1{NNBSP}250{NNBSP}000{NBSP}€" in html_of(marie)
    assert html_of(marie).startswith('<!DOCTYPE html>\n<html lang="fr">')
    # English: plural, English date, time and amount
    john = mails["john@example.com"]
    assert john["Subject"] == "3 new tenders for “Roadworks”"
    assert "Deadline: December 3, 2026 at 9:30\u202fAM" in text_of(john)
    assert "Estimated value: €1,250,000.50" in text_of(john)
    assert "“Roadworks”: 3 new tenders" in text_of(john)


def test_consecutive_windows_never_repeat_or_skip_a_tender(db, two_readers, isolated_environment):
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Lundi 1"), tender(title="Lundi 2"))
    run_window(as_of=TODAY)
    assert announced(isolated_environment)["marie@example.com"] == ["Lundi 1", "Lundi 2"]

    # The next day: only the tenders that arrived since, and an update to an old one is not news
    clear(isolated_environment)
    add_tenders(tender(reference="test:update-me", title="Mardi 1"))
    run_window(as_of=TODAY + dt.timedelta(days=1))
    assert announced(isolated_environment)["marie@example.com"] == ["Mardi 1"]
    clear(isolated_environment)
    add_tenders(tender(reference="test:update-me", title="Mardi 1, modifié"), tender(title="Mercredi 1"))
    run_window(as_of=TODAY + dt.timedelta(days=2))
    assert announced(isolated_environment)["marie@example.com"] == ["Mercredi 1"]

    # A day with nothing new: no mail, recorded
    clear(isolated_environment)
    run_window(as_of=TODAY + dt.timedelta(days=3))
    assert announced(isolated_environment) == {}
    by_window = {
        d.belongs_to: (d.state, d.skip_reason) for d in all_deliveries() if d.recipient_id == two_readers[0]
    }
    assert by_window["digest:daily:2026-11-29"] == (DeliveryState.SKIPPED, "empty_digest")


def test_running_a_window_twice_sends_nothing_twice(db, two_readers, isolated_environment, fake_sendgrid):
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_search("john@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))

    first = run_window()
    # The same window again (the scheduler, a second scheduler, an operator), and a tender arriving
    add_tenders(tender(title="Arrivé après la première exécution"))
    second = run_window()

    assert first.planned_now and not second.planned_now
    assert sorted(fake_sendgrid.recipients()) == ["john@example.com", "marie@example.com"]
    assert len(all_deliveries()) == 2
    # The late tender is for the next window, not lost
    third = run_window(as_of=TODAY + dt.timedelta(days=1))
    assert third.digests == 2 and len(fake_sendgrid.recipients()) == 4


def test_two_schedulers_asking_for_the_same_window_plan_and_send_it_once(db, two_readers, stub_worker):
    from mailer import actors

    add_search("marie@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))

    # When two schedulers each queue today's run
    actors.run_digest.send("daily", TODAY.isoformat())
    actors.run_digest.send("daily", TODAY.isoformat())
    for _ in range(3):
        stub_worker.join(actors.MAINTENANCE_QUEUE)
        stub_worker.join(actors.DELIVERY_QUEUE)

    # Then one run, one delivery for the reader with a search (John has none: no record), sent once
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(DigestRun)) == 1
    assert [(d.recipient_id, d.state) for d in all_deliveries()] == [(two_readers[0], DeliveryState.SENT)]


def test_a_run_message_retried_after_planning_queues_what_its_first_attempt_did_not(
    db, two_readers, stub_worker
):
    from mailer import actors

    add_search("marie@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    # Given a window planned by a run whose process died before queueing its batches
    plan()
    assert [d.state for d in all_deliveries()] == [DeliveryState.PENDING]
    # When another scheduler's first message for the window arrives, nothing more is queued
    actors.run_digest.send("daily", TODAY.isoformat())
    stub_worker.join(actors.MAINTENANCE_QUEUE)
    stub_worker.join(actors.DELIVERY_QUEUE)
    assert [d.state for d in all_deliveries()] == [DeliveryState.PENDING]
    # But the dead run's own message, retried by Dramatiq, queues the pending sends at once
    actors.run_digest.send_with_options(args=("daily", TODAY.isoformat()), retries=1)
    stub_worker.join(actors.MAINTENANCE_QUEUE)
    stub_worker.join(actors.DELIVERY_QUEUE)
    assert [(d.recipient_id, d.state) for d in all_deliveries()] == [(two_readers[0], DeliveryState.SENT)]


def test_a_run_records_its_figures_with_every_step_timed(db, two_readers):
    # Given a daily search and a tender, and no weekly search at all
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))

    # When the daily window (something to match) and the weekly one (nothing) are planned
    daily = plan()
    weekly = plan(Frequency.WEEKLY)

    # Then both record the same figures, every step timed even when it never ran, with the run
    steps = {"index_seconds", "load_seconds", "matching_seconds", "write_seconds", "plan_seconds"}
    assert set(daily.stats) == set(weekly.stats) == {"tenders_in_window", "searches"} | steps
    assert (daily.stats["searches"], daily.stats["tenders_in_window"]) == (1, 1)
    assert (weekly.stats["searches"], weekly.stats["matching_seconds"]) == (0, 0.0)
    assert all(daily.stats[name] >= 0 for name in steps)
    with session_scope(readonly=True) as session:
        stored = session.scalars(sa.select(DigestRun).where(DigestRun.id == daily.run_id)).one()
        assert stored.stats == daily.stats


def test_a_planning_that_crashes_leaves_nothing_and_the_rerun_announces_everything(
    db, two_readers, monkeypatch
):
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_search("john@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"), tender(title="Ponts"))

    # Given a planning that dies after matching the first recipients
    monkeypatch.setattr(planning, "PLAN_CHUNK", 1)
    calls = {"n": 0}
    real = planning.digest_sections

    def dies_on_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "digest_sections", dies_on_the_second)
    with pytest.raises(RuntimeError):
        plan()

    # Then nothing was kept: no run, no digest, no delivery, no high-water mark moved
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(DigestRun)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Digest)) == 0
        assert set(session.scalars(sa.select(SavedSearch.announced_up_to))) == {None}
    assert all_deliveries() == []

    # And the re-run plans the whole window
    monkeypatch.setattr(planning, "digest_sections", real)
    planned = run_window()
    assert planned.digests == 2
    assert [d.state for d in all_deliveries()] == [DeliveryState.SENT, DeliveryState.SENT]


def test_a_run_that_crashed_while_sending_is_finished_by_a_rerun_with_the_same_digests(
    db, isolated_environment, monkeypatch
):
    # Given five readers of the same search, batches of two
    monkeypatch.setattr(planning, "DIGEST_BATCH_SIZE", 2)
    ids = make_recipients(5)
    for i in range(5):
        add_search(f"person{i}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"), tender(title="Ponts"))

    # When the worker sends the first batch, then dies
    planned = plan()
    batches = planning.pending_batches(planned.frequency, planned.window)
    assert len(batches) == 3
    deliver_batch(batches[0])
    # ... a tender arrives, and someone re-runs the window
    add_tenders(tender(title="Arrivé pendant la panne"))
    assert main(["digest", "run", "--frequency", "daily", "--as-of", TODAY.isoformat()]) == 0

    # Then everyone got the planned digest exactly once, the late tender not in it
    got = announced(isolated_environment)
    assert sorted(got) == [f"person{i}@example.com" for i in range(5)]
    assert set(map(tuple, got.values())) == {("Voirie", "Ponts")}
    assert [d.state for d in all_deliveries()] == [DeliveryState.SENT] * 5
    assert {d.recipient_id for d in all_deliveries()} == set(ids)
    # And the next window announces the late tender, to everyone, once
    clear(isolated_environment)
    run_window(as_of=TODAY + dt.timedelta(days=1))
    assert set(map(tuple, announced(isolated_environment).values())) == {("Arrivé pendant la panne",)}


def test_no_digest_for_a_withdrawn_or_suppressed_reader_and_the_reason_is_recorded(db, isolated_environment):
    # Given four readers with the same search: one withdrew, one opposed, one never consented
    with session_scope() as session:
        ids = [
            make_recipient(session, f"{who}@example.com", granted=["tender_alerts"]).id
            for who in ("reads", "withdrew", "opposed")
        ]
        ids.append(make_recipient(session, "never@example.com").id)
    for who in ("reads", "withdrew", "opposed", "never"):
        add_search(f"{who}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    planned = plan()
    # ... and the withdrawal and the opposition land after planning, before the send
    withdraw(ids[1], "tender_alerts")
    oppose("opposed@example.com", scope="tender_alerts")
    for spec in planning.pending_batches(planned.frequency, planned.window):
        deliver_batch(spec)

    assert sorted(digest_mails(isolated_environment)) == ["reads@example.com"]
    outcome = {d.recipient_id: (d.state.value, d.skip_reason) for d in all_deliveries()}
    assert outcome == {
        ids[0]: ("sent", None),
        ids[1]: ("skipped", "no_consent"),
        ids[2]: ("skipped", "suppressed:opposition"),
        ids[3]: ("skipped", "no_consent"),
    }


def test_opposed_tender_contacts_never_appear_in_any_digest(db, two_readers, isolated_environment):
    # Given tenders whose contacts are people; some of them opposed, by address or by name
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_search("john@example.com", name="Isère", departments=["38"])
    add_tenders(
        tender(
            title="A",
            buyer={"name": "Ville de Grenoble"},
            contact={
                "name": "Service achats — Mme Marie-Hélène Houssay",
                "email": "mh.houssay@example.invalid",
                "phone": "+33 4 76 00 00 01",
            },
        ),
        tender(
            title="B",
            buyer={"name": "Métropole"},
            contact={
                "name": "Jean Dupré",
                "email": "Jean.Dupre@Example.invalid",
                "phone": "+33 4 76 00 00 02",
            },
        ),
        tender(
            title="C",
            buyer={"name": "Département"},
            contact={
                "name": "Paul Martin",
                "email": "paul.martin@example.invalid",
                "phone": "+33 4 76 00 00 03",
            },
        ),
    )
    # One opposed by name (written differently), before planning
    with session_scope() as session:
        contacts.add_name(session, "HOUSSAY Marie-Hélène", source="support_request")
    planned = plan()
    # ... one by address through the ordinary command, after planning: it still wins at send time
    assert main(["suppress", "add", "jean.dupre@example.invalid", "--all", "--reason", "opposition"]) == 0
    for spec in planning.pending_batches(planned.frequency, planned.window):
        deliver_batch(spec)

    mails = digest_mails(isolated_environment)
    assert len(mails) == 2
    for message in mails.values():
        whole = text_of(message) + html_of(message)
        for hidden in ("Houssay", "houssay", "00 01", "Dupré", "Dupre", "dupre", "00 02"):
            assert hidden not in whole
        # The buyers are still shown, and a contact who did not oppose is
        assert "Ville de Grenoble" in whole and "Métropole" in whole
        assert "Paul Martin" in whole and "paul.martin@example.invalid" in whole


def test_digests_of_a_locale_share_one_request_with_substitutions_sendgrid_accepts(db, fake_sendgrid):
    # Given twelve French and three English readers with something new
    ids = make_recipients(12) + make_recipients(0)
    with session_scope() as session:
        for i in range(3):
            ids.append(
                make_recipient(session, f"reader{i}@example.com", locale="en", granted=["tender_alerts"]).id
            )
    for i in range(12):
        add_search(f"person{i}@example.com", name=f"Isère {i}", departments=["38"])
    for i in range(3):
        add_search(f"reader{i}@example.com", name=f"Isere {i}", departments=["38"])
    add_tenders(tender(title="Voirie", contact={"name": "Paul Martin"}), tender(title="Ponts"))

    run_window()

    # Then one request per locale, every body valid against SendGrid's schema (the fixture checks)
    assert sorted(len(r.body["personalizations"]) for r in fake_sendgrid.requests) == [3, 12]
    for request in fake_sendgrid.requests:
        body = request.body
        for personalization in body["personalizations"]:
            values = personalization["substitutions"]
            assert len(str(values).encode()) < 10_000
            # What the reader gets: the shared content with their own parts written in
            subject = substitute(body["subject"], values)
            html = substitute(body["content"][1]["value"], values)
            assert "[%" not in subject + html and personalization["to"][0]["email"] not in str(values)
            assert subject.endswith(f"{values[digest_mail.SUBJECT_TAG].split('«')[-1]}")
            assert "Voirie" in html and "Paul Martin" in html
            assert set(personalization["custom_args"]) == {"delivery_id"}
    assert [d.state for d in all_deliveries()] == [DeliveryState.SENT] * 15


def test_a_digest_too_large_for_substitutions_goes_in_a_request_of_its_own(db, fake_sendgrid, monkeypatch):
    # Given a provider taking far smaller substitutions than any digest's
    from tests.provider_support import declare_limits

    declare_limits(monkeypatch, max_substitution_bytes=digest_mail.SUBSTITUTION_MARGIN_BYTES + 100)
    make_recipients(2)
    for i in range(2):
        add_search(f"person{i}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    run_window()
    assert [len(r.body["personalizations"]) for r in fake_sendgrid.requests] == [1, 1]
    for request in fake_sendgrid.requests:
        assert "substitutions" not in request.body["personalizations"][0]
        content = request.body["subject"] + "".join(c["value"] for c in request.body["content"])
        assert "[%" not in content and "Voirie" in content and "/u/" in content


def test_a_batch_costs_the_same_few_queries_whatever_its_size(db, monkeypatch):
    # Given a small and a large batch of readers with digests
    ids = make_recipients(120)
    for i in range(120):
        add_search(f"person{i}@example.com", name="Isère", departments=["38"], keywords="voirie ponts")
    add_tenders(*[tender(title=f"Voirie {n}", contact={"name": f"Contact {n}"}) for n in range(3)])
    planned = plan()
    kind_of_send = planned.belongs_to

    def statements_for(recipient_ids):
        from mailer.batch import BatchSpec

        # Each batch as a fresh worker process sees it (tenders not yet rendered there)
        digest_content._TENDER_VIEWS.clear()
        with counted_queries(db) as statements:
            outcome = deliver_batch(
                BatchSpec("tender_digest", "tender_alerts", kind_of_send, tuple(recipient_ids))
            )
        assert outcome.sent == len(recipient_ids)
        return len(statements)

    # Then the query count does not grow with the batch (no query per reader or per tender)
    small = statements_for(ids[:5])
    large = statements_for(ids[5:])
    assert large == small <= 16


def test_the_digest_run_command_reports_and_refuses_bad_input(db, two_readers, capsys):
    add_search("marie@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    assert main(["digest", "run", "--frequency", "daily", "--as-of", "2026-11-26"]) == 0
    out = capsys.readouterr().out
    assert "digest:daily:2026-11-26: planned now; 1 recipients, 1 with new tenders" in out
    assert "1 sent" in out
    assert main(["digest", "run", "--frequency", "weekly", "--as-of", "2026-11-26"]) == 0
    assert "digest:weekly:2026-11-23" in capsys.readouterr().out
    assert main(["digest", "run", "--frequency", "daily", "--as-of", "26/11/2026"]) == 2
    err = capsys.readouterr().err
    assert "is not a date" in err and "Traceback" not in err
    assert main(["digest", "run", "--frequency", "hourly"]) == 2


def test_windows_are_days_and_iso_weeks_in_paris():
    assert windows.window_of(Frequency.DAILY, dt.date(2026, 11, 26)) == "2026-11-26"
    assert windows.window_of(Frequency.WEEKLY, dt.date(2026, 11, 26)) == "2026-11-23"
    assert windows.window_of(Frequency.WEEKLY, dt.date(2026, 11, 23)) == "2026-11-23"
    # The window starts at the previous run, 07:00 Paris time, across the change to summer time
    assert windows.window_start(Frequency.DAILY, "2026-03-29") == dt.datetime(
        2026, 3, 28, 6, 0, tzinfo=dt.UTC
    )
    assert windows.window_start(Frequency.WEEKLY, "2026-11-23") == dt.datetime(
        2026, 11, 16, 6, 0, tzinfo=dt.UTC
    )
