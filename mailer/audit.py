"""What we hold on one address and what we sent it: the answer to an access request."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.addresses import address_hash, normalise_address
from mailer.models import Consent, ConsentEvent, Delivery, DeliveryEvent, Recipient
from mailer.suppression import entries


@dataclass
class AuditReport:
    """Everything recorded for an address, oldest first within each part."""

    address: str
    recipient: dict[str, Any] | None
    consents: list[dict[str, Any]] = field(default_factory=list)
    consent_events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    suppressions: list[dict[str, Any]] = field(default_factory=list)
    #: Tender alerts: the recipient's saved searches and stored location (with its consent).
    saved_searches: list[dict[str, Any]] = field(default_factory=list)
    geolocation: dict[str, Any] | None = None
    #: Tenders naming this address as their buyer's contact (policy article 5).
    tender_contact_of: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def _row(obj: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def report(session: Session, address: str) -> AuditReport:
    """The audit trail of an address (its recipient, consents, deliveries with events, suppressions)."""
    normal = normalise_address(address)
    hashed = address_hash(normal)
    recipient = session.scalars(sa.select(Recipient).where(Recipient.address == normal)).one_or_none()
    result = AuditReport(address=normal, recipient=None)
    result.suppressions = [
        _row(e, "scope", "reason", "source", "note", "created_by", "created_at")
        for e in entries.entries_for_hashes(session, [hashed])
    ]
    from mailer.alerts.models import Geolocation, SavedSearch, Tender

    result.tender_contact_of = list(
        session.scalars(sa.select(Tender.reference).where(Tender.contact_email == normal).order_by(Tender.id))
    )
    if recipient is None:
        return result
    result.saved_searches = [
        _row(
            s,
            "external_ref",
            "name",
            "frequency",
            "active",
            "keywords",
            "cpv_prefixes",
            "departments",
            "regions",
            "min_value",
            "max_value",
            "radius_km",
            "created_at",
        )
        for s in session.scalars(
            sa.select(SavedSearch).where(SavedSearch.recipient_id == recipient.id).order_by(SavedSearch.id)
        )
    ]
    location = session.get(Geolocation, recipient.id)
    if location is not None:
        result.geolocation = _row(
            location,
            "latitude",
            "longitude",
            "consent_granted",
            "consent_at",
            "consent_source",
            "wording_version",
        )
    result.recipient = _row(
        recipient,
        "id",
        "address",
        "name",
        "locale",
        "time_zone",
        "external_ref",
        "state",
        "created_at",
    )
    result.consents = [
        _row(c, "purpose", "granted", "at", "wording_version", "partner_list_version")
        for c in session.scalars(
            sa.select(Consent).where(Consent.recipient_id == recipient.id).order_by(Consent.purpose)
        )
    ]
    result.consent_events = [
        _row(
            e,
            "id",
            "purpose",
            "action",
            "at",
            "recorded_at",
            "source",
            "recorded_by",
            "ip",
            "user_agent",
            "wording_version",
            "partner_list_version",
            "note",
        )
        for e in session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.recipient_id == recipient.id)
            .order_by(ConsentEvent.at, ConsentEvent.id)
        )
    ]
    deliveries = list(
        session.scalars(
            sa.select(Delivery).where(Delivery.recipient_id == recipient.id).order_by(Delivery.id)
        )
    )
    events: dict[int, list[dict[str, Any]]] = {}
    for event in session.scalars(
        sa.select(DeliveryEvent)
        .where(DeliveryEvent.delivery_id.in_([d.id for d in deliveries]))
        .order_by(DeliveryEvent.occurred_at, DeliveryEvent.id)
    ):
        assert event.delivery_id is not None
        events.setdefault(event.delivery_id, []).append(_row(event, "type", "occurred_at"))
    result.deliveries = [
        {
            **_row(
                d,
                "id",
                "purpose",
                "kind",
                "belongs_to",
                "state",
                "skip_reason",
                "provider_message_id",
                "error",
                "attempts",
                "created_at",
                "finished_at",
            ),
            "events": events.get(d.id, []),
        }
        for d in deliveries
    ]
    return result


def jsonable(value: Any) -> Any:
    """Dates as ISO text, inside any dicts and lists: ready for ``json.dumps``."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
