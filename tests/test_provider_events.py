"""Applying SendGrid events: every sample event with its effect, duplicates, order, settling."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import consent
from mailer.addresses import hash_of
from mailer.db import session_scope
from mailer.models import ConsentSource, Delivery, DeliveryEvent, DeliveryState
from mailer.provider_events import batches
from mailer.provider_events.models import WebhookBatch
from mailer.provider_events.outcome import ApplyOutcome
from mailer.provider_events.transitions import OUTCOME_ORDER, TRANSITIONS
from tests.conftest import reset_process_state, shared_data
from tests.factories import make_recipient
from tests.web_support import consent_events, consents, sendgrid_body, suppressions

ADDRESS = "lea@example.com"
ALL = ("tender_alerts", "nouma_offers", "partner_offers")
#: The samples use unsubscribe group 10: mapped here to partner offers, not the delivery's purpose.
ASM_GROUPS = "nouma_offers=7,partner_offers=10"


def sample_events() -> list[tuple[str, dict[str, Any]]]:
    docs = json.loads(shared_data("sendgrid", "event_webhook_sample_events.json").read_text())
    anymail = json.loads(shared_data("sendgrid", "anymail_sendgrid_webhook_events.json").read_text())
    found = [(f"docs-{i}", e) for i, e in enumerate(docs["sendgrid_docs_event_reference"]["events"])]
    found += [(f"stronggrid-{k}", e) for k, e in docs["stronggrid_unit_test_events"]["events"].items()]
    found += [(f"anymail-{c['test']}", e) for c in anymail["cases"] for e in c["events"]]
    return found


SAMPLES = sample_events()


def expected_effect(event: dict[str, Any]) -> dict[str, Any]:
    """What one event must do to a delivery of nouma_offers sent to a consenting recipient."""
    name = str(event["event"]).lower()
    bounce_type = event.get("type")
    state = {
        "processed": "sent",
        "deferred": "sent",
        "delivered": "delivered",
        "open": "delivered",
        "click": "delivered",
        "unsubscribe": "delivered",
        "group_unsubscribe": "delivered",
        "group_resubscribe": "sent",
        "bounce": "bounced",
        "dropped": "dropped",
        "spamreport": "complained",
    }[name]
    suppressed: set[tuple[str, str]] = set()
    if name == "bounce" and bounce_type != "blocked":
        suppressed = {("all", "hard_bounce")}
    elif name == "spamreport":
        suppressed = {("nouma_offers", "spam_complaint"), ("partner_offers", "spam_complaint")}
    elif name == "dropped" and event.get("reason") == "Bounced Address":
        suppressed = {("all", "hard_bounce")}
    elif name == "dropped" and event.get("reason") == "Invalid":
        suppressed = {("all", "invalid")}
    withdrawn: set[str] = set()
    if name == "group_unsubscribe":
        withdrawn = {"partner_offers"}  # group 10
    elif name == "unsubscribe":
        withdrawn = {"partner_offers"} if event.get("asm_group_id") == 10 else {"nouma_offers"}
    return {"state": state, "suppressed": suppressed, "withdrawn": withdrawn}


#: When the recipients of these tests consented: before every sample event (the oldest is 2009).
GRANTED_AT = dt.datetime(2005, 1, 1, tzinfo=dt.UTC)


def consenting_recipient(session: Session, address: str = ADDRESS) -> int:
    recipient = make_recipient(session, address)
    for purpose in ALL:
        consent.grant(
            session, recipient.id, purpose, consent.Proof(source=ConsentSource.SIGNUP_FORM, at=GRANTED_AT)
        )
    return recipient.id


def given_a_sent_delivery(
    purpose: str = "nouma_offers", state: DeliveryState = DeliveryState.SENT
) -> tuple[int, int]:
    with session_scope() as session:
        recipient_id = consenting_recipient(session)
        delivery = Delivery(
            purpose=purpose,
            belongs_to="campaign:1",
            recipient_id=recipient_id,
            kind="test_message",
            state=state,
            provider_message_id="14c5d75ce93" if state == DeliveryState.SENT else None,
        )
        session.add(delivery)
        session.flush()
        return recipient_id, delivery.id


def ours(event: dict[str, Any], delivery_id: int) -> dict[str, Any]:
    """The sample as our own mail would produce it: our address, our delivery id in custom args."""
    event = copy.deepcopy(event)
    event["email"] = ADDRESS
    event["delivery_id"] = str(delivery_id)
    return event


def apply(*events: dict[str, Any]) -> ApplyOutcome:
    batch_id = batches.store_batch("sendgrid", sendgrid_body(list(events)), signed_at=1_700_000_000)
    outcome = batches.apply_batch(batch_id)
    assert outcome is not None
    return outcome


def delivery_state(delivery_id: int) -> DeliveryState:
    with session_scope(readonly=True) as session:
        return session.get(Delivery, delivery_id).state


@pytest.fixture
def asm_groups(monkeypatch):
    monkeypatch.setenv("MAILER_SENDGRID_ASM_GROUPS", ASM_GROUPS)
    reset_process_state()


@pytest.mark.parametrize("name,sample", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_every_sample_event_has_its_effect(db, asm_groups, name, sample):
    # Given a nouma_offers mail sent to a recipient who consented to everything
    recipient_id, delivery_id = given_a_sent_delivery()
    expected = expected_effect(sample)

    # When SendGrid posts the sample event about it
    outcome = apply(ours(sample, delivery_id))

    # Then the delivery, the suppression list and the consent ledger say what the event means
    assert outcome.events == 1 and outcome.duplicates == 0
    assert delivery_state(delivery_id).value == expected["state"]
    assert outcome.purposes_hit == (
        {"nouma_offers"} if expected["state"] in ("bounced", "complained") else set()
    )
    assert {(scope, reason) for _, scope, reason in suppressions()} == expected["suppressed"]
    assert {h for h, _, _ in suppressions()} <= {hash_of(ADDRESS)}
    assert {p for p, granted in consents(recipient_id).items() if not granted} == expected["withdrawn"]
    withdrawals = [e for e in consent_events(recipient_id) if e.action.value == "withdrawn"]
    assert all(e.source == ConsentSource.SENDGRID_EVENT and e.recorded_by == "sendgrid" for e in withdrawals)
    # ... and the event is kept once, linked to the delivery, with its raw payload
    with session_scope(readonly=True) as session:
        (stored,) = session.scalars(sa.select(DeliveryEvent))
        assert stored.delivery_id == delivery_id
        assert stored.payload["event"] == sample["event"]
        assert (
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            < stored.occurred_at
            < dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        )


@pytest.mark.parametrize("name,sample", SAMPLES[::4], ids=[n for n, _ in SAMPLES[::4]])
def test_a_duplicated_sample_changes_nothing_more(db, asm_groups, name, sample):
    # Given a sample event already applied
    recipient_id, delivery_id = given_a_sent_delivery()
    apply(ours(sample, delivery_id))
    before = (delivery_state(delivery_id), suppressions(), len(consent_events(recipient_id)))

    # When SendGrid delivers it again, twice in one batch and once more in another
    again = apply(ours(sample, delivery_id), ours(sample, delivery_id))
    third = apply(ours(sample, delivery_id))

    # Then nothing more happens and one event row remains
    assert again.duplicates == 2 and third.duplicates == 1
    assert (delivery_state(delivery_id), suppressions(), len(consent_events(recipient_id))) == before
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(DeliveryEvent)) == 1


def test_raw_samples_with_foreign_addresses_are_stored_and_do_not_crash(db):
    # Given the samples exactly as published (unknown addresses, no delivery id, odd timestamps)
    raw = [event for _, event in SAMPLES]
    # When they arrive in one batch
    outcome = apply(*raw)
    # Then every distinct event is kept, none correlates, and nobody we know is touched
    with session_scope(readonly=True) as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(DeliveryEvent))
    assert stored == outcome.events - outcome.duplicates
    assert outcome.uncorrelated == stored


def test_unknown_event_types_are_stored_not_crashed_on(db):
    _, delivery_id = given_a_sent_delivery()
    outcome = apply(
        {"event": "machine_opened", "sg_event_id": "x1", "delivery_id": str(delivery_id), "timestamp": 1},
        ["not", "an", "event"],
        {"no_event_name": True},
    )
    assert outcome.unknown_types == 3
    assert delivery_state(delivery_id) == DeliveryState.SENT
    with session_scope(readonly=True) as session:
        types = sorted(session.scalars(sa.select(DeliveryEvent.type)))
    assert types == ["machine_opened", "malformed", "missing"]


def test_an_unreadable_signed_batch_is_marked_and_kept(db):
    batch_id = batches.store_batch("sendgrid", b"not json at all", signed_at=1_700_000_000)
    assert batches.apply_batch(batch_id).events == 0
    with session_scope(readonly=True) as session:
        batch = session.get(WebhookBatch, batch_id)
        assert batch.applied_at is not None and "not JSON" in batch.outcome["error"]


def event(kind: str, delivery_id: int, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "email": ADDRESS,
        "sg_event_id": f"{kind}-{n}",
        "sg_message_id": "14c5d75ce93.filter0001.16648.5515E0B88.0",
        "timestamp": 1_700_000_000 + n,
        "delivery_id": str(delivery_id),
        **extra,
    }


def test_the_transition_table_climbs_one_order():
    # Every move goes up OUTCOME_ORDER: that is what makes the final state order-independent.
    for state, targets in TRANSITIONS.items():
        for target in targets:
            assert target in OUTCOME_ORDER
            if state in OUTCOME_ORDER:
                assert OUTCOME_ORDER.index(target) > OUTCOME_ORDER.index(state)
    assert set(TRANSITIONS) == set(DeliveryState)


@pytest.mark.parametrize(
    "kinds,final",
    [
        (("processed", "deferred", "delivered", "open"), DeliveryState.DELIVERED),
        (("processed", "delivered", "bounce", "spamreport"), DeliveryState.COMPLAINED),
        (("processed", "deferred", "bounce", "click"), DeliveryState.BOUNCED),
    ],
)
def test_out_of_order_and_duplicated_events_end_in_the_same_state(db, kinds, final):
    # Given one delivery per order in which SendGrid may post these events, each event twice
    with session_scope() as session:
        recipient_id = consenting_recipient(session)
    orders = list(itertools.permutations(kinds))
    delivery_ids = []
    with session_scope() as session:
        for n, _ in enumerate(orders):
            d = Delivery(
                purpose="tender_alerts",
                belongs_to=f"digest:{n}",
                recipient_id=recipient_id,
                kind="test_message",
                state=DeliveryState.SENT,
            )
            session.add(d)
            session.flush()
            delivery_ids.append(d.id)
    # When each order is applied one post per event, then all of it again
    for delivery_id, order in zip(delivery_ids, orders, strict=True):
        posts = [event(kind, delivery_id, delivery_id * 10 + kinds.index(kind)) for kind in order]
        for post in posts + posts[::-1]:
            apply(post)
    # Then every delivery ends in the same state, whatever the order
    assert {delivery_state(d) for d in delivery_ids} == {final}


def test_events_settle_a_delivery_whose_outcome_was_unknown(db):
    # Given a send whose SendGrid answer was lost (recorded unknown, no message id)
    _, first = given_a_sent_delivery(state=DeliveryState.UNKNOWN)
    # When SendGrid's events name it
    apply(event("processed", first, 1))
    assert delivery_state(first) == DeliveryState.SENT
    apply(event("delivered", first, 2))
    # Then it is settled, and learns SendGrid's message id
    with session_scope(readonly=True) as session:
        settled = session.get(Delivery, first)
        assert settled.state == DeliveryState.DELIVERED
        assert settled.provider_message_id == "14c5d75ce93"
        assert settled.event_at == dt.datetime.fromtimestamp(1_700_000_002, dt.UTC)


def test_a_skipped_delivery_is_never_moved(db):
    _, delivery_id = given_a_sent_delivery(state=DeliveryState.SKIPPED)
    apply(event("delivered", delivery_id, 1))
    assert delivery_state(delivery_id) == DeliveryState.SKIPPED


def test_events_without_our_id_correlate_through_message_id_and_address(db):
    # Given one SendGrid request (one X-Message-Id) that carried two recipients
    with session_scope() as session:
        ids = []
        for address in ("one@example.com", "two@example.com"):
            rid = consenting_recipient(session, address)
            d = Delivery(
                purpose="nouma_offers",
                belongs_to="campaign:2",
                recipient_id=rid,
                kind="test_message",
                state=DeliveryState.SENT,
                provider_message_id="ReqId123",
            )
            session.add(d)
            session.flush()
            ids.append(d.id)
    # When an event names the request and the second address only
    apply(
        {
            "event": "delivered",
            "email": "Two@Example.com",
            "sg_event_id": "e1",
            "sg_message_id": "ReqId123.f.0",
        }
    )
    # Then the second delivery, and only it, is delivered
    assert [delivery_state(d) for d in ids] == [DeliveryState.SENT, DeliveryState.DELIVERED]


def test_a_global_unsubscribe_we_cannot_correlate_withdraws_every_purpose(db):
    with session_scope() as session:
        recipient_id = consenting_recipient(session)
    apply({"event": "unsubscribe", "email": ADDRESS, "sg_event_id": "u1", "timestamp": 1_700_000_000})
    assert consents(recipient_id) == dict.fromkeys(ALL, False)


def test_group_resubscribe_undoes_a_sendgrid_group_unsubscribe_only(db, asm_groups):
    # Given a recipient who left partner offers through SendGrid's group page
    recipient_id, delivery_id = given_a_sent_delivery()
    apply(event("group_unsubscribe", delivery_id, 1, asm_group_id=10))
    assert consents(recipient_id)["partner_offers"] is False
    # When they resubscribe there, then partner offers are granted again, noted as such
    outcome = apply(event("group_resubscribe", delivery_id, 2, asm_group_id=10))
    assert outcome.consents_regranted == 1
    assert consents(recipient_id)["partner_offers"] is True
    assert "undoes consent event" in consent_events(recipient_id)[-1].note

    # Given a withdrawal of NouMa's offers through our own pages (not SendGrid)
    from tests.factories import withdraw

    withdraw(recipient_id, "nouma_offers")
    # When a resubscribe to the NouMa offers group arrives, then it is kept, not applied
    outcome = apply(event("group_resubscribe", delivery_id, 3, asm_group_id=7))
    assert outcome.consents_regranted == 0
    assert consents(recipient_id)["nouma_offers"] is False


def test_a_late_provider_unsubscribe_does_not_undo_a_newer_grant(db):
    # Given a grant made after the person clicked SendGrid's link (the event arrives late)
    recipient_id, delivery_id = given_a_sent_delivery()
    old = event("unsubscribe", delivery_id, 1)
    old["timestamp"] = 1_000_000_000
    # When the old unsubscribe is applied, then it is recorded but the newer grant stands
    apply(old)
    assert consents(recipient_id)["nouma_offers"] is True
    assert consent_events(recipient_id)[-1].action.value == "withdrawn"


def test_a_hard_bounce_suppresses_the_bounced_address_even_without_a_delivery(db):
    apply(
        {
            "event": "bounce",
            "type": "bounce",
            "email": "Gone@Example.com",
            "sg_event_id": "b1",
            "status": "5.1.1",
        }
    )
    assert suppressions() == {(hash_of("gone@example.com"), "all", "hard_bounce")}


def test_batches_waiting_too_long_are_found_and_applied_ones_pruned(db):
    waiting = batches.store_batch("sendgrid", b"[]", signed_at=1)
    done = batches.store_batch("sendgrid", b"[]", signed_at=1)
    batches.apply_batch(done)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert batches.unapplied_batches(now=later) == [waiting]
    assert batches.prune_batches(now=later) == 1
    assert batches.unapplied_batches(now=later) == [waiting]


def test_events_with_nul_and_lone_surrogates_are_stored(db):
    # Given JSON escapes no database column accepts, in an address and a free-text field
    body = b'[{"event":"bounce","sg_event_id":"n1","email":"x\\ud800@example.com","reason":"a\\u0000b"}]'
    batch_id = batches.store_batch("sendgrid", body, signed_at=1)
    # When applied, then the event is kept (cleaned), and nothing crashes
    assert batches.apply_batch(batch_id).events == 1
    with session_scope(readonly=True) as session:
        (stored,) = session.scalars(sa.select(DeliveryEvent))
        assert stored.payload["reason"] == "a\ufffdb"


def test_spam_reports_applied_from_the_webhook_pause_running_campaigns_of_that_purpose(
    db, tmp_path, monkeypatch
):
    from mailer.campaigns.models import CampaignState, PauseCause
    from tests.campaign_helpers import campaign, new_campaign, queue_and_start

    monkeypatch.setenv("MAILER_BREAKER_MIN_DELIVERIES", "10")
    reset_process_state()
    # Given a running nouma_offers campaign and 20 nouma_offers deliveries that left us
    with session_scope() as session:
        recipients = [consenting_recipient(session, f"reader{n}@example.com") for n in range(20)]
    offers = new_campaign(tmp_path / "offers")
    queue_and_start(offers)
    with session_scope() as session:
        session.execute(
            sa.insert(Delivery),
            [
                {
                    "purpose": "nouma_offers",
                    "belongs_to": "campaign:0",
                    "recipient_id": rid,
                    "kind": "campaign",
                    "state": "sent",
                }
                for rid in recipients
            ],
        )
        ids = list(session.scalars(sa.select(Delivery.id).where(Delivery.belongs_to == "campaign:0")))
    # When SendGrid reports one spam complaint (1 in 20: far above 0.1%)
    outcome = apply(event("spamreport", ids[0], 1, email="reader0@example.com"))
    # Then the campaign is paused by the breaker in the same pass, with the figures as its reason
    assert outcome.purposes_hit == {"nouma_offers"}
    paused = campaign(offers)
    assert (paused.state, paused.paused_by) == (CampaignState.PAUSED, PauseCause.COMPLAINT_BREAKER)
    assert "spam complaints at 5.00% of the last 20 deliveries" in paused.pause_reason
