"""SendGrid's Event Webhook: signed posts verified, their events read into provider-neutral ones.

Signatures are ECDSA P-256 / SHA-256 over the timestamp header + the raw body; the verification
key is the base64 SubjectPublicKeyInfo SendGrid shows in its mail settings (a PEM block is
accepted too). SendGrid posts events in batches and delivers each event several times, in any
order: each keeps its ``sg_event_id`` (an event without one is keyed by a hash of its content),
names our delivery through the ``delivery_id`` custom arg we put in every personalization, and
SendGrid's quirks are read here, where each is commented. No database: ``mailer/provider_events``
stores and applies what this module returns.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mailer.config import Settings
from mailer.models import ConsentSource
from mailer.providers.errors import BadSignature, WebhookNotConfigured
from mailer.providers.events import DropReason, EventKind, ProviderEvent, content_id, storable
from mailer.providers.webhook import WebhookSource
from mailer.purposes import PURPOSE_KEYS
from mailer.webhook_keys import load_public_key

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: A DER ECDSA P-256 signature is at most 72 bytes; base64 of anything longer is not one.
MAX_SIGNATURE_CHARS = 200
#: Unix seconds fit in 10 digits until 2286; a longer "timestamp" is not one.
MAX_TIMESTAMP_CHARS = 12
#: SendGrid posts batches of events well under this; anything larger is refused unread.
MAX_WEBHOOK_BODY = 8 * 1024 * 1024
#: A timestamp above this is in milliseconds (some Marketing Campaigns events use them).
_MILLISECONDS_FROM = 100_000_000_000

#: SendGrid's ``dropped`` reasons that tell something lasting about the address: it is already
#: on one of SendGrid's own suppression lists.
DROP_REASONS: dict[str, DropReason] = {
    "bounced address": DropReason.BOUNCED_ADDRESS,
    "invalid": DropReason.INVALID_ADDRESS,
    "spam reporting address": DropReason.REPORTED_SPAM,
}


def verify(
    public_key: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    now: float,
    max_age_seconds: int,
) -> int:
    """Check a post's signature and freshness; return its signed timestamp or raise BadSignature.

    The signed message is the timestamp header's exact text followed by the body's exact bytes
    (SendGrid's own CRLF separators and trailing CRLF included): never re-serialised JSON.
    """
    if not signature or not timestamp:
        raise BadSignature("missing signature or timestamp header")
    if len(signature) > MAX_SIGNATURE_CHARS or len(timestamp) > MAX_TIMESTAMP_CHARS:
        raise BadSignature("malformed signature or timestamp header")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise BadSignature("timestamp is not a number of seconds")
    signed_at = int(timestamp)
    # Replay protection: a captured post is refused once it is older than the window (and a
    # timestamp from the future by as much, which a correct clock never produces).
    if abs(now - signed_at) > max_age_seconds:
        raise BadSignature("timestamp outside the accepted window")
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("signature is not base64") from None
    try:
        load_public_key(public_key).verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        # ValueError: bytes that are not a DER signature at all.
        raise BadSignature("signature does not verify") from None
    return signed_at


class SendGridWebhook(WebhookSource):
    """``POST /webhooks/sendgrid``: SendGrid's signed Event Webhook."""

    name = "sendgrid"
    label = "SendGrid"
    consent_source = ConsentSource.SENDGRID_EVENT
    max_body_bytes = MAX_WEBHOOK_BODY

    def __init__(self, public_key: str | None, max_age_seconds: int, groups: Mapping[int, str]) -> None:
        self.public_key = public_key
        self.max_age_seconds = max_age_seconds
        #: SendGrid unsubscribe group -> the purpose it stands for (MAILER_SENDGRID_ASM_GROUPS).
        self.groups = dict(groups)

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridWebhook:
        groups = {group: key for key in PURPOSE_KEYS if (group := settings.asm_group(key)) is not None}
        return cls(settings.sendgrid_webhook_public_key, settings.sendgrid_webhook_max_age_seconds, groups)

    def check_configured(self) -> None:
        self._key()

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> int:
        return verify(
            self._key(),
            headers.get(SIGNATURE_HEADER),
            headers.get(TIMESTAMP_HEADER),
            body,
            now=now,
            max_age_seconds=self.max_age_seconds,
        )

    def _key(self) -> str:
        if self.public_key is None:
            raise WebhookNotConfigured("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        return self.public_key

    def parse(self, body: str, received_at: dt.datetime) -> list[ProviderEvent]:
        try:
            document = storable(json.loads(body))
        except (json.JSONDecodeError, RecursionError) as error:
            raise ValueError(f"body is not JSON: {error}") from None
        if isinstance(document, dict):
            document = [document]
        if not isinstance(document, list):
            raise ValueError("body is not a JSON array of events")
        return [self.read_event(item, received_at) for item in document]

    def read_event(self, item: Any, received_at: dt.datetime) -> ProviderEvent:
        """One event, whatever its shape: a malformed one is kept as an unknown event."""
        if not isinstance(item, dict):
            payload = {"malformed": item}
            return ProviderEvent(content_id(payload), EventKind.UNKNOWN, "malformed", received_at, payload)
        name = str(item.get("event") or "").strip().lower()[:40] or "missing"
        kind = _kind(name, item.get("type"))
        reason = _text(item.get("reason"), 500)
        group = _int(item.get("asm_group_id"))
        message_id = _text(item.get("sg_message_id"), 200)
        return ProviderEvent(
            event_id=_event_id(item),
            kind=kind,
            name=name,
            occurred_at=_timestamp(item.get("timestamp"), received_at),
            payload=item,
            delivery_id=_int(item.get("delivery_id")),
            email=_text(item.get("email"), 254),
            # sg_message_id is the request's X-Message-Id, a dot, then SendGrid's own suffix.
            message_id=message_id.split(".")[0] if message_id else None,
            unsubscribe_group=group,
            group_purpose=self.groups.get(group) if group is not None else None,
            reason=reason,
            drop_reason=DROP_REASONS.get((reason or "").lower()) if kind == EventKind.DROPPED else None,
            ip=_text(item.get("ip"), 45),
            user_agent=_text(item.get("useragent"), 500),
        )


def _kind(name: str, bounce_type: Any) -> EventKind:
    # SendGrid files a block (a temporary refusal) as a bounce of ``type: blocked``.
    if name == "bounce" and str(bounce_type or "").lower() == "blocked":
        return EventKind.BLOCKED
    try:
        return EventKind(name)
    except ValueError:
        return EventKind.UNKNOWN


def _event_id(item: dict[str, Any]) -> str:
    event_id = item.get("sg_event_id")
    if isinstance(event_id, str) and event_id.strip():
        event_id = event_id.strip()
        # The column holds 120 characters; a longer id still dedupes through its hash.
        return event_id if len(event_id) <= 120 else "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    # Old and Marketing Campaigns events may lack an id: the same content is the same event.
    return content_id(item)


def _timestamp(value: Any, default: dt.datetime) -> dt.datetime:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return default


def _int(value: Any) -> int | None:
    # SendGrid sends custom args back as strings; group ids as numbers.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    return None


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:limit]
    return None
