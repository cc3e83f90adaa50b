"""BOAMP notices: a response of the DILA BOAMP open-data API v2.1 (``records``, ``results`` list).

Each record becomes a tender ``boamp:<idweb>`` from its fields ``objet``, ``nomacheteur``,
``code_departement``, ``dateparution``, ``datelimitereponse`` and ``url_avis`` (BOAMP
descriptors are not CPV codes).

What the notice is: ``nature`` (``APPEL_OFFRE`` a call for competition, ``ATTRIBUTION`` a
result ...) and ``etat`` (``RECTIFICATIF`` a change, ``ANNULATION`` a cancellation). A
department code that names no French department is left out of that record with a note, and
the record is kept: one odd code does not stop a whole file.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from mailer.alerts.formats.base import RawNotice
from mailer.alerts.notice_kinds import STORED_KINDS, NoticeKind, left_out
from mailer.alerts.places import LEGACY_CORSICA, normalise_department, places

#: ``nature`` (accents and separators folded) and what it is.
NATURE_KINDS = {
    "APPEL_OFFRE": NoticeKind.COMPETITION,
    "AVIS_DE_MARCHE": NoticeKind.COMPETITION,
    "DELEGATION": NoticeKind.COMPETITION,
    "CONCESSION": NoticeKind.COMPETITION,
    "PRE_INFORMATION": NoticeKind.PLANNING,
    "PREINFORMATION": NoticeKind.PLANNING,
    "PERIODIQUE": NoticeKind.PLANNING,
    "RECTIFICATIF": NoticeKind.CHANGE,
    "ANNULATION": NoticeKind.CANCELLATION,
    "ATTRIBUTION": NoticeKind.RESULT,
    "RESULTAT": NoticeKind.RESULT,
    "RESULTAT_DE_MARCHE": NoticeKind.RESULT,
    "MODIFICATION": NoticeKind.MODIFICATION,
    "INTENTION_CONCLURE": NoticeKind.DIRECT_AWARD,
    "INTENTION_DE_CONCLURE": NoticeKind.DIRECT_AWARD,
}
#: ``etat``: a later state of a call for competition or a prior information notice.
STATE_KINDS = {"RECTIFICATIF": NoticeKind.CHANGE, "ANNULATION": NoticeKind.CANCELLATION}


def looks_like(start: str) -> bool:
    return start.startswith("{") and '"results"' in start and '"idweb"' in start


def notices(text: str) -> Iterator[RawNotice]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        yield RawNotice(error.lineno, problem=f"not valid JSON ({error.msg} at column {error.colno})")
        return
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        yield RawNotice(1, problem="expected a BOAMP API response with a results list")
        return
    for number, record in enumerate(results, start=1):
        if not isinstance(record, dict) or not record.get("idweb"):
            yield RawNotice(number, problem="expected a BOAMP record with an idweb")
            continue
        yield notice(number, record)


def _folded(value: Any) -> str:
    text = unicodedata.normalize("NFKD", str(value or "")).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Z]+", "_", text.upper()).strip("_")


def kind_of(record: dict[str, Any]) -> tuple[NoticeKind | None, str]:
    """What a record is, and how to name its type (``boamp:APPEL_OFFRE/RECTIFICATIF``)."""
    nature, state = _folded(record.get("nature")), _folded(record.get("etat"))
    kind = NATURE_KINDS.get(nature)
    if kind in (NoticeKind.COMPETITION, NoticeKind.PLANNING) and state in STATE_KINDS:
        kind = STATE_KINDS[state]
    label = f"boamp:{nature}" + (f"/{state}" if state and state != "INITIAL" else "")
    return kind, label[:40]


def notice(where: int, record: dict[str, Any]) -> RawNotice:
    kind, label = kind_of(record)
    if kind is None:
        known = ", ".join(sorted(NATURE_KINDS))
        return RawNotice(
            where, problem=f"nature {record.get('nature')!r} is not one the mailer knows ({known})"
        )
    if kind not in STORED_KINDS:
        return RawNotice(where, skipped=left_out(label, kind), kind=kind)
    notes: list[str] = []
    return RawNotice(where, fields=from_boamp(record, notes, kind=kind, label=label), kind=kind, notes=notes)


def from_boamp(
    record: dict[str, Any],
    notes: list[str] | None = None,
    *,
    kind: NoticeKind = NoticeKind.COMPETITION,
    label: str | None = None,
) -> dict[str, Any]:
    """A BOAMP API v2.1 record as a record's fields."""
    notes = [] if notes is None else notes
    deadline = record.get("datelimitereponse")
    return {
        "reference": f"boamp:{record['idweb']}",
        "title": record.get("objet") or f"BOAMP {record['idweb']}",
        "buyer": {"name": (record.get("nomacheteur") or "").rstrip(". ") or None},
        "departments": _departments(record, notes),
        "published_on": record.get("dateparution"),
        "deadline": deadline[:10]
        if isinstance(deadline, str) and deadline[10:19] == "T00:00:00"
        else deadline,
        "url": record.get("url_avis"),
        "notice_kind": kind.value,
        "notice_type": label or kind_of(record)[1],
    }


def _departments(record: dict[str, Any], notes: list[str]) -> list[str]:
    kept = []
    for raw in record.get("code_departement") or []:
        if not raw:
            continue
        code = normalise_department(raw)
        if code in places().departments or code == LEGACY_CORSICA:
            kept.append(code)
        else:
            notes.append(f"department {code!r} names no French department: left out")
    return kept
