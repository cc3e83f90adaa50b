"""TED notices before eForms (2014 forms), normalised as JSON Lines: one ``doc_id`` a line.

Each line becomes a tender ``ted:<doc_id>``. What the notice is comes from its document type
code (TED's ``TD_DOCUMENT_TYPE``, also written in words in ``document_type``); results,
awards, modifications and ex ante transparency notices are left out, each named. Their total
value (``value_total``, an award amount) is never read: the value is ``value_estimated_total``.

Where the work is: the place-of-performance NUTS codes (notice and lots) first, then the
buyer's NUTS code, then the buyer's postal code. TED's contact e-mails are free text: one that
does not parse is left out rather than refusing the notice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mailer.alerts.formats.base import RawNotice, email_or_none, estimated_value, place_of, web_address
from mailer.alerts.notice_kinds import STORED_KINDS, NoticeKind, left_out
from mailer.import_file import json_lines

#: TED document type codes and what they are.
DOCUMENT_KINDS = {
    "3": NoticeKind.COMPETITION,  # Contract notice
    "A": NoticeKind.COMPETITION,  # Prior information notice with call for competition
    "M": NoticeKind.COMPETITION,  # Periodic indicative notice with call for competition
    "O": NoticeKind.COMPETITION,  # Qualification system with call for competition
    "D": NoticeKind.COMPETITION,  # Design contest
    "C": NoticeKind.COMPETITION,  # Works concession
    "H": NoticeKind.COMPETITION,  # Services concession
    "F": NoticeKind.COMPETITION,  # Subcontract notice
    "0": NoticeKind.PLANNING,  # Prior information notice without call for competition
    "P": NoticeKind.PLANNING,  # Periodic indicative notice without call for competition
    "B": NoticeKind.PLANNING,  # Buyer profile (a prior information notice published there)
    "Q": NoticeKind.PLANNING,  # Qualification system without call for competition
    "2": NoticeKind.CHANGE,  # Additional information (corrigendum)
    "7": NoticeKind.RESULT,  # Contract award notice
    "J": NoticeKind.RESULT,  # Concession award notice
    "R": NoticeKind.RESULT,  # Results of design contests
    "K": NoticeKind.MODIFICATION,  # Modification of a contract/concession during its term
    "V": NoticeKind.DIRECT_AWARD,  # Voluntary ex ante transparency notice
}


def looks_like(first_line: str) -> bool:
    return '"doc_id"' in first_line and '"no_doc_ojs"' in first_line


def notices(text: str) -> Iterator[RawNotice]:
    for number, value in json_lines(text):
        if isinstance(value, str):
            yield RawNotice(number, problem=value)
            continue
        yield notice(number, value)


def notice(where: int, data: dict[str, Any]) -> RawNotice:
    """One TED notice as a record's fields, or left out for its kind."""
    code = str(data.get("document_type_code") or "")
    kind = DOCUMENT_KINDS.get(code)
    if kind is None:
        return RawNotice(
            where, problem=f"document_type_code {code!r} is not a TED document type the mailer knows"
        )
    label = f"TED {code} ({data.get('document_type') or 'no document_type'})"
    if kind not in STORED_KINDS:
        return RawNotice(where, skipped=left_out(label, kind), kind=kind)
    if not data.get("doc_id"):
        return RawNotice(where, problem="doc_id: missing")
    notes: list[str] = []
    return RawNotice(where, fields=from_ted(data, notes), kind=kind, notes=notes)


def from_ted(notice: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    """A normalised TED notice (``doc_id`` ...) as a record's fields."""
    notes = [] if notes is None else notes
    buyer = notice.get("buyer") or {}
    performance = list(notice.get("performance_nuts") or [])
    for lot in notice.get("lots") or []:
        performance.extend(lot.get("nuts") or [])
    cpv = [notice.get("cpv_main") or ""] + [c.get("code") or "" for c in notice.get("original_cpv") or []]
    for lot in notice.get("lots") or []:
        cpv.extend(lot.get("cpv_additional") or [])
    deadline = notice.get("deadline_date")
    if deadline and notice.get("deadline_time"):
        deadline = f"{deadline}T{notice['deadline_time']}"
    published = str(notice.get("date_pub") or "")
    contact = {
        "name": buyer.get("contact_point"),
        "email": email_or_none(buyer.get("e_mail")),
        "phone": buyer.get("phone"),
    }
    value = notice.get("value_estimated_total") or {}
    code = str(notice.get("document_type_code") or "")
    return {
        "reference": f"ted:{notice['doc_id']}",
        "title": notice.get("title") or notice.get("title_ml_fr") or f"TED {notice['doc_id']}",
        "description": notice.get("short_descr"),
        "buyer": {"name": buyer.get("officialname"), "town": buyer.get("town")} if buyer else None,
        "contact": contact if any(contact.values()) else None,
        "cpv": [c for c in dict.fromkeys(cpv) if c],
        **place_of(performance, None, buyer.get("nuts") or [], buyer.get("postal_code")),
        "published_on": f"{published[:4]}-{published[4:6]}-{published[6:8]}" if len(published) == 8 else None,
        "deadline": deadline,
        "value": estimated_value(value.get("amount"), value.get("currency"), notes),
        "url": web_address(notice.get("url_document")) or notice.get("ted_html_fr"),
        "notice_kind": DOCUMENT_KINDS.get(code, NoticeKind.COMPETITION).value,
        "notice_type": f"ted:{code}" if code else None,
        "lots": _lots(notice.get("lots") or []),
    }


def _lots(lots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A notice without lots has one, with neither number nor title.
    return [
        {
            "id": str(lot.get("lot_no") or index),
            "title": lot.get("title"),
            "cpv": [c for c in lot.get("cpv_additional") or [] if c],
        }
        for index, lot in enumerate(lots, start=1)
        if lot.get("lot_no") or lot.get("title")
    ]
