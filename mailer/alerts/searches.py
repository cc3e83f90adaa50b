"""Saved searches in: the JSON Lines format, its checks and the importer.

One saved search a line, updated by ``ref`` (the search's id on NouMa's site)::

    {"ref": "s-1042", "recipient": "marie.dupont@example.com", "name": "Voirie Isère",
     "frequency": "daily", "keywords": "voirie \\"travaux de voirie\\" -parking",
     "cpv": ["45233", "4523*"], "departments": ["38", "73"], "regions": ["84"],
     "min_value": 100000, "max_value": 5000000, "position": 1, "active": true}

- ``recipient``: an address, or ``account`` instead: the recipient's ``external_ref``.
- ``keywords``: the query language of ``mailer/alerts/text.py`` (any of the words or "phrases",
  none of the -excluded ones; whole words in any of their forms: plural, feminine, accents,
  elisions, compounds).
- ``cpv``: codes or prefixes: ``72*`` and ``72000000`` both mean every code under division 72
  (trailing zeros of a CPV code are its hierarchy), ``45233140`` (roadworks) that code and the
  codes under it (``45233141`` road-maintenance works ...).
- ``departments`` / ``regions``: INSEE codes; a tender in any of them matches.
- ``min_value`` / ``max_value``: euros; a tender whose value is not published passes them.
- ``radius_km``: tenders within this distance of the recipient's stored location, only while the
  recipient's geolocation consent is granted (NouMa's policy: "sur demande expresse"). A line may
  carry that location and consent: ``"geolocation": {"lat": 45.19, "lon": 5.72, "consent": true,
  "at": "2026-11-02T10:00:00+01:00", "source": "preference_centre", "wording_version": "geo-1"}``.
  Without the consent the location is never read, and the radius names no tender.
- The criteria combine with AND; a search without any criterion matches every new tender.
- ``position`` orders a recipient's searches: a tender matching several shows under the first.
- ``"active": false`` stops a search. Its high-water mark is kept whatever changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session

from mailer.addresses import normalise_address
from mailer.alerts.models import Frequency, Geolocation, SavedSearch
from mailer.alerts.notice_text import control_character_in
from mailer.alerts.places import normalise_department, places
from mailer.alerts.text import parse_query
from mailer.db import in_chunks, utcnow
from mailer.errors import ImportFailed, InvalidAddress, InvalidInput
from mailer.import_file import first_error, json_lines, read_text
from mailer.models import Recipient
from mailer.recipient_file import NAIVE_TIME_ZONE

#: Searches written per statement.
IMPORT_CHUNK = 500


def cpv_prefix(raw: str) -> str:
    """A CPV criterion as the prefix it stands for: ``72*`` and ``72000000`` -> ``72``."""
    text = str(raw).strip()
    code = text.split("-")[0].rstrip("*")
    if not code.isdigit() or not 2 <= len(code) <= 8 or (text.endswith("*") and "-" in text):
        raise ValueError(f"{raw!r} is not a CPV code or prefix (2 to 8 digits, optional *)")
    if len(code) == 8 and not text.endswith("*"):
        # Trailing zeros of a full code are the levels above it: 45000000 is division 45.
        code = code.rstrip("0")
        code = code.ljust(2, "0") if len(code) < 2 else code
    return code


class GeolocationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    consent: bool
    at: dt.datetime | None = None
    source: str = Field(default="site", max_length=40)
    wording_version: str | None = Field(default=None, max_length=64)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return value.replace(tzinfo=NAIVE_TIME_ZONE) if value and value.tzinfo is None else value


class SearchRecord(BaseModel):
    """One saved search as a file states it, checked."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ref: str = Field(min_length=1, max_length=64)
    recipient: str | None = None
    account: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=120)
    frequency: Frequency = Frequency.DAILY
    keywords: str = ""
    cpv: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    min_value: int | None = Field(default=None, ge=0)
    max_value: int | None = Field(default=None, ge=0)
    radius_km: float | None = Field(default=None, gt=0, le=1000)
    position: int = 0
    active: bool = True
    geolocation: GeolocationRecord | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        # No database stores a NUL: refused with its line, like every other bad value.
        if refused := control_character_in(data):
            raise ValueError(refused)
        return data

    @field_validator("recipient")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_address(value)
        except InvalidAddress as error:
            raise ValueError(str(error)) from None

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: str) -> str:
        try:
            parse_query(value)
        except InvalidInput as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("cpv")
    @classmethod
    def _cpv(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(cpv_prefix(v) for v in values))

    @field_validator("departments")
    @classmethod
    def _departments(cls, values: list[str]) -> list[str]:
        codes = [d for v in values for d in places().department_codes(v) or [normalise_department(v)]]
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

    @model_validator(mode="after")
    def _whole(self) -> SearchRecord:
        if (self.recipient is None) == (self.account is None):
            raise ValueError("give exactly one of recipient (an address) or account (an external_ref)")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError("min_value is above max_value")
        return self

    def columns(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frequency": self.frequency,
            "keywords": self.keywords,
            "cpv_prefixes": self.cpv,
            "departments": self.departments,
            "regions": self.regions,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "radius_km": self.radius_km,
            "position": self.position,
            "active": self.active,
        }


@dataclass(frozen=True)
class NumberedSearch:
    line: int
    record: SearchRecord


@dataclass
class ParsedSearches:
    records: list[NumberedSearch]
    problems: list[tuple[int, str]]


def read_search_file(path: Path) -> ParsedSearches:
    """Read and check a JSON Lines file of saved searches; nothing is written."""
    return parse_search_rows(list(json_lines(read_text(path))))


def parse_search_rows(rows: Sequence[tuple[int, dict[str, Any] | str]]) -> ParsedSearches:
    parsed = ParsedSearches(records=[], problems=[])
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):
            parsed.problems.append((line, row))
            continue
        try:
            record = SearchRecord.model_validate(row)
        except ValidationError as error:
            parsed.problems.append((line, first_error(error)))
            continue
        if record.ref in seen:
            parsed.problems.append((line, f"ref already given on line {seen[record.ref]}"))
            continue
        seen[record.ref] = line
        parsed.records.append(NumberedSearch(line, record))
    return parsed


@dataclass
class SearchImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    geolocations: int = 0


def import_searches(session: Session, records: Sequence[NumberedSearch]) -> SearchImportResult:
    """Upsert saved searches by ref in the caller's transaction; ImportFailed names every bad line."""
    recipients = _resolve_recipients(session, records)
    owners = {
        ref: rid
        for chunk in in_chunks([n.record.ref for n in records], IMPORT_CHUNK)
        for ref, rid in session.execute(
            sa.select(SavedSearch.external_ref, SavedSearch.recipient_id).where(
                SavedSearch.external_ref.in_(chunk)
            )
        )
    }
    problems = [
        (n.line, f"ref {n.record.ref!r} belongs to another recipient")
        for n in records
        if n.record.ref in owners and owners[n.record.ref] != recipients[n.line]
    ]
    if problems:
        raise ImportFailed(problems)
    result = SearchImportResult()
    for chunk in in_chunks(list(records), IMPORT_CHUNK):
        existing = {
            s.external_ref: s
            for s in session.scalars(
                sa.select(SavedSearch).where(SavedSearch.external_ref.in_([n.record.ref for n in chunk]))
            )
        }
        new_rows = []
        for n in chunk:
            columns = n.record.columns()
            current = existing.get(n.record.ref)
            if current is None:
                now = utcnow()
                new_rows.append(
                    {
                        **columns,
                        "external_ref": n.record.ref,
                        "recipient_id": recipients[n.line],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                continue
            if all(getattr(current, name) == value for name, value in columns.items()):
                result.unchanged += 1
                continue
            for name, value in columns.items():
                setattr(current, name, value)
            result.updated += 1
        if new_rows:
            session.execute(sa.insert(SavedSearch), new_rows)
            result.created += len(new_rows)
        session.flush()
    for n in records:
        if n.record.geolocation is not None:
            set_geolocation(session, recipients[n.line], n.record.geolocation)
            result.geolocations += 1
    return result


def _resolve_recipients(session: Session, records: Sequence[NumberedSearch]) -> dict[int, int]:
    """Recipient id of each line; ImportFailed for lines naming no known recipient."""
    addresses = {n.record.recipient for n in records if n.record.recipient}
    accounts = {n.record.account for n in records if n.record.account}
    by_address: dict[str, int] = {}
    by_account: dict[str, int] = {}
    for chunk in in_chunks(sorted(addresses), IMPORT_CHUNK):
        by_address.update(
            (str(a), rid)
            for a, rid in session.execute(
                sa.select(Recipient.address, Recipient.id).where(Recipient.address.in_(chunk))
            )
        )
    for chunk in in_chunks(sorted(accounts), IMPORT_CHUNK):
        by_account.update(
            (str(a), rid)
            for a, rid in session.execute(
                sa.select(Recipient.external_ref, Recipient.id).where(Recipient.external_ref.in_(chunk))
            )
        )
    found: dict[int, int] = {}
    problems: list[tuple[int, str]] = []
    for n in records:
        if n.record.recipient is not None:
            rid = by_address.get(n.record.recipient)
            missing = f"no recipient with address {n.record.recipient!r}"
        else:
            rid = by_account.get(str(n.record.account))
            missing = f"no recipient with account {n.record.account!r}"
        if rid is None:
            problems.append((n.line, missing))
        else:
            found[n.line] = rid
    if problems:
        raise ImportFailed(problems)
    return found


def set_geolocation(session: Session, recipient_id: int, given: GeolocationRecord) -> None:
    """Store a recipient's location and the state of their consent to its use."""
    row = session.get(Geolocation, recipient_id)
    at = given.at or utcnow()
    if row is None:
        session.add(
            Geolocation(
                recipient_id=recipient_id,
                latitude=given.lat,
                longitude=given.lon,
                consent_granted=given.consent,
                consent_at=at,
                consent_source=given.source,
                wording_version=given.wording_version,
            )
        )
    else:
        row.latitude, row.longitude = given.lat, given.lon
        row.consent_granted, row.consent_at = given.consent, at
        row.consent_source, row.wording_version = given.source, given.wording_version
    session.flush()
