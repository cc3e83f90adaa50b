"""Small builders for test data (example.com / example.invalid addresses only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import consent, recipients
from mailer.db import session_scope
from mailer.models import ConsentSource, Delivery, Recipient, SuppressionReason
from mailer.suppression import entries

PROOF = consent.Proof(source=ConsentSource.SIGNUP_FORM, ip="192.0.2.1", wording_version="test-1")


def make_recipient(
    session: Session,
    address: str,
    *,
    name: str | None = None,
    locale: str = "fr",
    granted: Iterable[str] = (),
) -> Recipient:
    recipient = recipients.create(session, address, name=name, locale=locale)
    for purpose in granted:
        consent.grant(session, recipient.id, purpose, PROOF)
    return recipient


def make_recipients(
    count: int, *, granted: Iterable[str] = ("tender_alerts",), locale: str = "fr"
) -> list[int]:
    purposes = list(granted)
    with session_scope() as session:
        return [
            make_recipient(session, f"person{i}@example.com", granted=purposes, locale=locale).id
            for i in range(count)
        ]


def withdraw(recipient_id: int, purpose: str, at: dt.datetime | None = None) -> None:
    with session_scope() as session:
        consent.withdraw(
            session, recipient_id, purpose, consent.Proof(source=ConsentSource.SUPPORT_REQUEST, at=at)
        )


def oppose(
    address: str, scope: str = "all", reason: SuppressionReason = SuppressionReason.OPPOSITION
) -> None:
    with session_scope() as session:
        entries.add(session, address, scope=scope, reason=reason, source="support_request")


def all_deliveries() -> list[Delivery]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(sa.select(Delivery).order_by(Delivery.id)))


def table_counts() -> dict[str, int]:
    """Rows in every table: compared before and after a refused command."""
    from mailer.db import Base

    with session_scope(readonly=True) as session:
        return {
            t.name: session.scalar(sa.select(sa.func.count()).select_from(t)) or 0
            for t in Base.metadata.sorted_tables
        }
