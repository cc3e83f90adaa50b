"""Reading a tender file of any format: which format it is, and every record checked.

A file is read whole and checked before anything is written: every problem is named with its
line (or record number, or file inside a folder or archive), notices of kinds never announced
are named and left out, and notes say what was changed or flagged without refusing a notice.
No message carries personal data: names and addresses of contacts never appear in one.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mailer.alerts.formats import boamp, eforms, nouma, ted
from mailer.alerts.formats.base import RawNotice
from mailer.alerts.notice_kinds import NoticeKind
from mailer.alerts.tenders import NumberedTender, TenderRecord, Where, changed_elsewhere, changed_notice
from mailer.errors import InvalidInput
from mailer.import_file import first_error, read_text

FORMATS = ("nouma", "ted", "boamp", "eforms")
#: The one line an unknown file gets.
FORMATS_SAID = (
    "nouma (the mailer's JSON Lines), ted (TED notices as JSON Lines), boamp (a BOAMP API v2.1 "
    "response, JSON) or eforms (eForms XML notices: one file, a folder of them or a .zip)"
)
#: Bytes read to recognise a format.
SNIFF_BYTES = 4000


@dataclass(frozen=True)
class SkippedNotice:
    """A good notice the import leaves out, and why (its kind is never announced)."""

    where: Where
    message: str
    kind: NoticeKind | None


@dataclass
class ParsedTenders:
    """Every good record of a file, every problem, every notice left out, every note."""

    records: list[NumberedTender] = field(default_factory=list)
    problems: list[tuple[Where, str]] = field(default_factory=list)
    skipped: list[SkippedNotice] = field(default_factory=list)
    notes: list[tuple[Where, str]] = field(default_factory=list)


def read_tender_file(path: Path, *, format: str | None = None) -> ParsedTenders:
    """Read and check a whole file (nothing is written); ``format`` defaults to what the file holds."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    kind = format or sniff(path)
    if kind not in FORMATS:
        raise InvalidInput(f"{path}: not a tender file the mailer reads; the formats are {FORMATS_SAID}")
    if kind == "eforms":
        return parse_notices(eforms.notices(path))
    if path.is_dir():
        raise InvalidInput(f"{path}: a folder is read as eForms notices only")
    text = read_text(path)
    readers = {"nouma": nouma.notices, "ted": ted.notices, "boamp": boamp.notices}
    return parse_notices(readers[kind](text))


def sniff(path: Path) -> str | None:
    """The format a file (or folder) holds, or None."""
    if path.is_dir() or zipfile.is_zipfile(path):
        return "eforms"
    with path.open("rb") as handle:
        start = handle.read(SNIFF_BYTES)
    if eforms.looks_like(start):
        return "eforms"
    text = start.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if boamp.looks_like(text):
        return "boamp"
    if not text.startswith("{"):
        return None
    return "ted" if ted.looks_like(text.split("\n", 1)[0]) else "nouma"


def parse_notices(notices: Iterable[RawNotice]) -> ParsedTenders:
    """Check every notice a format read; each problem names where it is."""
    parsed = ParsedTenders()
    seen: dict[str, Where] = {}
    #: The latest version of each eForms notice read.
    versions: dict[str, NumberedTender] = {}
    for notice in notices:
        if notice.problem is not None:
            parsed.problems.append((notice.where, notice.problem))
            continue
        if notice.skipped is not None:
            parsed.skipped.append(SkippedNotice(notice.where, notice.skipped, notice.kind))
            continue
        assert notice.fields is not None
        try:
            record = TenderRecord.model_validate(notice.fields)
        except ValidationError as error:
            parsed.problems.append((notice.where, first_error(error)))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            parsed.problems.append((notice.where, f"unexpected shape: {type(error).__name__}"))
            continue
        if record.reference in seen:
            parsed.problems.append(
                (notice.where, f"reference already given at {describe(seen[record.reference])}")
            )
            continue
        if record.notice_id and record.notice_id in versions:
            kept, superseded = _later(versions[record.notice_id], NumberedTender(notice.where, record))
            versions[record.notice_id] = kept
            parsed.skipped.append(
                SkippedNotice(
                    superseded.where,
                    f"version {superseded.record.notice_version} of notice {record.notice_id}: "
                    f"superseded by version {kept.record.notice_version} ({describe(kept.where)})",
                    None,
                )
            )
            continue
        seen[record.reference] = notice.where
        if record.notice_id:
            versions[record.notice_id] = NumberedTender(notice.where, record)
        parsed.notes.extend((notice.where, note) for note in notice.notes)
        if record.text_damaged:
            parsed.notes.append((notice.where, "text still damaged after repair (U+FFFD): flagged"))
        if not record.notice_id:
            parsed.records.append(NumberedTender(notice.where, record))
    parsed.records.extend(versions.values())
    _check_changes(parsed)
    return parsed


def _later(first: NumberedTender, second: NumberedTender) -> tuple[NumberedTender, NumberedTender]:
    """Of two versions of one eForms notice, the later one and the other."""
    if (second.record.notice_version or "") > (first.record.notice_version or ""):
        return second, first
    return first, second


def _check_changes(parsed: ParsedTenders) -> None:
    """A change notice of a notice in the same file must be of the same procedure."""
    procedures = {n.record.notice_id: n.record.procedure_id for n in parsed.records if n.record.notice_id}
    kept = []
    for numbered in parsed.records:
        changed = changed_notice(numbered.record.changes_notice_id)
        if changed and procedures.get(changed) not in (None, numbered.record.procedure_id):
            parsed.problems.append((numbered.where, changed_elsewhere(changed)))
        else:
            kept.append(numbered)
    parsed.records = kept


def describe(where: Where) -> str:
    return f"line {where}" if isinstance(where, int) else where or "the file"


def label(path: Path, where: Where) -> str:
    """Where a message points: ``file:12``, ``folder/notice.xml``, ``archive.zip:notice.xml``."""
    if isinstance(where, int):
        return f"{path}:{where}"
    if not where:
        return str(path)
    return str(path / where) if path.is_dir() else f"{path}:{where}"
