"""Recipient import files, CSV or JSON Lines, read into checked records with their line numbers.

JSON Lines, one recipient a line::

    {"address": "marie@example.com", "name": "Marie", "locale": "fr",
     "consents": {"tender_alerts": {"granted": true, "at": "2026-03-01T10:00:00+01:00",
                                     "source": "signup_form", "ip": "192.0.2.10",
                                     "user_agent": "Mozilla/5.0", "wording_version": "cgu-2026-01"}}}

CSV, one recipient a row, the consents flattened (every column but ``address`` optional)::

    address,name,locale,time_zone,external_ref,tender_alerts,tender_alerts_at,tender_alerts_source,...

where ``<purpose>`` is ``granted``, ``withdrawn`` or empty, and ``<purpose>_<field>`` holds the
proof fields: ``at``, ``source``, ``ip``, ``user_agent``, ``wording_version``,
``partner_list_version``. A time without an offset is read in Europe/Paris.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mailer.addresses import normalise_address
from mailer.errors import InvalidAddress, InvalidInput
from mailer.import_file import first_error, json_lines, read_text
from mailer.models import ConsentSource
from mailer.purposes import CONSENT_KEYS

#: Proof fields a consent may carry, as they are named in files.
PROOF_FIELDS = ("at", "source", "ip", "user_agent", "wording_version", "partner_list_version")
RECIPIENT_FIELDS = ("address", "name", "locale", "time_zone", "external_ref")
CSV_COLUMNS = frozenset(
    RECIPIENT_FIELDS
    + CONSENT_KEYS
    + tuple(f"{purpose}_{field}" for purpose in CONSENT_KEYS for field in PROOF_FIELDS)
)

#: Longest value of each text field: the size of its column (a longer one is refused with its line).
MAX_LENGTHS = {
    "name": 200,
    "external_ref": 64,
    "time_zone": 64,
    "ip": 45,
    "user_agent": 500,
    "wording_version": 64,
    "partner_list_version": 64,
}

#: Zone of a consent time written without an offset: NouMa's users and site are in France.
NAIVE_TIME_ZONE = ZoneInfo("Europe/Paris")

_TRUE = {"granted", "true", "yes", "oui", "1", "y"}
_FALSE = {"withdrawn", "false", "no", "non", "0", "n"}


def checked_text(value: Any, field: str) -> Any:
    """A text field as it may be stored: no control or unpaired surrogate character, within its
    column's length. The message names the field, never the value (it may be personal)."""
    if not isinstance(value, str):
        return value
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("contains a line break, a NUL or another control or invalid character")
    limit = MAX_LENGTHS.get(field)
    if limit is not None and len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    return value


class ConsentRecord(BaseModel):
    """One purpose's consent as a file states it."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("ip", "user_agent", "wording_version", "partner_list_version", mode="after")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        return checked_text(value, info.field_name)

    granted: bool
    at: dt.datetime | None = None
    source: ConsentSource = ConsentSource.IMPORT
    ip: str | None = None
    user_agent: str | None = None
    wording_version: str | None = None
    partner_list_version: str | None = None

    @field_validator("granted", mode="before")
    @classmethod
    def _granted(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError("expected granted or withdrawn")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=NAIVE_TIME_ZONE)
        if value is not None and value > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise ValueError("is in the future")
        return value


class RecipientRecord(BaseModel):
    """One recipient as a file states it; the address is normalised."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address: str
    name: str | None = None
    locale: Literal["fr", "en"] | None = None
    time_zone: str | None = None
    external_ref: str | None = None
    consents: dict[Literal["tender_alerts", "nouma_offers", "partner_offers", "tracking"], ConsentRecord] = {}

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_address(value)
        except InvalidAddress as error:
            raise ValueError(str(error)) from None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        checked_text(value, "time_zone")
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value or None

    @field_validator("name", "external_ref")
    @classmethod
    def _blank_is_none(cls, value: str | None, info: Any) -> str | None:
        # A name ends up in a To: header: a line break or other control character there would
        # break the message (or forge a header).
        return checked_text(value, info.field_name) or None


@dataclass(frozen=True)
class NumberedRecord:
    line: int
    record: RecipientRecord


@dataclass
class ParsedFile:
    """Every good record of a file, and every problem as (line, message)."""

    records: list[NumberedRecord]
    problems: list[tuple[int, str]]


def read_recipient_file(path: Path, *, format: str | None = None) -> ParsedFile:
    """Read and check a whole file; nothing is written anywhere."""
    kind = format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if kind not in ("csv", "jsonl"):
        raise InvalidInput(f"{path}: unknown format {kind!r}; expected csv or jsonl")
    raw = list(_csv_rows(path) if kind == "csv" else json_lines(read_text(path)))
    parsed = ParsedFile(records=[], problems=[])
    first_line_of: dict[str, int] = {}
    ref_line_of: dict[str, int] = {}
    for line, row in raw:
        if isinstance(row, str):
            parsed.problems.append((line, row))
            continue
        try:
            record = RecipientRecord.model_validate(row)
        except ValidationError as error:
            parsed.problems.append((line, first_error(error)))
            continue
        if record.address in first_line_of:
            parsed.problems.append((line, f"address already given on line {first_line_of[record.address]}"))
            continue
        if record.external_ref and record.external_ref in ref_line_of:
            parsed.problems.append(
                (line, f"external_ref already given on line {ref_line_of[record.external_ref]}")
            )
            continue
        first_line_of[record.address] = line
        if record.external_ref:
            ref_line_of[record.external_ref] = line
        parsed.records.append(NumberedRecord(line, record))
    return parsed


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if "address" not in header:
            yield 1, "header: no address column"
            return
        if unknown:
            yield 1, f"header: unknown column {unknown[0]!r}"
            return
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, "more values than header columns"
                continue
            yield line, _unflatten(row)


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {k: (row.get(k) or None) for k in RECIPIENT_FIELDS if k in row}
    consents: dict[str, Any] = {}
    for purpose in CONSENT_KEYS:
        state = (row.get(purpose) or "").strip()
        proof = {f: row[f"{purpose}_{f}"] for f in PROOF_FIELDS if row.get(f"{purpose}_{f}")}
        if state:
            consents[purpose] = {"granted": state, **proof}
        elif proof:
            consents[purpose] = {"granted": None, **proof}  # reported: proof without a state
    record["consents"] = consents
    if record.get("address") is None:
        record["address"] = ""
    return record
