"""Campaigns end to end on SQLite and PostgreSQL against the fake SendGrid, batch by batch."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from collections import Counter

import pytest
import sqlalchemy as sa

from mailer import consent
from mailer.campaigns import batches, breaker, fanout, lifecycle, operations, partners
from mailer.campaigns.models import BatchState, Campaign, CampaignBatch, CampaignState, PauseCause
from mailer.db import session_scope, utcnow
from mailer.errors import WrongCampaignState
from mailer.models import ConsentSource, Delivery, DeliveryState
from tests import bulk
from tests.campaign_helpers import (
    batch_states,
    campaign,
    drain,
    new_campaign,
    outcomes,
    queue_and_start,
    records_per_recipient,
)
from tests.conftest import counted_queries
from tests.factories import make_recipient, oppose, withdraw
from tests.fakes.sendgrid import RateLimit, Reject


def people(count: int, *, purposes=("nouma_offers",), names=True) -> list[int]:
    with session_scope() as session:
        return [
            make_recipient(
                session,
                f"person{i}@example.com",
                name=f"Zoé<{i}> Dupré" if names else None,
                locale="en" if i % 3 == 0 else "fr",
                granted=purposes,
            ).id
            for i in range(count)
        ]


def test_a_campaign_goes_once_to_its_audience_one_request_per_locale(
    db, fake_sendgrid, tmp_path, monkeypatch
):
    # Given 6 consenting recipients in two locales, one without consent, one who opposed
    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "4")
    from tests.conftest import reset_process_state

    reset_process_state()
    ids = people(6)
    with session_scope() as session:
        make_recipient(session, "nope@example.com", granted=["tender_alerts"])
        make_recipient(session, "opposed@example.com", granted=["nouma_offers"])
    oppose("opposed@example.com")
    cid = new_campaign(tmp_path)

    # When it is queued and its batches run (each message delivered twice, as a redelivery would)
    released = queue_and_start(cid)
    drain(released + released)

    # Then each audience member has exactly one delivery, sent, and got exactly one mail
    assert campaign(cid).state == CampaignState.COMPLETED
    assert campaign(cid).recipients_total == 6
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert outcomes(cid) == {("sent", None): 6}
    assert sorted(fake_sendgrid.recipients()) == sorted(f"person{i}@example.com" for i in range(6))
    # Batches are ordered by locale: 2 en + 4 fr in batches of 4 -> [en, en, fr, fr], [fr, fr]: 3 requests
    assert len(fake_sendgrid.requests) == 3
    for request in fake_sendgrid.requests:
        body = request.body
        for p in body["personalizations"]:
            assert set(p["custom_args"]) == {"delivery_id"}
            assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert p["headers"]["List-Unsubscribe"].startswith("<https://mailer.example.com/u/")
            subs = p["substitutions"]
            # The first name goes escaped into the HTML part, as is into the text part
            index = p["to"][0]["email"].removeprefix("person").split("@")[0]
            assert subs["%%nm:first_name:html%%"] == html.escape(f"Zoé<{index}>")
            assert subs["%%nm:first_name:text%%"] == f"Zoé<{index}>"
        html_part = body["content"][1]["value"]
        assert "%%nm:first_name:html%%" in html_part and "%%nm:first_name:text%%" not in html_part
        assert "%%nm:unsubscribe_url:html%%" in html_part
        assert "categories" in body and "@" not in str(body["categories"])


def test_the_gate_is_applied_again_at_send_time(db, fake_sendgrid, tmp_path):
    # Given a campaign whose audience was resolved with three consenting recipients
    ids = people(3)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    # When one withdraws and one opposes between queue and send
    withdraw(ids[0], "nouma_offers")
    oppose("person1@example.com", scope="nouma_offers")
    drain(released)
    # Then they are skipped with the reason, and only the third is sent
    by_recipient = {d.recipient_id: d for d in _deliveries(cid)}
    assert (by_recipient[ids[0]].state, by_recipient[ids[0]].skip_reason) == (
        DeliveryState.SKIPPED,
        "no_consent",
    )
    assert by_recipient[ids[1]].skip_reason == "suppressed:opposition"
    assert by_recipient[ids[2]].state == DeliveryState.SENT
    assert fake_sendgrid.recipients() == ["person2@example.com"]


def _deliveries(cid: int) -> list[Delivery]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(sa.select(Delivery).where(Delivery.belongs_to == f"campaign:{cid}")))


def test_partner_offers_go_only_where_the_consent_covers_the_partner(db, fake_sendgrid, tmp_path):
    # Given partner lists v1 (Beta) and v2 (Acme, Beta), and consents given for each, or none
    with session_scope() as session:
        partners.add_partner_list(session, "v1", ["Beta"], created_by="test")
        partners.add_partner_list(session, "v2", ["Acme", "Beta"], created_by="test")
        covered = make_recipient(session, "covered@example.com")
        older = make_recipient(session, "older@example.com")
        unknown = make_recipient(session, "noversion@example.com")
        for recipient, version in ((covered, "v2"), (older, "v1"), (unknown, None)):
            consent.grant(
                session,
                recipient.id,
                "partner_offers",
                consent.Proof(source=ConsentSource.SIGNUP_FORM, partner_list_version=version),
            )
    cid = new_campaign(tmp_path, purpose="partner_offers", partner="Acme")
    assert campaign(cid).partner_list_version == "v2"
    released = queue_and_start(cid)
    # The audience holds only the covered consent
    assert campaign(cid).recipients_total == 1
    # When the covered consent moves to a list that does not name Acme before the send
    with session_scope() as session:
        consent.grant(
            session,
            covered.id,
            "partner_offers",
            consent.Proof(source=ConsentSource.SITE, partner_list_version="v1"),
        )
    drain(released)
    # Then the gate at send time refuses it, with its own reason
    (record,) = _deliveries(cid)
    assert (record.state, record.skip_reason) == (DeliveryState.SKIPPED, "partner_not_covered")
    assert fake_sendgrid.requests == []
    # And the mail of a partner campaign names the partner
    with session_scope() as session:
        consent.grant(
            session,
            older.id,
            "partner_offers",
            consent.Proof(source=ConsentSource.SITE, partner_list_version="v2"),
        )
    drain(queue_and_start(new_campaign(tmp_path / "again", purpose="partner_offers", partner="acme")))
    (request,) = fake_sendgrid.requests
    assert "partenaire Acme, envoyée par NouMa" in request.body["content"][0]["value"]
    assert campaign(cid).partner == "Acme"


def test_campaign_sends_name_their_campaign_in_the_batch_not_in_their_key(db, tmp_path):
    from mailer.batch import BatchSpec
    from mailer.emails import Addressed, RecipientView, composer_for

    # Given a campaign, a seed recipient, and the campaign's composer
    (rid,) = people(1)
    cid = new_campaign(tmp_path)
    seed = [Addressed(1, RecipientView(rid, "person0@example.com", "Marie Dupont", "fr", "Europe/Paris"))]
    composer = composer_for("campaign")

    def subject(spec: BatchSpec) -> str:
        with session_scope(readonly=True) as session:
            (message,) = composer.compose(session, spec, seed).messages
        return message.subject

    # When a batch comes with its campaign id, under the campaign's key or a test send's own key
    own = subject(BatchSpec("campaign", "nouma_offers", f"campaign:{cid}", (rid,), campaign_id=cid))
    test = subject(BatchSpec("campaign", "nouma_offers", f"campaign-test:{cid}:a1", (rid,), campaign_id=cid))

    # Then the campaign's send is its subject, the test send is marked; without the id, refused
    assert not own.startswith("[Test]") and test == "[Test] " + own
    with pytest.raises(ValueError, match="without their campaign id"):
        subject(BatchSpec("campaign", "nouma_offers", f"campaign:{cid}", (rid,)))


def test_partner_campaign_needs_a_partner_named_by_a_list(db, tmp_path):
    from mailer.errors import InvalidInput

    with pytest.raises(InvalidInput, match="must name its partner"):
        new_campaign(tmp_path, purpose="partner_offers")
    with pytest.raises(InvalidInput, match="no partner list names"):
        new_campaign(tmp_path, purpose="partner_offers", partner="Acme")
    with pytest.raises(InvalidInput, match="for partner_offers campaigns only"):
        new_campaign(tmp_path, purpose="nouma_offers", partner="Acme")
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_pause_resume_and_cancel_at_every_stage_leave_no_duplicate_and_no_hole(
    db, fake_sendgrid, tmp_path, monkeypatch
):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "2")
    monkeypatch.setenv("MAILER_CAMPAIGN_BATCHES_IN_FLIGHT", "2")
    reset_process_state()
    ids = people(9)

    # Draft: cannot be paused; scheduled: pause and resume keep it waiting for its time
    future = utcnow() + dt.timedelta(hours=1)
    cid = new_campaign(tmp_path / "a", send_at=future)
    with session_scope() as session, pytest.raises(WrongCampaignState):
        lifecycle.pause_by_operator(session, cid, operator="test")
    assert operations.queue(cid) == operations.Going(start_at=future)  # not due yet
    assert fanout.start(cid) == []
    with session_scope() as session:
        lifecycle.pause_by_operator(session, cid, operator="test")
    assert operations.resume(cid) == operations.Going(start_at=future)
    assert campaign(cid).state == CampaignState.SCHEDULED
    # Its time comes: the sweep starts it
    result = fanout.sweep(now=future + dt.timedelta(seconds=1))
    assert result.started == [cid]

    # Running, nothing sent yet: pause; the queued messages arrive and put their batches back
    with session_scope() as session:
        lifecycle.pause_by_operator(session, cid, operator="test")
    assert drain(result.requeue) == []
    assert fake_sendgrid.requests == []
    assert batch_states(cid) == {"pending": 5}
    # Resume: the batches go again, from where it stopped
    resumed = operations.resume(cid)
    assert resumed.continued
    step = batches.run(resumed.batches[0])  # one batch goes out, then the operator pauses
    with session_scope() as session:
        lifecycle.pause_by_operator(session, cid, operator="test")
    drain(resumed.batches[1:] + step.release)  # the queued messages find the campaign paused
    sent_before = len(fake_sendgrid.recipients())
    assert sent_before == 2
    resumed = operations.resume(cid)
    # A duplicate of an already-done batch's message changes nothing
    drain(resumed.batches + resumed.batches)
    assert campaign(cid).state == CampaignState.COMPLETED
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert sorted(fake_sendgrid.recipients()) == sorted(f"person{i}@example.com" for i in range(9))
    # Completed: nothing applies any more
    with session_scope() as session, pytest.raises(WrongCampaignState):
        lifecycle.pause_by_operator(session, cid, operator="test")
    with pytest.raises(WrongCampaignState):
        operations.cancel(cid, operator="test")

    # Cancel mid-run: the rest is recorded skipped campaign_cancelled, once each
    other = new_campaign(tmp_path / "b")
    released = queue_and_start(other)
    step = batches.run(released[0])
    operations.cancel(other, operator="test")
    drain(released[1:] + step.release)  # messages still in the broker do nothing
    assert records_per_recipient(other) == dict.fromkeys(ids, 1)
    counts = outcomes(other)
    assert counts[("sent", None)] == 2 and counts[("skipped", "campaign_cancelled")] == 7
    assert batch_states(other) == {"done": 1, "cancelled": 4}

    # Cancel while paused, and cancel before it started
    paused = new_campaign(tmp_path / "c")
    released = queue_and_start(paused)
    with session_scope() as session:
        lifecycle.pause_by_operator(session, paused, operator="test")
    operations.cancel(paused, operator="test")
    assert outcomes(paused) == {("skipped", "campaign_cancelled"): 9}
    draft = new_campaign(tmp_path / "d")
    operations.cancel(draft, operator="test")
    assert campaign(draft).state == CampaignState.CANCELLED and outcomes(draft) == {}


def _while_rendering(monkeypatch, compose):
    """Batches render through ``compose(real_compose, session, spec, addressed)``."""
    from mailer.emails import _composers, composer_for

    real = composer_for("campaign")

    class Wrapped:
        def compose(self, session, spec, addressed):
            return compose(real.compose, session, spec, addressed)

    monkeypatch.setitem(_composers, "campaign", Wrapped())


def test_cancel_while_a_batch_is_being_rendered_sends_nothing_more(db, fake_sendgrid, tmp_path, monkeypatch):
    ids = people(3)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)

    def cancelling(real, session, spec, addressed):
        operations.cancel(cid, operator="test")  # another connection, while this batch renders
        return real(session, spec, addressed)

    _while_rendering(monkeypatch, cancelling)
    drain(released)
    assert fake_sendgrid.requests == []
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert outcomes(cid) == {("skipped", "campaign_cancelled"): 3}


def test_a_withdrawal_or_opposition_while_a_batch_renders_wins_and_is_recorded(
    db, fake_sendgrid, tmp_path, monkeypatch
):
    ids = people(4)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)

    def racing(real, session, spec, addressed):
        # After the batch's gate query, before its sends are taken into flight (other connections)
        withdraw(ids[0], "nouma_offers")
        oppose("person1@example.com")
        composition = real(session, spec, addressed)
        # and one recipient's mail cannot be rendered
        third = next(a.delivery_id for a in addressed if a.recipient.id == ids[2])
        composition.failed[third] = "render_error: test"
        composition.messages = [
            dataclasses.replace(m, envelopes=tuple(e for e in m.envelopes if e.delivery_id != third))
            for m in composition.messages
        ]
        return composition

    _while_rendering(monkeypatch, racing)
    drain(released)
    # Each recipient has one record, the gate's verdict at the moment of the send
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert outcomes(cid) == {
        ("skipped", "no_consent"): 1,
        ("skipped", "suppressed:opposition"): 1,
        ("failed", None): 1,
        ("sent", None): 1,
    }
    assert fake_sendgrid.recipients() == ["person3@example.com"]


def test_a_recipient_the_composer_leaves_out_still_gets_a_record(db, fake_sendgrid, tmp_path, monkeypatch):
    ids = people(3)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)

    def forgetful(real, session, spec, addressed):
        return real(session, spec, [a for a in addressed if a.recipient.id != ids[1]])

    _while_rendering(monkeypatch, forgetful)
    drain(released)
    # Neither sent, skipped nor failed by the batch: recorded pending, not lost without a trace
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert outcomes(cid) == {("sent", None): 2, ("pending", None): 1}


def test_frequency_cap_counts_marketing_mails_across_campaigns(db, fake_sendgrid, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_FREQUENCY_CAP", "2")
    reset_process_state()
    ids = people(2, purposes=("nouma_offers", "partner_offers"))
    # Given a recipient who already got two campaign mails this week (one of each purpose)
    with session_scope() as session:
        partners.add_partner_list(session, "v1", ["Acme"], created_by="test")
        session.execute(sa.update(consent.Consent).values(partner_list_version="v1"))
    drain(queue_and_start(new_campaign(tmp_path / "a")))
    withdraw(ids[1], "partner_offers")  # the other one gets only the first
    drain(queue_and_start(new_campaign(tmp_path / "b", purpose="partner_offers", partner="Acme")))
    # When a third campaign goes out
    third = new_campaign(tmp_path / "c")
    drain(queue_and_start(third))
    # Then the first is skipped frequency_cap, the second is sent
    by_recipient = {d.recipient_id: d for d in _deliveries(third)}
    assert by_recipient[ids[0]].skip_reason == "frequency_cap"
    assert by_recipient[ids[1]].state == DeliveryState.SENT
    # And mails older than the period do not count
    with session_scope() as session:
        session.execute(sa.update(Delivery).values(sending_at=utcnow() - dt.timedelta(days=8)))
    fourth = new_campaign(tmp_path / "d")
    drain(queue_and_start(fourth))
    assert outcomes(fourth) == {("sent", None): 2}


def test_429_holds_the_campaign_and_sends_later_instead_of_failing(db, fake_sendgrid, tmp_path):
    ids = people(2)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    fake_sendgrid.script(RateLimit(reset_in=30))
    # When SendGrid answers 429
    step = batches.run(released[0])
    # Then nothing failed: the sends wait pending, the campaign is held, the batch comes back later
    assert step.again_in_ms is not None and step.again_in_ms >= 1000
    assert {d.state for d in _deliveries(cid)} == {DeliveryState.PENDING}
    held = campaign(cid)
    assert held.held_until is not None and held.held_until > utcnow() and held.rate_limited == 1
    assert batch_states(cid) == {"queued": 1}
    # While held, a batch does not even try
    assert batches.run(released[0]).again_in_ms is not None
    assert len(fake_sendgrid.requests) == 1
    # Once the hold is over, it goes out once
    with session_scope() as session:
        session.execute(sa.update(Campaign).values(held_until=utcnow() - dt.timedelta(seconds=1)))
    drain(released)
    assert outcomes(cid) == {("sent", None): 2}
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize(
    "status,text",
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "access forbidden"),
    ],
)
def test_a_refused_api_key_pauses_the_campaign_and_fails_nobody(db, fake_sendgrid, tmp_path, status, text):
    # Given a running campaign
    ids = people(2)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    # When SendGrid refuses the API key (revoked: 401; without the mail.send scope: 403)
    fake_sendgrid.script(Reject(status, text))
    drain(released)
    # Then the campaign pauses saying why, and every send waits, pending
    paused = campaign(cid)
    assert paused.state == CampaignState.PAUSED and paused.paused_by == PauseCause.ERROR_BUDGET
    assert str(status) in paused.pause_reason and "API key" in paused.pause_reason
    assert {d.state for d in _deliveries(cid)} == {DeliveryState.PENDING}
    # The key is fixed; resume sends them, once
    drain(operations.resume(cid).batches)
    assert outcomes(cid) == {("sent", None): 2}
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)


def test_the_error_budget_pauses_after_failures_in_a_row(db, fake_sendgrid, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_CAMPAIGN_ERROR_BUDGET", "3")
    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "1")
    reset_process_state()
    people(5)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    fake_sendgrid.script(*[Reject(503, "Service Unavailable")] * 10)
    again = drain(released)
    # Three batches failed transiently (1 recipient each): the third pauses the campaign
    assert again  # the first two were put back with a backoff
    paused = campaign(cid)
    assert paused.state == CampaignState.PAUSED
    assert paused.pause_reason.startswith("3 failed sends in a row") and "503" in paused.pause_reason
    # Nothing was recorded failed: SendGrid trouble is not the recipients' fault
    assert DeliveryState.FAILED not in {d.state for d in _deliveries(cid)}


def test_the_complaint_breaker_pauses_running_campaigns_of_the_purpose_only(db, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_BREAKER_MIN_DELIVERIES", "10")
    reset_process_state()
    ids = people(12, purposes=("nouma_offers", "tender_alerts"))
    offers = new_campaign(tmp_path / "a")
    queue_and_start(offers)
    other = new_campaign(tmp_path / "b")
    queue_and_start(other)
    # Given 12 nouma_offers deliveries sent, none complained: nothing trips
    with session_scope() as session:
        session.execute(
            sa.insert(Delivery),
            [
                {
                    "purpose": p,
                    "belongs_to": "campaign:999",
                    "recipient_id": rid,
                    "kind": "campaign",
                    "state": "sent",
                }
                for rid in ids
                for p in ("nouma_offers", "tender_alerts")
            ],
        )
        assert breaker.check(session, "nouma_offers") == []
    # When one complaint arrives (1/12 = 8% > 0.1%) on nouma_offers and several on tender alerts
    with session_scope() as session:
        session.execute(
            sa.update(Delivery).where(Delivery.recipient_id == ids[0]).values(state=DeliveryState.COMPLAINED)
        )
        assert breaker.check(session, "tender_alerts") == []
        paused = breaker.check(session, "nouma_offers")
    # Then both running nouma_offers campaigns pause, saying why
    assert sorted(paused) == sorted([offers, other])
    stopped = campaign(offers)
    assert stopped.paused_by == PauseCause.COMPLAINT_BREAKER
    assert "spam complaints at 8.33% of the last 12 deliveries (limit 0.10%)" in stopped.pause_reason
    # Resuming is refused while the rate stays high, unless forced
    with pytest.raises(WrongCampaignState, match="complaint breaker"):
        operations.resume(offers)
    operations.resume(offers, force=True)
    with session_scope() as session:
        assert breaker.check(session, "nouma_offers") == []  # judged on new deliveries only


def test_hard_bounces_trip_the_breaker_too(db, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_BREAKER_MIN_DELIVERIES", "10")
    reset_process_state()
    ids = people(20)
    cid = new_campaign(tmp_path)
    queue_and_start(cid)
    with session_scope() as session:
        session.execute(
            sa.insert(Delivery),
            [
                {
                    "purpose": "nouma_offers",
                    "belongs_to": "campaign:999",
                    "recipient_id": rid,
                    "kind": "campaign",
                    "state": "bounced" if n < 1 else "delivered",
                }
                for n, rid in enumerate(ids)
            ],
        )
        assert breaker.rates(session, "nouma_offers").bounce_rate == pytest.approx(0.05)
        assert breaker.check(session, "nouma_offers") == [cid]
    assert "bounces (hard bounces and blocks) at 5.00%" in campaign(cid).pause_reason


def test_batches_check_the_breaker_as_they_finish(db, fake_sendgrid, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_BREAKER_MIN_DELIVERIES", "2")
    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "2")
    monkeypatch.setattr(batches, "BREAKER_CHECK_INTERVAL", 0.0)
    reset_process_state()
    people(6)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    drain(released[:1])
    with session_scope() as session:
        session.execute(
            sa.update(Delivery).where(Delivery.state == "sent").values(state=DeliveryState.COMPLAINED)
        )
    drain(released[1:2])
    assert campaign(cid).state == CampaignState.PAUSED
    assert len(fake_sendgrid.recipients()) == 4  # the batch that checked was sent; no other started


@pytest.mark.parametrize("reserve", [False, True], ids=["rows-pending", "ids-reserved"])
def test_the_sweep_requeues_lost_batches_and_never_sends_twice(
    db, fake_sendgrid, tmp_path, monkeypatch, reserve
):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "2")
    reset_process_state()
    ids = people(6)
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    # Given a batch whose worker died after claiming (sends pending, or ids reserved for them)
    # and messages lost with Redis
    from mailer import claims, delivery
    from mailer.batch import BatchSpec

    with session_scope() as session:
        first = session.get(CampaignBatch, released[0])
        spec = BatchSpec(
            "campaign", "nouma_offers", f"campaign:{cid}", tuple(first.recipient_ids), campaign_id=cid
        )
        session.execute(
            sa.update(CampaignBatch).where(CampaignBatch.id == released[0]).values(state="running")
        )
    with session_scope() as session:
        claims.claim(session, spec, reserve=reserve)
    # (ids reserved, on PostgreSQL: nothing recorded yet; otherwise the sends wait, pending)
    reserved = reserve and db.startswith("postgresql")
    assert outcomes(cid) == ({} if reserved else {("pending", None): len(spec.recipient_ids)})
    # When the sweep runs before the lease ends: nothing is lost yet
    assert fanout.sweep().requeue == []
    # After the lease: every in-flight batch is queued again
    later = utcnow() + dt.timedelta(seconds=400)
    result = fanout.sweep(now=later)
    assert sorted(result.requeue) == sorted(released) and result.lost == len(released)
    # The delivery sweep leaves the campaign's pending sends to the campaign sweep
    assert delivery.sweep(now=later + dt.timedelta(hours=2)).requeue == []
    drain(result.requeue)
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert sorted(fake_sendgrid.recipients()) == sorted(f"person{i}@example.com" for i in range(6))


def test_a_full_batch_is_one_request_of_1000_personalizations_within_limits(db, fake_sendgrid, tmp_path):
    # Given 1000 recipients in one locale
    bulk.load(db, 1000, locales=("fr",))
    cid = new_campaign(tmp_path)
    released = queue_and_start(cid)
    assert len(released) == 1
    # When the batch runs, it costs a fixed number of queries (no query per recipient)
    with counted_queries(db) as statements:
        drain(released)
    assert len(statements) < 40, statements
    # Then one request, 1000 personalizations, 1000 distinct addresses (the fake checks the schema)
    (request,) = fake_sendgrid.requests
    assert request.status == 202
    assert len(request.body["personalizations"]) == 1000
    assert len(set(request.recipients)) == 1000
    assert outcomes(cid) == {("sent", None): 1000}


def test_batches_hold_at_most_the_batch_size_and_each_recipient_once(db, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "300")
    reset_process_state()
    ids = bulk.load(db, 1000)
    cid = new_campaign(tmp_path)
    queue_and_start(cid)
    with session_scope(readonly=True) as session:
        rows = list(session.scalars(sa.select(CampaignBatch).order_by(CampaignBatch.number)))
    assert [b.size for b in rows] == [300, 300, 300, 100]
    everyone = [rid for b in rows for rid in b.recipient_ids]
    assert sorted(everyone) == sorted(ids)
    assert sum(b.state == BatchState.QUEUED for b in rows) == 4  # the in-flight window is 32


def test_embedded_actors_send_a_whole_campaign(db, tmp_path, stub_worker, isolated_environment):
    from mailer import actors

    ids = people(4)
    cid = new_campaign(tmp_path)
    actors.enqueue_campaign_batches(queue_and_start(cid))
    stub_worker.join("campaigns", timeout=60_000)
    assert campaign(cid).state == CampaignState.COMPLETED
    assert records_per_recipient(cid) == dict.fromkeys(ids, 1)
    assert len(list(isolated_environment.glob("*.eml"))) == 4


def test_a_scheduled_campaign_is_started_by_its_delayed_message(db, tmp_path, stub_worker):
    from mailer import actors

    people(2)
    cid = new_campaign(tmp_path, send_at=utcnow() + dt.timedelta(seconds=1))
    with session_scope() as session:
        lifecycle.queue(session, cid)
    actors.start_campaign.send_with_options(args=(cid,), delay=1100)
    import time

    deadline = time.monotonic() + 30
    while campaign(cid).state != CampaignState.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert campaign(cid).state == CampaignState.COMPLETED


def test_waiting_for_the_hourly_pace_is_not_a_failed_attempt(db, fake_sendgrid, tmp_path, monkeypatch):
    from tests.conftest import reset_process_state

    # Given batches of 10 and an hourly pace of 10: one batch an hour
    monkeypatch.setenv("MAILER_CAMPAIGN_BATCH_SIZE", "10")
    monkeypatch.setenv("MAILER_CAMPAIGN_RATE_PER_HOUR", "10")
    monkeypatch.setenv("MAILER_BROKER_NAMESPACE", f"pace-{tmp_path.name}")
    reset_process_state()
    people(20)
    cid = new_campaign(tmp_path / "paced")
    first, second = queue_and_start(cid)
    assert drain([first]) == []
    # When the second batch is refused its turn many times over
    for _ in range(15):
        assert batches.run(second).again_in_ms == 60_000
    # Then it has not failed a single attempt, the sweep does not pause the campaign, nothing is lost
    with session_scope(readonly=True) as session:
        assert session.get(CampaignBatch, second).attempts == 0
    fanout.sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30))
    assert campaign(cid).state == CampaignState.RUNNING
    assert outcomes(cid) == Counter({("sent", None): 10})  # the second batch claims when its turn comes
    with session_scope(readonly=True) as session:
        assert session.get(CampaignBatch, second).state == BatchState.QUEUED


def test_a_cancel_while_a_request_fails_leaves_no_send_pending(db, fake_sendgrid, tmp_path):
    from mailer.providers import Backend, get_backend

    people(5)
    cid = new_campaign(tmp_path / "c")
    (batch_id,) = queue_and_start(cid)
    fake_sendgrid.script(*[Reject(503, "Service Unavailable")] * 3)

    class CancelledMeanwhile(Backend):
        name = "cancelled-meanwhile"
        label = "SendGrid"
        limits = get_backend().limits

        def send(self, message):
            # The marketing team cancels while the request is on its way; SendGrid answers 503.
            operations.cancel(cid, operator="test")
            return get_backend().send(message)

    batches.run(batch_id, backend=CancelledMeanwhile())
    # Then every recipient ends with one record, skipped as cancelled; nothing waits pending
    assert outcomes(cid) == Counter({("skipped", "campaign_cancelled"): 5})
    assert fake_sendgrid.recipients() == []
