"""BOAMP notices: a response of the DILA BOAMP open-data API v2.1 (``records``, ``results`` list).

Each record becomes a tender ``boamp:<idweb>``. Its fields come from the record (``objet``,
``nomacheteur``, ``code_departement``, ``dateparution``, ``datelimitereponse``, ``url_avis``,
``descripteur_libelle``) and from the notice text in ``donnees`` (a JSON string; the 2006-2015
schema, ``IDENT``/``OBJET``/``DELAI``/``LOTS``..., and the later ``IDENTITE``/``OBJET.CPV``):

- description: the full object (``OBJET_COMPLET``) and the main characteristics;
- CPV codes: ``CPV_OBJ``, ``ART27CMP``, the lots' ``NOMENC_LOT``, ``CPV.PRINCIPAL``; a code of
  an older vocabulary (not in the CPV 2008 list) is left out with a note;
- contact: the administrative correspondent (``CORRESPONDANTS.ADMIN``), else the buyer's
  person in charge (``IDENT.PRM``), with e-mail and phone; trailing punctuation dropped;
- deadline: ``datelimitereponse``, with the time of day the notice writes ("à 12 heures");
- descriptors: ``descripteur_libelle`` (BOAMP's keywords);
- value: these schemas carry no estimated value as a number, so none is read.

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

from mailer.alerts.cpv import cpv_codes
from mailer.alerts.formats.base import RawNotice, email_or_none
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

_CPV = re.compile(r"\b\d{8}\b")
_HOUR = re.compile(r"(\d{1,2})\s*(?:h|heures?)\s*(\d{2})?", re.IGNORECASE)


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
    data = _donnees(record, notes)
    ident = _first(data, "IDENT") or _first(data, "IDENTITE") or {}
    postal_code = _clean(_first(ident, "CP"))
    return {
        "reference": f"boamp:{record['idweb']}",
        "title": record.get("objet")
        or _clean(_first(data, "OBJET", "TITRE_MARCHE"))
        or f"BOAMP {record['idweb']}",
        "description": _description(record, data),
        "buyer": {
            "name": _clean(
                record.get("nomacheteur") or _first(ident, "NOM") or _first(ident, "DENOMINATION")
            ),
            "town": _clean(_first(ident, "VILLE")),
        },
        "contact": _contact(data, ident),
        "cpv": _cpv(data, notes),
        "departments": _departments(record, notes),
        "postal_code": postal_code,
        "published_on": record.get("dateparution"),
        "deadline": _deadline(record, data),
        "url": record.get("url_avis"),
        "notice_kind": kind.value,
        "notice_type": label or kind_of(record)[1],
        "descriptors": _texts(record.get("descripteur_libelle"))
        or _texts(_first(data, "DESCRIPTEURS", "DESCRIPTEUR")),
    }


def _donnees(record: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    raw = record.get("donnees")
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        notes.append("donnees is not valid JSON: the notice text is left out")
        return {}
    return data if isinstance(data, dict) else {}


def _first(data: Any, *path: str) -> Any:
    """The value at a path of nested objects (the first element where a list stands)."""
    for key in path:
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _texts(value: Any) -> list[str]:
    """Every non-empty text of a value that may be a string, a list or nested lists."""
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    text = _clean(value)
    return [text] if text else []


def _clean(value: Any) -> str | None:
    """A field as BOAMP writes it, without its trailing list punctuation ("Chenôve," -> "Chenôve")."""
    if not isinstance(value, str | int | float):
        return None
    text = str(value).strip().rstrip(",;.: ").strip()
    return text or None


def _description(record: dict[str, Any], data: dict[str, Any]) -> str | None:
    title = _folded(record.get("objet"))
    parts = [
        *_texts(_first(data, "OBJET", "OBJET_COMPLET")),
        *_texts(_first(data, "CARACTERISTIQUES", "QUANTITE")),
        *_texts(_first(data, "CARACTERISTIQUES", "AUTRES")),
        *_texts(_first(data, "OBJET", "CARACTERISTIQUES", "QUANTITE")),
    ]
    kept = [p for p in dict.fromkeys(parts) if _folded(p) != title and len(p) > 1]
    return "\n".join(kept) or None


def _cpv(data: dict[str, Any], notes: list[str]) -> list[str]:
    texts = [
        *_texts(_first(data, "OBJET", "CPV_OBJ")),
        *_texts(_first(data, "OBJET", "CPV", "PRINCIPAL")),
        *_texts(_first(data, "OBJET", "ART27CMP")),
        *_texts(_first(data, "LOTS", "NOMENC_LOT")),
    ]
    codes = list(dict.fromkeys(code for text in texts for code in _CPV.findall(text)))
    unknown = [code for code in codes if code not in cpv_codes()]
    if unknown:
        notes.append(f"CPV {', '.join(unknown)} not in the CPV 2008 list (an older vocabulary): left out")
    return [code for code in codes if code not in unknown]


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


def _contact(data: dict[str, Any], ident: dict[str, Any]) -> dict[str, Any] | None:
    source = _first(data, "CORRESPONDANTS", "ADMIN") or {}
    name = (
        _clean(_first(source, "NOM"))
        or _clean(_first(ident, "PRM"))
        or _clean(_first(ident, "CORRESPONDANT"))
    )
    email = email_or_none(_first(source, "MEL") or _first(ident, "MEL"))
    phone = _clean(_first(source, "TEL") or _first(ident, "TEL"))
    contact = {"name": name, "email": email, "phone": phone[:40] if phone else None}
    return contact if any(contact.values()) else None


def _deadline(record: dict[str, Any], data: dict[str, Any]) -> str | None:
    deadline = record.get("datelimitereponse")
    if not isinstance(deadline, str) or len(deadline) < 10:
        return None
    if deadline[10:19] not in ("", "T00:00:00"):
        return deadline
    # The date alone: the notice's text says at what time ("..., à 12 heures").
    said = _texts(_first(data, "DELAI", "AUTRES"))
    hour = _HOUR.search(said[0]) if said else None
    if hour and int(hour[1]) < 24 and int(hour[2] or 0) < 60:
        return f"{deadline[:10]}T{int(hour[1]):02d}:{int(hour[2] or 0):02d}"
    return deadline[:10]
