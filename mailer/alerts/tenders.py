"""Tenders in: the JSON Lines format, readers for TED and BOAMP exports, and the importer.

The mailer's own format, one tender a line (only ``reference`` and ``title`` are required)::

    {"reference": "nouma:2026-118342",
     "title": "Travaux de voirie et réseaux divers",
     "description": "Réfection de la chaussée de la RD 1075 ...",
     "buyer": {"name": "Département de l'Isère", "town": "Grenoble"},
     "contact": {"name": "Marie Houssay", "email": "marchés@example.invalid", "phone": "+33 4 76 00 00 00"},
     "cpv": ["45233140", "45233141-9"],
     "departments": ["38"], "regions": ["84"],
     "nuts": ["FRK24"], "postal_code": "38000",
     "location": {"lat": 45.19, "lon": 5.72},
     "published_on": "2026-11-25",
     "deadline": "2026-12-15T12:00",
     "value": {"amount": "1250000", "currency": "EUR"},
     "url": "https://www.nouma.fr/ao/118342"}

- ``cpv``: 8-digit CPV 2008 codes; a check digit (``-9``) is dropped. The first is the main one.
- ``departments`` (INSEE codes) and ``regions`` (INSEE region codes) name where the work is; when
  ``departments`` is absent they are derived from ``nuts`` (NUTS 2016: level 3 is a department,
  levels 1 and 2 name regions; ``FR`` alone names no place), then from ``postal_code``. Regions
  always include those of the departments.
- ``deadline``: a date, or a date and time; without an offset it is read in Europe/Paris.
- ``value``: a number (euros) or ``{"amount", "currency"}``; the estimated total value.
- ``contact``: the buyer's contact person (personal data). Never shown once they opposed
  (``mailer/suppression/contacts.py``).

Re-importing a reference updates that tender and never duplicates it; a tender keeps its id, so
an updated tender is not announced again. ``--format ted`` reads the normalised TED notices
(``doc_id`` per line); ``--format boamp`` a BOAMP API v2.1 ``records`` response.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session

from mailer.addresses import normalise_address
from mailer.alerts.models import Tender
from mailer.alerts.places import normalise_department, places
from mailer.db import in_chunks, utcnow
from mailer.errors import InvalidAddress, InvalidInput
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
FORMATS = ("nouma", "ted", "boamp")


class Buyer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=1000)
    town: str | None = Field(default=None, max_length=120)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=500)
    email: str | None = None
    phone: str | None = Field(default=None, max_length=40)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalise_address(value)
        except InvalidAddress as error:
            raise ValueError(str(error)) from None


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Money(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, lt=Decimal("1e14"))
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


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
    postal_code: str | None = None
    location: Location | None = None
    published_on: dt.date | None = None
    deadline: dt.date | dt.datetime | None = None
    value: Money | None = None
    url: str | None = Field(default=None, max_length=1000)

    @field_validator("cpv")
    @classmethod
    def _cpv(cls, values: list[str]) -> list[str]:
        codes = []
        for raw in values:
            code = str(raw).strip().split("-")[0]
            if len(code) != 8 or not code.isdigit():
                raise ValueError(f"{raw!r} is not a CPV code (8 digits)")
            codes.append(code)
        return list(dict.fromkeys(codes))

    @field_validator("departments")
    @classmethod
    def _departments(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        codes = [normalise_department(v) for v in values]
        for code in codes:
            if code not in places().departments:
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
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
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
        self.regions = list(dict.fromkeys([*self.regions, *reference.regions_of(self.departments)]))
        return self

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
        }


@dataclass(frozen=True)
class NumberedTender:
    line: int
    record: TenderRecord


@dataclass
class ParsedTenders:
    """Every good record of a file, and every problem as (line, message)."""

    records: list[NumberedTender]
    problems: list[tuple[int, str]]


def read_tender_file(path: Path, *, format: str | None = None) -> ParsedTenders:
    """Read and check a whole file (nothing is written); ``format`` defaults to what the file holds."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    kind = format or _sniff(text)
    if kind not in FORMATS:
        raise InvalidInput(f"{path}: unknown format {kind!r}; expected one of {', '.join(FORMATS)}")
    rows = _boamp_rows(text) if kind == "boamp" else _jsonl_rows(text)
    convert = from_ted if kind == "ted" else from_boamp if kind == "boamp" else _as_is
    return parse_rows(rows, convert)


def parse_rows(
    rows: Iterator[tuple[int, dict[str, Any] | str]], convert: Callable[[dict[str, Any]], dict[str, Any]]
) -> ParsedTenders:
    """Check numbered rows; each problem names its line (or record number)."""
    parsed = ParsedTenders(records=[], problems=[])
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):
            parsed.problems.append((line, row))
            continue
        try:
            record = TenderRecord.model_validate(convert(row))
        except ValidationError as error:
            parsed.problems.append((line, _first_error(error)))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            parsed.problems.append((line, f"unexpected shape: {error!r}"))
            continue
        if record.reference in seen:
            parsed.problems.append((line, f"reference already given on line {seen[record.reference]}"))
            continue
        seen[record.reference] = line
        parsed.records.append(NumberedTender(line, record))
    return parsed


def _as_is(row: dict[str, Any]) -> dict[str, Any]:
    return row


def _sniff(text: str) -> str:
    start = text.lstrip()[:4000]
    if start.startswith("{") and '"results"' in start and '"idweb"' in start:
        return "boamp"
    first = start.split("\n", 1)[0]
    return "ted" if '"doc_id"' in first and '"no_doc_ojs"' in first else "nouma"


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}" if where else message


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, f"not valid JSON ({error.msg} at column {error.colno})"
            continue
        yield number, value if isinstance(value, dict) else "expected a JSON object"


def _boamp_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        yield error.lineno, f"not valid JSON ({error.msg} at column {error.colno})"
        return
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        yield 1, "expected a BOAMP API response with a results list"
        return
    for number, record in enumerate(results, start=1):
        yield number, record if isinstance(record, dict) else "expected a JSON object"


def _amount(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("amount") in (None, ""):
        return None
    try:
        Decimal(str(value["amount"]))
    except InvalidOperation:
        return None
    return {"amount": str(value["amount"]), "currency": value.get("currency") or "EUR"}


def from_ted(notice: dict[str, Any]) -> dict[str, Any]:
    """A normalised TED notice (``doc_id`` ...) in the mailer's format.

    Where the work is: the place-of-performance NUTS codes (notice and lots) first, then the
    buyer's NUTS code, then the buyer's postal code. TED's contact e-mails are free text: one
    that does not parse is left out rather than refusing the notice.
    """
    buyer = notice.get("buyer") or {}
    reference = places()
    performance = list(notice.get("performance_nuts") or [])
    for lot in notice.get("lots") or []:
        performance.extend(lot.get("nuts") or [])
    departments, regions = reference.from_nuts(performance)
    if not departments:
        buyer_departments, buyer_regions = reference.from_nuts(buyer.get("nuts") or [])
        departments = buyer_departments
        regions = regions or buyer_regions
    if not departments and (found := reference.department_of_postal_code(buyer.get("postal_code"))):
        departments = [found]
    cpv = [notice.get("cpv_main") or ""] + [c.get("code") or "" for c in notice.get("original_cpv") or []]
    for lot in notice.get("lots") or []:
        cpv.extend(lot.get("cpv_additional") or [])
    email = buyer.get("e_mail")
    try:
        email = normalise_address(email) if email else None
    except InvalidAddress:
        email = None
    deadline = notice.get("deadline_date")
    if deadline and notice.get("deadline_time"):
        deadline = f"{deadline}T{notice['deadline_time']}"
    published = str(notice.get("date_pub") or "")
    contact = {"name": buyer.get("contact_point"), "email": email, "phone": buyer.get("phone")}
    return {
        "reference": f"ted:{notice['doc_id']}",
        "title": notice.get("title") or notice.get("title_ml_fr") or f"TED {notice['doc_id']}",
        "description": notice.get("short_descr"),
        "buyer": {"name": buyer.get("officialname"), "town": buyer.get("town")} if buyer else None,
        "contact": contact if any(contact.values()) else None,
        "cpv": [c for c in dict.fromkeys(cpv) if c],
        "departments": departments,
        "regions": regions,
        "published_on": f"{published[:4]}-{published[4:6]}-{published[6:8]}" if len(published) == 8 else None,
        "deadline": deadline,
        "value": _amount(notice.get("value_estimated_total")) or _amount(notice.get("value_total")),
        "url": _web_address(notice.get("url_document")) or notice.get("ted_html_fr"),
    }


def _web_address(value: str | None) -> str | None:
    # Buyers type their addresses by hand ("www.example.fr"): the link needs a scheme.
    if not value:
        return None
    return value if value.startswith(("http://", "https://")) else f"http://{value.strip()}"


def from_boamp(record: dict[str, Any]) -> dict[str, Any]:
    """A BOAMP API v2.1 record in the mailer's format (BOAMP descriptors are not CPV codes)."""
    deadline = record.get("datelimitereponse")
    return {
        "reference": f"boamp:{record['idweb']}",
        "title": record.get("objet") or f"BOAMP {record['idweb']}",
        "buyer": {"name": (record.get("nomacheteur") or "").rstrip(". ") or None},
        "departments": [d for d in record.get("code_departement") or [] if d],
        "published_on": record.get("dateparution"),
        "deadline": deadline[:10]
        if isinstance(deadline, str) and deadline[10:19] == "T00:00:00"
        else deadline,
        "url": record.get("url_avis"),
    }


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
    """Upsert tenders by reference, in the caller's transaction; their contact keys follow."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(TENDER_IMPORT_LOCK)))
    result = TenderImportResult()
    plain = [r.record if isinstance(r, NumberedTender) else r for r in records]
    for chunk in in_chunks(plain, IMPORT_CHUNK):
        rows = {r.reference: r.row() for r in chunk}
        existing = {
            t.reference: t for t in session.scalars(sa.select(Tender).where(Tender.reference.in_(list(rows))))
        }
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
            if all(getattr(tender, name) == value for name, value in row.items()):
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
