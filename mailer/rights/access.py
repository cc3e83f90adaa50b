"""The right of access: everything held on a person, as one JSON document and a readable page.

The document holds the recipient record, the consent ledger with its proof, the suppression
entries, the saved searches and stored location, every delivery with its provider events (their
payloads too: what the provider told us about this person), the tender notices naming the person
as a contact (by address, and by name when the support desk gives it) and the rights requests
already answered. Nothing about anyone else.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import audit, rendering
from mailer.addresses import address_hash, normalise_address
from mailer.db import utcnow
from mailer.models import DeliveryEvent, Recipient
from mailer.rights import trail
from mailer.rights.models import RightKind
from mailer.suppression.contacts import name_keys
from mailer.suppression.models import TenderContactKey

#: Version of the document's shape, written in it.
DOCUMENT_VERSION = 1


def document(session: Session, address: str, *, name: str | None = None) -> dict[str, Any]:
    """Everything held on an address (and on a tender contact of that name), JSON-ready."""
    normal = normalise_address(address)
    found = audit.report(session, normal).as_json()
    deliveries = found.pop("deliveries")
    ids = [d["id"] for d in deliveries]
    payloads: dict[int, list[dict[str, Any]]] = {}
    if ids:
        for event in session.scalars(
            sa.select(DeliveryEvent)
            .where(DeliveryEvent.delivery_id.in_(ids))
            .order_by(DeliveryEvent.occurred_at, DeliveryEvent.id)
        ):
            assert event.delivery_id is not None
            payloads.setdefault(event.delivery_id, []).append(
                {"type": event.type, "occurred_at": event.occurred_at.isoformat(), "payload": event.payload}
            )
    for delivery in deliveries:
        delivery["events"] = payloads.get(delivery["id"], [])
    return {
        "document": "NouMa Mailer: personal data held",
        "version": DOCUMENT_VERSION,
        "generated_at": utcnow().isoformat(),
        **found,
        "deliveries": deliveries,
        "tender_contact_of": _tenders_naming(session, normal, name),
        "rights_requests": audit.jsonable(trail.for_subject(session, address_hash(normal))),
    }


def _tenders_naming(session: Session, address: str, name: str | None) -> list[dict[str, Any]]:
    from mailer.alerts.models import Tender

    by_address = sa.select(Tender.id).where(Tender.contact_email == address)
    ids = set(session.scalars(by_address))
    named: set[int] = set()
    if name:
        named = set(
            session.scalars(
                sa.select(TenderContactKey.tender_id).where(TenderContactKey.key.in_(sorted(name_keys(name))))
            )
        )
    rows = session.execute(
        sa.select(
            Tender.id,
            Tender.reference,
            Tender.title,
            Tender.contact_name,
            Tender.contact_email,
            Tender.contact_phone,
        )
        .where(Tender.id.in_(sorted(ids | named)))
        .order_by(Tender.id)
    )
    return [
        {
            "reference": r.reference,
            "title": r.title,
            "contact": {"name": r.contact_name, "email": r.contact_email, "phone": r.contact_phone},
            "found_by": "address" if r.id in ids else "name",
        }
        for r in rows
    ]


def export(
    session: Session,
    address: str,
    *,
    operator: str | None,
    source: str,
    note: str | None,
    name: str | None = None,
) -> dict[str, Any]:
    """The access document, the request recorded in the trail."""
    found = document(session, address, name=name)
    recipient = session.scalars(
        sa.select(Recipient.id).where(Recipient.address == normalise_address(address))
    ).one_or_none()
    trail.record(
        session,
        RightKind.ACCESS,
        address_hash(normalise_address(address)),
        source=source,
        operator=operator,
        note=note,
        recipient_id=recipient,
    )
    return found


def readable(found: dict[str, Any], locale: str) -> str:
    """The document as a page a person can read (HTML, self-contained, in their language)."""
    template = rendering.environment(locale).get_template("documents/subject_access.html")
    return template.render(found=found, locale=locale)
