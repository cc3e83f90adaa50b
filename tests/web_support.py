"""Helpers for the web process tests: an in-process client, form tokens, state snapshots."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from mailer.db import session_scope
from mailer.models import Consent, ConsentEvent, Suppression
from tests.factories import table_counts

BASE_URL = "https://mailer.example.com"
FORM_ENCODED = {"content-type": "application/x-www-form-urlencoded"}
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
#: What a browser says of a form posted from one of our own pages.
SAME_ORIGIN = {"sec-fetch-site": "same-origin", "origin": BASE_URL}


def web_client(clock: Callable[[], float] = time.time) -> TestClient:
    from mailer.web import create_app

    return TestClient(create_app(clock=clock, run_worker=False), base_url=BASE_URL)


def form_token(html: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', html)
    assert match, "the page carries no form token"
    return match.group(1)


def post_form(client: TestClient, url: str, fields: list[tuple[str, str]], **headers: str) -> Any:
    from urllib.parse import urlencode

    return client.post(
        url, content=urlencode(fields).encode(), headers={**FORM_ENCODED, **SAME_ORIGIN, **headers}
    )


def consents(recipient_id: int) -> dict[str, bool]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(sa.select(Consent).where(Consent.recipient_id == recipient_id))
        return {row.purpose: row.granted for row in rows}


def consent_events(recipient_id: int) -> list[ConsentEvent]:
    with session_scope(readonly=True) as session:
        return list(
            session.scalars(
                sa.select(ConsentEvent)
                .where(ConsentEvent.recipient_id == recipient_id)
                .order_by(ConsentEvent.id)
            )
        )


def suppressions() -> set[tuple[str, str, str]]:
    """(address hash, scope, reason) of every suppression entry."""
    with session_scope(readonly=True) as session:
        return {(s.address_hash, s.scope, s.reason.value) for s in session.scalars(sa.select(Suppression))}


def snapshot() -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Everything a refused request must leave as it was: row counts and the consent state."""
    with session_scope(readonly=True) as session:
        state = sorted(
            (c.recipient_id, c.purpose, c.granted, c.event_id) for c in session.scalars(sa.select(Consent))
        )
    return table_counts(), state


class WebhookSigner:
    """A P-256 key pair standing in for SendGrid's: signs posts the way SendGrid does."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "content-type": "application/json",
        }


def sendgrid_body(events: list[dict[str, Any]]) -> bytes:
    """A body as SendGrid writes it: one event a line, CRLF separated, trailing CRLF."""
    return ("[" + ",\r\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "]\r\n").encode()
