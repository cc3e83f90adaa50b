"""POST /webhooks/sendgrid: signature vectors, replay window, store-then-queue-the-id, end to end."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from mailer.db import session_scope
from mailer.models import Delivery, DeliveryState
from mailer.provider_events.models import WebhookBatch
from tests.conftest import reset_process_state, shared_data
from tests.factories import make_recipient
from tests.web_support import WebhookSigner, consents, sendgrid_body, snapshot, web_client

PATH = "/webhooks/sendgrid"


def vectors() -> list[dict]:
    return json.loads(shared_data("sendgrid", "event_webhook_signature_vectors.json").read_text())["vectors"]


VECTORS = vectors()


def vector_headers(vector: dict) -> dict[str, str]:
    return {
        "X-Twilio-Email-Event-Webhook-Signature": vector["signature"],
        "X-Twilio-Email-Event-Webhook-Timestamp": vector["timestamp"],
        "content-type": "application/json",
    }


def clock_at(vector: dict):
    stamp = int(vector["timestamp"]) if vector["timestamp"].isdigit() else 1_600_112_502
    return lambda: stamp + 5.0


def configure(monkeypatch, public_key: str, window: int | None = None) -> None:
    monkeypatch.setenv("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY", public_key)
    if window is not None:
        monkeypatch.setenv("MAILER_SENDGRID_WEBHOOK_MAX_AGE_SECONDS", str(window))
    reset_process_state()


def batches() -> list[WebhookBatch]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(sa.select(WebhookBatch).order_by(WebhookBatch.id)))


def queued_messages(broker) -> list[dict]:
    queue = broker.queues.get("provider_events")
    return [json.loads(m) for m in list(queue.queue)] if queue is not None else []


@pytest.fixture
def broker():
    from mailer.broker import broker

    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["expected_valid"]], ids=lambda v: v["name"])
def test_valid_vectors_are_stored_and_only_their_id_is_queued(db, monkeypatch, broker, vector):
    # Given SendGrid's key for this vector, and the clock of the moment it was signed
    configure(monkeypatch, vector["public_key"])
    # When the exact signed post arrives
    response = web_client(clock=clock_at(vector)).post(
        PATH, content=vector["payload"].encode(), headers=vector_headers(vector)
    )
    # Then 200; the raw body is stored byte for byte; the queued message holds the batch id only
    assert response.status_code == 200
    (batch,) = batches()
    assert batch.body == vector["payload"] and batch.applied_at is None
    (message,) = queued_messages(broker)
    assert message["actor_name"] == "apply_provider_events" and message["args"] == [batch.id]
    assert "@" not in json.dumps(message)


@pytest.mark.parametrize("vector", [v for v in VECTORS if not v["expected_valid"]], ids=lambda v: v["name"])
def test_invalid_vectors_get_400_and_nothing_is_stored(db, monkeypatch, broker, vector):
    configure(monkeypatch, vector["public_key"])
    before = snapshot()
    response = web_client(clock=clock_at(vector)).post(
        PATH, content=vector["payload"].encode(), headers=vector_headers(vector)
    )
    assert response.status_code == 400
    assert snapshot() == before and queued_messages(broker) == []


@pytest.mark.parametrize("offset", [-601, 601, 10 * 365 * 86400])
def test_a_replayed_post_outside_the_window_is_refused(db, monkeypatch, broker, offset):
    # Given a correctly signed post, presented long after (or before) it was signed
    vector = VECTORS[0]
    configure(monkeypatch, vector["public_key"], window=600)
    stamp = int(vector["timestamp"])
    response = web_client(clock=lambda: stamp + offset).post(
        PATH, content=vector["payload"].encode(), headers=vector_headers(vector)
    )
    # Then it is refused and not stored
    assert response.status_code == 400 and batches() == []


def test_missing_headers_and_other_keys_are_refused(db, monkeypatch, broker):
    signer = WebhookSigner()
    configure(monkeypatch, signer.public_key)
    body = sendgrid_body([{"event": "delivered", "sg_event_id": "a", "email": "x@example.com"}])
    client = web_client()
    headers = signer.headers(body)
    assert client.post(PATH, content=body, headers=headers).status_code == 200
    for missing in ("X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"):
        assert (
            client.post(
                PATH, content=body, headers={k: v for k, v in headers.items() if k != missing}
            ).status_code
            == 400
        )
    assert client.post(PATH, content=body, headers=WebhookSigner().headers(body)).status_code == 400
    assert client.post(PATH, content=body + b" ", headers=headers).status_code == 400
    assert len(batches()) == 1


def test_without_a_configured_key_nothing_is_accepted(db, monkeypatch, broker):
    monkeypatch.delenv("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    reset_process_state()
    vector = VECTORS[0]
    response = web_client(clock=clock_at(vector)).post(
        PATH, content=vector["payload"].encode(), headers=vector_headers(vector)
    )
    assert response.status_code == 503 and batches() == []


def test_a_post_that_cannot_be_queued_is_removed_and_retried_by_sendgrid(db, monkeypatch, broker):
    from mailer import actors

    signer = WebhookSigner()
    configure(monkeypatch, signer.public_key)

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(actors.apply_provider_events, "send", broker_down)
    body = sendgrid_body([{"event": "delivered", "sg_event_id": "a"}])
    response = web_client().post(PATH, content=body, headers=signer.headers(body))
    assert response.status_code == 503 and batches() == []


def test_a_bad_public_key_fails_at_start_naming_the_variable(monkeypatch):
    from mailer.config import load_settings
    from mailer.errors import ConfigError

    monkeypatch.setenv("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        load_settings()


def test_end_to_end_a_signed_batch_reaches_our_records(db, monkeypatch, stub_worker):
    # Given a sent nouma_offers mail and SendGrid's signing key
    signer = WebhookSigner()
    configure(monkeypatch, signer.public_key)
    with session_scope() as session:
        recipient = make_recipient(session, "paul@example.com", granted=("nouma_offers",))
        delivery = Delivery(
            purpose="nouma_offers",
            belongs_to="campaign:9",
            recipient_id=recipient.id,
            kind="test_message",
            state=DeliveryState.SENT,
        )
        session.add(delivery)
        session.flush()
        delivery_id, recipient_id = delivery.id, recipient.id
    now = int(time.time())
    events = [
        {
            "event": "delivered",
            "email": "paul@example.com",
            "sg_event_id": "d1",
            "timestamp": now,
            "delivery_id": str(delivery_id),
        },
        {
            "event": "unsubscribe",
            "email": "paul@example.com",
            "sg_event_id": "u1",
            "timestamp": now + 1,
            "delivery_id": str(delivery_id),
        },
    ]
    body = sendgrid_body(events)
    # When SendGrid posts it twice (it often does) and the worker runs
    client = web_client()
    assert client.post(PATH, content=body, headers=signer.headers(body)).status_code == 200
    assert client.post(PATH, content=body, headers=signer.headers(body)).status_code == 200
    stub_worker.join("provider_events")
    # Then the delivery is delivered, the consent withdrawn once, and both batches applied
    with session_scope(readonly=True) as session:
        assert session.get(Delivery, delivery_id).state == DeliveryState.DELIVERED
    assert consents(recipient_id) == {"nouma_offers": False}
    first, second = batches()
    assert first.outcome["consents_withdrawn"] == 1 and second.outcome["duplicates"] == 2


def test_the_webhook_batches_table_has_its_migration(db):
    from mailer import migrations

    # alembic check: the models (webhook_batches included) match the migrated schema
    migrations.check(db)
