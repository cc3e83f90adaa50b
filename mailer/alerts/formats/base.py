"""What every format reader gives back, and the few rules they share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from mailer.addresses import normalise_address
from mailer.alerts.notice_kinds import NoticeKind
from mailer.alerts.places import places
from mailer.alerts.tenders import Where
from mailer.errors import InvalidAddress


@dataclass
class RawNotice:
    """One notice as a format read it: the record's fields, or why it is refused or left out."""

    where: Where
    #: The fields of a ``TenderRecord``.
    fields: dict[str, Any] | None = None
    #: Why the notice is refused (the import stops unless asked to skip bad records).
    problem: str | None = None
    #: Why a good notice is left out: a kind that is never announced.
    skipped: str | None = None
    kind: NoticeKind | None = None
    #: What the import changed or flags without refusing the notice.
    notes: list[str] = field(default_factory=list)


def place_of(
    performance_nuts: Iterable[str],
    performance_postal_code: str | None,
    buyer_nuts: Iterable[str],
    buyer_postal_code: str | None,
) -> dict[str, Any]:
    """Where the work is: the place of performance (NUTS, then postal code), else the buyer's.

    The fields ``departments`` and ``regions`` of a record, with ``postal_code`` when it decided
    (Corsica's legacy code reads it).
    """
    reference = places()
    departments, regions = reference.from_nuts(performance_nuts)
    postal_code = performance_postal_code
    if not departments and (found := reference.department_of_postal_code(performance_postal_code)):
        departments = [found]
    if not departments:
        buyer_departments, buyer_regions = reference.from_nuts(buyer_nuts)
        departments, regions = buyer_departments, regions or buyer_regions
    if not departments and (found := reference.department_of_postal_code(buyer_postal_code)):
        departments, postal_code = [found], buyer_postal_code
    return {"departments": departments, "regions": regions, "postal_code": postal_code or None}


def web_address(value: str | None) -> str | None:
    """A buyer's hand-typed address as a link: ``www.example.fr`` needs a scheme."""
    text = (value or "").strip().rstrip(".,;")
    if not text or any(ch.isspace() for ch in text):
        return None
    return text if text.startswith(("http://", "https://")) else f"http://{text}"


def email_or_none(value: str | None) -> str | None:
    """A contact address written as free text: one that does not parse is left out."""
    text = (value or "").strip().rstrip(".,;")
    try:
        return normalise_address(text) if text else None
    except InvalidAddress:
        return None


def estimated_value(amount: Any, currency: str | None, notes: list[str]) -> dict[str, str] | None:
    """A record's ``value``; an amount in another currency than euros is left out with a note."""
    if amount in (None, ""):
        return None
    try:
        Decimal(str(amount))
    except InvalidOperation:
        notes.append("estimated value is not a number: left out")
        return None
    if (currency or "EUR") != "EUR":
        notes.append(f"estimated value in {currency}: left out (value bounds are in euros)")
        return None
    return {"amount": str(amount), "currency": "EUR"}
