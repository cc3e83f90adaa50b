"""The deliver actor on the in-process broker: retries as stated, ids only in message bodies."""

from __future__ import annotations

import json
import logging

from mailer import actors
from mailer.batch import BatchSpec
from mailer.models import DeliveryState
from tests.factories import all_deliveries, make_recipients
from tests.fakes.sendgrid import RateLimit, Reject


def test_a_429_is_retried_after_the_servers_delay(db, fake_sendgrid, stub_worker):
    ids = make_recipients(1)
    fake_sendgrid.script(RateLimit(reset_in=1))
    actors.enqueue([BatchSpec("test_message", "tender_alerts", "test:429", tuple(ids))])
    stub_worker.join(actors.DELIVERY_QUEUE, timeout=30_000)
    (record,) = all_deliveries()
    assert (record.state, record.attempts) == (DeliveryState.SENT, 2)
    first, second = fake_sendgrid.requests
    assert (first.status, second.status) == (429, 202)
    assert second.received_at - first.received_at >= 0.9


def test_a_failing_api_is_retried_then_recorded_failed(db, fake_sendgrid, stub_worker):
    ids = make_recipients(1)
    fake_sendgrid.script(*[Reject(500, "Internal Server Error")] * 3)
    actors.deliver.send_with_options(
        args=("test_message", "tender_alerts", "test:500", ids), max_retries=2, min_backoff=10, max_backoff=20
    )
    stub_worker.join(actors.DELIVERY_QUEUE, timeout=30_000)
    (record,) = all_deliveries()
    assert (record.state, record.attempts, record.error) == (
        DeliveryState.FAILED,
        3,
        "500: Internal Server Error",
    )
    assert len(fake_sendgrid.requests) == 3


def test_message_bodies_and_info_logs_hold_no_personal_data(db, fake_sendgrid, caplog):
    from mailer.broker import broker

    ids = make_recipients(3)
    broker.flush_all()
    actors.enqueue([BatchSpec("test_message", "tender_alerts", "test:privacy", tuple(ids))])
    (raw,) = list(broker.queues[actors.DELIVERY_QUEUE].queue)
    body = json.loads(raw)
    assert body["args"] == ["test_message", "tender_alerts", "test:privacy", ids]
    assert "@" not in raw.decode() and "example" not in raw.decode()
    broker.flush_all()
    # the actor itself, run in this thread, logs counts and ids only
    with caplog.at_level(logging.INFO):
        actors.deliver.fn("test_message", "tender_alerts", "test:privacy", ids)
    assert caplog.records, "the batch should log its outcome"
    assert all("@" not in r.getMessage() and "example" not in r.getMessage() for r in caplog.records)


def test_a_burst_of_429s_does_not_use_up_the_retries(db, fake_sendgrid, stub_worker):
    ids = make_recipients(1)
    fake_sendgrid.script(*[RateLimit(reset_in=0.2)] * 3)
    # Given a message allowed a single retry, When SendGrid answers 429 three times
    actors.deliver.send_with_options(args=("test_message", "tender_alerts", "test:429s", ids), max_retries=1)
    stub_worker.join(actors.DELIVERY_QUEUE, timeout=60_000)
    # Then it still goes out, once
    (record,) = all_deliveries()
    assert record.state == DeliveryState.SENT
    assert [r.status for r in fake_sendgrid.requests] == [429, 429, 429, 202]


def test_campaign_sends_through_the_deliver_actor_carry_their_campaign_id(db, fake_sendgrid, tmp_path):
    from mailer.broker import broker
    from tests.campaign_helpers import new_campaign, outcomes

    # Given a campaign and its recipients, sent in one message through the generic actor
    ids = make_recipients(2, granted=("nouma_offers",))
    cid = new_campaign(tmp_path)
    broker.flush_all()
    actors.enqueue([BatchSpec("campaign", "nouma_offers", f"campaign:{cid}", tuple(ids), campaign_id=cid)])
    (raw,) = list(broker.queues[actors.DELIVERY_QUEUE].queue)
    broker.flush_all()

    # Then the message names the campaign by its id, last; other kinds keep their four arguments
    args = json.loads(raw)["args"]
    assert args == ["campaign", "nouma_offers", f"campaign:{cid}", ids, cid]
    assert len(BatchSpec("test_message", "tender_alerts", "test:x", (1,)).as_message_args()) == 4

    # When the actor runs it, the campaign's mail goes to both
    actors.deliver.fn(*args)
    assert outcomes(cid) == {("sent", None): 2}
