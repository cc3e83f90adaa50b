"""The right to erasure: every clear copy of a person's address, name, IPs and user agents goes.

What goes: the recipient's address, name and site id (the row stays, pseudonymous, so the audit
trail keeps its shape; later sends are skipped ``erased``), saved searches and stored location,
the IPs and user agents of the consent ledger, the provider's event payloads about them (reduced
to their type and time), their events inside stored webhook bodies, the outbox's copies of their
mails, the address inside error texts and notes, and tender contacts written with that address.
What stays: the suppression entries (hashes: an opposition outlives the account), the consent
ledger's actions, times and wording versions, the delivery records, and the request itself in the
rights trail (by hash).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import recipients
from mailer.addresses import address_hash, normalise_address
from mailer.config import get_settings
from mailer.models import ConsentEvent, Delivery, DeliveryEvent, Suppression
from mailer.provider_events.models import WebhookBatch
from mailer.rights import trail
from mailer.rights.models import RightKind, RightsRequest
from mailer.suppression.models import TenderContactKey

#: What replaces an erased value inside a text that must otherwise stay (an error, a note).
ERASED = "[erased]"
#: Fields of a provider event that describe the person: dropped from stored webhook bodies.
PERSONAL_EVENT_FIELDS = ("email", "ip", "useragent", "url", "reason", "response")


@dataclass
class Erased:
    """Counts of what an erasure removed (no personal data)."""

    recipient_id: int | None = None
    consent_events: int = 0
    provider_events: int = 0
    webhook_batches: int = 0
    outbox_files: int = 0
    texts: int = 0
    tenders: int = 0


def erase(session: Session, address: str, *, source: str, note: str | None, operator: str | None) -> Erased:
    """Erase everything clear about an address, in the caller's transaction (see the module doc)."""
    normal = normalise_address(address)
    done = Erased()
    recipient = recipients.find(session, normal)
    names: list[str] = []
    delivery_ids: list[int] = []
    if recipient is not None:
        done.recipient_id = recipient.id
        names = [recipient.name] if recipient.name and len(recipient.name) >= 3 else []
        delivery_ids = list(
            session.scalars(sa.select(Delivery.id).where(Delivery.recipient_id == recipient.id))
        )
        result = session.execute(
            sa.update(ConsentEvent)
            .where(ConsentEvent.recipient_id == recipient.id)
            .where(sa.or_(ConsentEvent.ip.is_not(None), ConsentEvent.user_agent.is_not(None)))
            .values(ip=None, user_agent=None)
        )
        done.consent_events = int(result.rowcount)  # type: ignore[attr-defined]
        recipients.erase(session, normal)
    clear = _Clearer(normal, names)
    done.provider_events = _reduce_events(session, normal, delivery_ids)
    done.webhook_batches = _scrub_webhook_bodies(session, normal, clear)
    done.texts = _scrub_texts(session, delivery_ids, address_hash(normal), clear)
    done.tenders = _drop_tender_contacts(session, normal)
    done.outbox_files = _remove_outbox_copies(delivery_ids)
    trail.record(
        session,
        RightKind.ERASURE,
        address_hash(normal),
        source=source,
        operator=operator,
        note=clear(note) if note else None,
        recipient_id=done.recipient_id,
    )
    return done


class _Clearer:
    """Replaces the address and the name wherever they stand in a text, whatever their case."""

    def __init__(self, address: str, names: list[str]) -> None:
        parts = [re.escape(address), *(re.escape(n) for n in names)]
        self.pattern = re.compile("|".join(parts), re.IGNORECASE)

    def __call__(self, text: str) -> str:
        return self.pattern.sub(ERASED, text)

    def found_in(self, text: str | None) -> bool:
        return bool(text) and self.pattern.search(text or "") is not None


def _reduce_events(session: Session, address: str, delivery_ids: list[int]) -> int:
    """Provider events about the person keep their type and time only."""
    about = sa.func.lower(DeliveryEvent.payload["email"].as_string()) == address
    where = sa.or_(about, DeliveryEvent.delivery_id.in_(delivery_ids)) if delivery_ids else about
    count = 0
    for event in session.scalars(sa.select(DeliveryEvent).where(where)):
        reduced = {"event": event.type, "timestamp": int(event.occurred_at.timestamp()), "erased": True}
        if event.payload != reduced:
            event.payload = reduced
            count += 1
    session.flush()
    return count


def _scrub_webhook_bodies(session: Session, address: str, clear: _Clearer) -> int:
    """Stored webhook bodies keep their other events; the person's lose every personal field."""
    count = 0
    for batch in session.scalars(
        sa.select(WebhookBatch).where(sa.func.lower(WebhookBatch.body).contains(address))
    ):
        body = _without_person(batch.body, address)
        body = clear(body) if clear.found_in(body) else body
        if body != batch.body:
            batch.body = body
            count += 1
    session.flush()
    return count


def _without_person(body: str, address: str) -> str:
    try:
        events = json.loads(body)
    except ValueError:
        return body
    if not isinstance(events, list):
        return body
    for event in events:
        if isinstance(event, dict) and str(event.get("email", "")).strip().lower() == address:
            for name in PERSONAL_EVENT_FIELDS:
                event.pop(name, None)
            event["email"] = ERASED
    return json.dumps(events, ensure_ascii=False, separators=(",", ":"))


def _scrub_texts(session: Session, delivery_ids: list[int], hashed: str, clear: _Clearer) -> int:
    """The address or name inside delivery errors, suppression notes and request notes."""
    count = 0
    rows: list[Any] = []
    if delivery_ids:
        rows += session.scalars(
            sa.select(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.error.is_not(None))
        )
    for delivery in rows:
        if clear.found_in(delivery.error):
            delivery.error = clear(delivery.error or "")
            count += 1
    for entry in session.scalars(sa.select(Suppression).where(Suppression.address_hash == hashed)):
        if clear.found_in(entry.note):
            entry.note = clear(entry.note or "")
            count += 1
    for request in session.scalars(sa.select(RightsRequest).where(RightsRequest.subject_hash == hashed)):
        if clear.found_in(request.note):
            request.note = clear(request.note or "")
            count += 1
    session.flush()
    return count


def _drop_tender_contacts(session: Session, address: str) -> int:
    """Tender contacts written with the address lose the whole contact (name, address, phone)."""
    from mailer.alerts.models import Tender

    written_with = sa.or_(
        sa.func.lower(Tender.contact_email) == address,
        sa.func.lower(Tender.contact_name).contains(address),
    )
    ids = list(session.scalars(sa.select(Tender.id).where(written_with)))
    if not ids:
        return 0
    session.execute(
        sa.update(Tender)
        .where(Tender.id.in_(ids))
        .values(contact_name=None, contact_email=None, contact_phone=None)
    )
    # A contact with nothing left has no key: the tenders' old keys simply go
    session.execute(sa.delete(TenderContactKey).where(TenderContactKey.tender_id.in_(ids)))
    return len(ids)


def _remove_outbox_copies(delivery_ids: list[int]) -> int:
    """The embedded outbox's .eml copies of the person's mails."""
    directory = get_settings().outbox_dir
    removed = 0
    for delivery_id in delivery_ids:
        for path in (
            directory / f"delivery-{delivery_id}.eml",
            directory / f"delivery-{delivery_id}.eml.tmp",
        ):
            if path.exists():
                path.unlink()
                removed += 1
    return removed
