"""Tenders in: the record every format becomes, and the importer that stores it.

The record's fields are the mailer's own format (``formats/nouma.py`` describes each); the
readers of the other formats (``formats/``) build the same fields. Text is repaired and checked
as ``notice_text.py`` says, CPV codes as ``cpv.py`` says, places as ``places.py`` says.

Re-importing a reference updates that tender and never duplicates it (nor does the published
version of an eForms notice imported before publication: same ``notice_id``; an earlier version
never overwrites a later one); a tender keeps its id, so an updated tender is not announced
again as new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from mailer.addresses import normalise_address
from mailer.alerts.cpv import cpv_code
from mailer.alerts.models import Tender
from mailer.alerts.notice_kinds import NoticeKind
from mailer.alerts.notice_text import control_character_in, is_damaged, paragraphs, repaired, single_line
from mailer.alerts.places import LEGACY_CORSICA, normalise_department, places
from mailer.db import in_chunks, utcnow
from mailer.errors import ImportFailed, InvalidAddress
from mailer.suppression.contacts import contact_keys
from mailer.suppression.models import TenderContactKey

#: Where tender times without an offset are: French public buyers publish in Paris time.
TENDER_TIME_ZONE = ZoneInfo("Europe/Paris")
#: Tenders written per statement.
IMPORT_CHUNK = 500
#: PostgreSQL advisory lock held by every tender import transaction. Imports then commit their
#: new ids in increasing order, so a digest run that sees tender N sees every tender below N:
#: a search's high-water mark can never step over a tender committed late.
TENDER_IMPORT_LOCK = 7_311_042

#: Where a record was read: a line (or record) number, or a file inside a folder or an archive.
Where = int | str


def _line(value: str | None) -> str | None:
    """A single-line text field, repaired."""
    return single_line(repaired(value)).strip() or None if value else None


def _cpv_list(values: list[str]) -> list[str]:
    return list(dict.fromkeys(cpv_code(raw) for raw in values))


class Buyer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=1000)
    town: str | None = Field(default=None, max_length=120)

    _single_line = field_validator("name", "town")(_line)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=500)
    email: str | None = None
    phone: str | None = Field(default=None, max_length=40)

    _single_line = field_validator("name", "phone")(_line)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalise_address(value)
        except InvalidAddress:
            # Not the address itself: a contact's address is personal data.
            raise ValueError("not an e-mail address") from None


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Money(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, lt=Decimal("1e14"))
    currency: str = "EUR"

    @field_validator("currency")
    @classmethod
    def _euros(cls, value: str) -> str:
        # Searches bound values in euros: another currency would be compared as if it were euros.
        if value != "EUR":
            raise ValueError(f"{value!r}: only euros are accepted (value bounds are in euros)")
        return value


class Lot(BaseModel):
    """One lot of a notice (eForms ``LOT-0001``, or a part of a prior information notice)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200)
    title: str | None = Field(default=None, max_length=1000)
    cpv: list[str] = Field(default_factory=list)

    _single_line = field_validator("id", "title")(_line)
    _codes = field_validator("cpv")(_cpv_list)


class TenderRecord(BaseModel):
    """One tender as the format above states it, checked."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reference: str = Field(min_length=1, max_length=120)
    title: str = Field(min_length=1)
    description: str | None = None
    buyer: Buyer | None = None
    contact: Contact | None = None
    cpv: list[str] = Field(default_factory=list)
    departments: list[str] | None = None
    regions: list[str] = Field(default_factory=list)
    nuts: list[str] = Field(default_factory=list)
    postal_code: str | None = Field(default=None, max_length=16)
    location: Location | None = None
    published_on: dt.date | None = None
    deadline: dt.date | dt.datetime | None = None
    value: Money | None = None
    url: str | None = Field(default=None, max_length=1000)
    notice_kind: NoticeKind = NoticeKind.COMPETITION
    notice_type: str | None = Field(default=None, max_length=40)
    notice_id: str | None = Field(default=None, max_length=64)
    notice_version: str | None = Field(default=None, max_length=8)
    procedure_id: str | None = Field(default=None, max_length=64)
    changes_notice_id: str | None = Field(default=None, max_length=80)
    lots: list[Lot] = Field(default_factory=list)
    descriptors: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        if refused := control_character_in(data):
            raise ValueError(refused)
        return data

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        if any(ch in value for ch in "\n\r\t"):
            raise ValueError("must be on one line")
        return value

    _single_line = field_validator("title")(_line)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return paragraphs(repaired(value)) or None if value else None

    @field_validator("descriptors")
    @classmethod
    def _descriptors(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(text for v in values if (text := _line(v))))

    _codes = field_validator("cpv")(_cpv_list)

    @field_validator("departments")
    @classmethod
    def _departments(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        codes = [normalise_department(v) for v in values]
        for code in codes:
            if code not in places().departments and code != LEGACY_CORSICA:
                raise ValueError(f"{code!r} is not a French department code")
        return list(dict.fromkeys(codes))

    @field_validator("regions")
    @classmethod
    def _regions(cls, values: list[str]) -> list[str]:
        codes = [str(v).strip().zfill(2) for v in values]
        for code in codes:
            if code not in places().regions:
                raise ValueError(f"{code!r} is not a French region code")
        return list(dict.fromkeys(codes))

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return {"amount": value}
        return value

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value.strip()) == 10:
            return dt.date.fromisoformat(value.strip())
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and (not value.startswith(("http://", "https://")) or any(ch.isspace() for ch in value)):
            raise ValueError("must be a web address (http:// or https://, no spaces)")
        return value or None

    @model_validator(mode="after")
    def _places(self) -> TenderRecord:
        reference = places()
        if self.departments is None:
            departments, regions = reference.from_nuts(self.nuts)
            if not departments and (found := reference.department_of_postal_code(self.postal_code)):
                departments = [found]
            self.departments = departments
            self.regions = list(dict.fromkeys([*self.regions, *regions]))
        self.departments = list(
            dict.fromkeys(
                d for code in self.departments for d in reference.department_codes(code, self.postal_code)
            )
        )
        self.regions = list(dict.fromkeys([*self.regions, *reference.regions_of(self.departments)]))
        return self

    @property
    def text_damaged(self) -> bool:
        """Whether a text still holds a character lost before the notice reached us."""
        texts = [self.title, self.description, *self.descriptors, *(lot.title for lot in self.lots)]
        if self.buyer:
            texts += [self.buyer.name, self.buyer.town]
        if self.contact:
            texts.append(self.contact.name)
        return any(is_damaged(text) for text in texts)

    def deadline_parts(self) -> tuple[dt.date | None, dt.time | None]:
        """The deadline as a Paris date and time of day (the time may be unknown)."""
        if self.deadline is None:
            return None, None
        if isinstance(self.deadline, dt.datetime):
            local = (
                self.deadline.astimezone(TENDER_TIME_ZONE)
                if self.deadline.tzinfo
                else self.deadline.replace(tzinfo=TENDER_TIME_ZONE)
            )
            return local.date(), local.time().replace(second=0, microsecond=0, tzinfo=None)
        return self.deadline, None

    def row(self) -> dict[str, Any]:
        """The ``tenders`` columns this record sets."""
        deadline_on, deadline_time = self.deadline_parts()
        return {
            "reference": self.reference,
            "source": self.reference.split(":", 1)[0] if ":" in self.reference else "site",
            "title": self.title,
            "description": self.description,
            "buyer_name": self.buyer.name if self.buyer else None,
            "buyer_town": self.buyer.town if self.buyer else None,
            "contact_name": self.contact.name if self.contact else None,
            "contact_email": self.contact.email if self.contact else None,
            "contact_phone": self.contact.phone if self.contact else None,
            "cpv_codes": self.cpv,
            "departments": self.departments or [],
            "regions": self.regions,
            "latitude": self.location.lat if self.location else None,
            "longitude": self.location.lon if self.location else None,
            "published_on": self.published_on,
            "deadline_on": deadline_on,
            "deadline_time": deadline_time,
            "value_cents": int(self.value.amount * 100) if self.value else None,
            "value_currency": self.value.currency if self.value else None,
            "url": self.url,
            "notice_kind": self.notice_kind.value,
            "notice_type": self.notice_type,
            "notice_id": self.notice_id,
            "notice_version": self.notice_version,
            "procedure_id": self.procedure_id,
            "changes_notice_id": self.changes_notice_id,
            "lots": [lot.model_dump() for lot in self.lots],
            "descriptors": self.descriptors,
            "text_damaged": self.text_damaged,
        }


@dataclass(frozen=True)
class NumberedTender:
    """A record and where its file has it."""

    where: Where
    record: TenderRecord


@dataclass
class TenderImportResult:
    """What an import wrote."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


def import_tenders(
    session: Session,
    records: Sequence[NumberedTender | TenderRecord],
    *,
    progress: Callable[[int], None] | None = None,
) -> TenderImportResult:
    """Upsert tenders by reference (or eForms notice id), in the caller's transaction.

    Their contact keys follow. A change notice of a stored notice of another procedure is
    refused (``ImportFailed``) before anything is written.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(TENDER_IMPORT_LOCK)))
    numbered = [r if isinstance(r, NumberedTender) else NumberedTender(r.reference, r) for r in records]
    _check_changes(session, numbered)
    result = TenderImportResult()
    for chunk in in_chunks([n.record for n in numbered], IMPORT_CHUNK):
        rows = {r.reference: r.row() for r in chunk}
        existing = _existing(session, chunk)
        new = [row for reference, row in rows.items() if reference not in existing]
        ids: dict[str, int] = {}
        if new:
            now = utcnow()
            for row in new:
                row["received_at"] = row["updated_at"] = now
            inserted = session.execute(sa.insert(Tender).returning(Tender.id, Tender.reference), new)
            ids.update({str(reference): int(tid) for tid, reference in inserted})
            result.created += len(new)
        changed: list[int] = []
        for reference, tender in existing.items():
            row = rows[reference]
            if _older(row["notice_version"], tender.notice_version) or all(
                getattr(tender, name) == value for name, value in row.items()
            ):
                result.unchanged += 1
                continue
            for name, value in row.items():
                setattr(tender, name, value)
            changed.append(tender.id)
            ids[reference] = tender.id
            result.updated += 1
        session.flush()
        if changed:
            session.execute(sa.delete(TenderContactKey).where(TenderContactKey.tender_id.in_(changed)))
        keys = [
            {"tender_id": ids[reference], "key": key}
            for reference, row in rows.items()
            if reference in ids
            for key in contact_keys(row["contact_name"], row["contact_email"])
        ]
        if keys:
            session.execute(sa.insert(TenderContactKey), keys)
        if progress is not None:
            progress(len(chunk))
    return result


def _older(version: str | None, stored: str | None) -> bool:
    """Whether a record is an earlier version of the eForms notice already stored."""
    return bool(version and stored and version < stored)


def _existing(session: Session, chunk: Sequence[TenderRecord]) -> dict[str, Tender]:
    """Stored tenders of these records, by the record's reference: same reference, or same
    eForms notice (its published version has a TED reference, its draft had the notice id)."""
    references = [r.reference for r in chunk]
    found = {
        t.reference: t for t in session.scalars(sa.select(Tender).where(Tender.reference.in_(references)))
    }
    by_notice = {r.notice_id: r.reference for r in chunk if r.notice_id and r.reference not in found}
    if by_notice:
        for tender in session.scalars(sa.select(Tender).where(Tender.notice_id.in_(list(by_notice)))):
            assert tender.notice_id is not None
            found.setdefault(by_notice[tender.notice_id], tender)
    return found


def changed_notice(changes_notice_id: str | None) -> str | None:
    """The notice id a change notice names (BT-758 ``<notice id>-<version>``), if it names one so."""
    notice_id, _, version = (changes_notice_id or "").rpartition("-")
    return notice_id if len(version) == 2 and version.isdigit() and len(notice_id) == 36 else None


def _check_changes(session: Session, numbered: Sequence[NumberedTender]) -> None:
    changes = {notice_id: n for n in numbered if (notice_id := changed_notice(n.record.changes_notice_id))}
    if not changes:
        return
    stored = session.execute(
        sa.select(Tender.notice_id, Tender.procedure_id).where(Tender.notice_id.in_(list(changes)))
    )
    problems: list[tuple[Where, str]] = [
        (changes[notice_id].where, changed_elsewhere(notice_id))
        for notice_id, procedure_id in stored
        if notice_id and procedure_id and changes[notice_id].record.procedure_id not in (None, procedure_id)
    ]
    if problems:
        raise ImportFailed(problems)


def changed_elsewhere(notice_id: str) -> str:
    """Why a change notice is refused: it changes a notice of another procedure."""
    return f"changes notice {notice_id} of another procedure (BT-04 differs): not a change of it"
