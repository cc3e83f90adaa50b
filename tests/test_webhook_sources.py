"""A second webhook source beside SendGrid's: its own route, its own event ids, the same rules.

``AcmeWebhook`` stands for a provider added by the README's checklist: a webhook module (this
class), a line in the registry, its settings (here, none). It proves the route is per source and
that an event is unique per (provider, event id): two providers' ids may be equal.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa

from mailer.config import Settings
from mailer.db import session_scope
from mailer.models import ConsentSource, Delivery, DeliveryEvent, DeliveryState
from mailer.provider_events import batches
from mailer.provider_events.models import WebhookBatch
from mailer.providers import BadSignature, registry
from mailer.providers.events import EventKind, ProviderEvent
from mailer.providers.webhook import WebhookSource
from tests.factories import make_recipient
from tests.web_support import WebhookSigner, sendgrid_body, web_client

#: The shared secret Acme's posts carry (a real provider would sign them).
ACME_TOKEN = "acme-test-token"


class AcmeWebhook(WebhookSource):
    """A provider whose posts are ``[{"id", "type", "delivery", "at"}]`` with a token header."""

    name = "acme"
    label = "Acme Mail"
    #: No consent event is recorded in these tests.
    consent_source = ConsentSource.SITE
    max_body_bytes = 64 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> AcmeWebhook:
        return cls()

    def check_configured(self) -> None:
        pass

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> int:
        if headers.get("x-acme-token") != ACME_TOKEN:
            raise BadSignature("wrong token")
        return int(now)

    def parse(self, body: str, received_at: dt.datetime) -> list[ProviderEvent]:
        kinds = {"delivered": EventKind.DELIVERED, "bounced": EventKind.BOUNCE}
        return [
            ProviderEvent(
                event_id=item["id"],
                kind=kinds.get(item["type"], EventKind.UNKNOWN),
                name=item["type"],
                occurred_at=dt.datetime.fromtimestamp(item["at"], dt.UTC),
                payload=item,
                delivery_id=int(item["delivery"]),
            )
            for item in json.loads(body)
        ]


@pytest.fixture
def broker():
    """The in-process broker, emptied of the batch ids the posts queue."""
    from mailer.broker import broker

    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def acme(monkeypatch):
    """Acme registered beside SendGrid, as its line in the registry would."""
    monkeypatch.setitem(registry.WEBHOOK_SOURCES, "acme", f"{__name__}:AcmeWebhook")
    registry._webhook_class.cache_clear()
    yield
    registry._webhook_class.cache_clear()


def a_sent_delivery() -> int:
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
        return delivery.id


def stored_events() -> list[tuple[str, str, str]]:
    with session_scope(readonly=True) as session:
        rows = session.execute(
            sa.select(DeliveryEvent.provider, DeliveryEvent.provider_event_id, DeliveryEvent.type)
        )
        return sorted((r.provider, r.provider_event_id, r.type) for r in rows)


def acme_body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode()


def test_each_source_has_its_own_route(db, acme, broker):
    # Given Acme registered beside SendGrid
    client = web_client()
    body = acme_body([{"id": "e1", "type": "delivered", "delivery": "1", "at": 1_700_000_000}])
    # When Acme posts with a wrong token, then with its own
    refused = client.post("/webhooks/acme", content=body, headers={"x-acme-token": "forged"})
    accepted = client.post("/webhooks/acme", content=body, headers={"x-acme-token": ACME_TOKEN})
    # Then its route refused the first and stored the second under its name; SendGrid's is unchanged
    assert (refused.status_code, accepted.status_code) == (400, 200)
    with session_scope(readonly=True) as session:
        stored = list(session.scalars(sa.select(WebhookBatch)))
    assert [(b.provider, b.body) for b in stored] == [("acme", body.decode())]
    assert client.post("/webhooks/sendgrid", content=b"[]").status_code == 503  # no SendGrid key set


def test_two_providers_may_report_the_same_event_id(db, acme):
    # Given a sent delivery, and an Acme event whose id is also a SendGrid event's
    delivery_id = a_sent_delivery()
    at = int(time.time())
    acme_batch = batches.store_batch(
        "acme", acme_body([{"id": "same-id", "type": "delivered", "delivery": delivery_id, "at": at}]), at
    )
    sendgrid_event = {
        "event": "bounce",
        "sg_event_id": "same-id",
        "delivery_id": str(delivery_id),
        "timestamp": at + 1,
    }
    sendgrid_batch = batches.store_batch("sendgrid", sendgrid_body([sendgrid_event]), at)
    # When both batches are applied, and each again
    outcomes = [batches.apply_batch(b) for b in (acme_batch, sendgrid_batch, acme_batch, sendgrid_batch)]
    # Then each provider's event is stored once and applied: the delivery bounced after delivery
    assert stored_events() == [("acme", "same-id", "delivered"), ("sendgrid", "same-id", "bounce")]
    assert [o.duplicates for o in outcomes[:2]] == [0, 0]
    with session_scope(readonly=True) as session:
        assert session.get(Delivery, delivery_id).state == DeliveryState.BOUNCED
    # And the same provider posting the same id again changes nothing
    again = batches.store_batch("sendgrid", sendgrid_body([sendgrid_event]), at)
    assert batches.apply_batch(again).duplicates == 1
    assert len(stored_events()) == 2


def test_sendgrid_keeps_its_route_and_its_signature(db, monkeypatch, acme, broker):
    # Given SendGrid's key, with Acme registered too
    from tests.conftest import reset_process_state

    signer = WebhookSigner()
    monkeypatch.setenv("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_process_state()
    body = sendgrid_body([{"event": "delivered", "sg_event_id": "s1"}])
    client = web_client()
    # When SendGrid posts a signed batch to its URL, and the same body to Acme's
    ok = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body))
    crossed = client.post("/webhooks/acme", content=body, headers=signer.headers(body))
    # Then SendGrid's is taken and stored under its name; Acme's route refuses a SendGrid signature
    assert (ok.status_code, crossed.status_code) == (200, 400)
    with session_scope(readonly=True) as session:
        assert [b.provider for b in session.scalars(sa.select(WebhookBatch))] == ["sendgrid"]
