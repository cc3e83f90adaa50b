"""What a notice is: a call for competition, prior information, a change, a result ...

Every tender records its kind (``Tender.notice_kind``), read from what its publisher says:

- eForms: the notice type (``cn-standard``, ``pin-only``, ``can-standard`` ...) and the form
  type the eForms code lists give it (``data/eforms_notice_types.csv``, from the eForms SDK's
  ``notice-type*.gc``, see data/README.md); a notice with a change section is a ``change`` of
  an earlier notice, or a ``cancellation`` when its reason is ``cancel``;
- TED's notices before eForms: the document type code (``formats/ted.py``);
- BOAMP: the nature and the state of the notice (``formats/boamp.py``);
- the mailer's own format: ``notice_kind`` (a call for competition when absent).

What is announced (for digest planning): ``ANNOUNCED_KINDS`` to every matching search,
``ON_REQUEST_KINDS`` (prior information) only to searches that ask for them; ``is_announced``
states both. Changes and cancellations are kept so that a notice already announced can be told
as updated or cancelled, never as a new tender. The other kinds (results and awards, contract
modifications and completions, pre-market consultations, direct award pre-announcements,
business registrations) are never announced: the import leaves them out and names each one,
so their contacts (personal data) and award amounts are not stored at all.
"""

from __future__ import annotations

import csv
import enum
import functools
from dataclasses import dataclass
from pathlib import Path

NOTICE_TYPES_FILE = Path(__file__).parent / "data" / "eforms_notice_types.csv"


class NoticeKind(enum.StrEnum):
    """What a notice announces, in the words of eForms' form types."""

    COMPETITION = "competition"
    PLANNING = "planning"
    CHANGE = "change"
    CANCELLATION = "cancellation"
    RESULT = "result"
    MODIFICATION = "modification"
    COMPLETION = "completion"
    CONSULTATION = "consultation"
    DIRECT_AWARD = "direct_award"
    REGISTRATION = "registration"


#: Announced as new tenders to every search that matches them: calls for competition.
ANNOUNCED_KINDS = frozenset({NoticeKind.COMPETITION})
#: Announced only to searches that ask for prior information notices.
ON_REQUEST_KINDS = frozenset({NoticeKind.PLANNING})
#: Kept by the import: what may be announced, and what changes or cancels it.
STORED_KINDS = ANNOUNCED_KINDS | ON_REQUEST_KINDS | {NoticeKind.CHANGE, NoticeKind.CANCELLATION}

#: How an import line names a kind it leaves out ("can-standard: a contract award notice, ...").
KIND_PHRASES = {
    NoticeKind.RESULT: "a contract award notice",
    NoticeKind.MODIFICATION: "a contract modification notice",
    NoticeKind.COMPLETION: "a contract completion notice",
    NoticeKind.CONSULTATION: "a pre-market consultation notice",
    NoticeKind.DIRECT_AWARD: "a direct award pre-announcement (ex ante transparency)",
    NoticeKind.REGISTRATION: "a business registration notice",
}

#: eForms form types (``form-type.gc``) as kinds.
FORM_TYPE_KINDS = {
    "competition": NoticeKind.COMPETITION,
    "planning": NoticeKind.PLANNING,
    "result": NoticeKind.RESULT,
    "cont-modif": NoticeKind.MODIFICATION,
    "completion": NoticeKind.COMPLETION,
    "consultation": NoticeKind.CONSULTATION,
    "dir-awa-pre": NoticeKind.DIRECT_AWARD,
    "bri": NoticeKind.REGISTRATION,
}


def is_announced(kind: str, *, prior_information: bool = False) -> bool:
    """Whether a tender of this kind is announced as new, to a search asking for prior information or not."""
    return kind in ANNOUNCED_KINDS or (prior_information and kind in ON_REQUEST_KINDS)


def left_out(label: str, kind: NoticeKind) -> str:
    """The line naming a notice the import leaves out; ``label`` is the publisher's type."""
    return f"{label}: {KIND_PHRASES.get(kind, kind.value)}, not announced"


@dataclass(frozen=True)
class NoticeType:
    """An eForms notice type and its form type."""

    code: str
    form_type: str
    name_en: str
    name_fr: str

    @property
    def kind(self) -> NoticeKind:
        return FORM_TYPE_KINDS[self.form_type]


@functools.cache
def eforms_notice_types() -> dict[str, NoticeType]:
    """eForms notice types by code, read once per process."""
    with NOTICE_TYPES_FILE.open(encoding="utf-8", newline="") as handle:
        return {row["code"]: NoticeType(**row) for row in csv.DictReader(handle)}
