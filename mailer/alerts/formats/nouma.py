"""The mailer's own format: JSON Lines, one tender a line, as NouMa's site sends them.

Only ``reference`` and ``title`` are required::

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
     "url": "https://www.nouma.fr/ao/118342",
     "notice_kind": "competition", "notice_type": "cn-standard",
     "lots": [{"id": "LOT-0001", "title": "Chaussée", "cpv": ["45233140"]}],
     "descriptors": ["Voirie et réseaux divers"]}

- ``title`` and the other names are single-line: a line break becomes a space.
- ``cpv``: codes of the CPV 2008 list; a check digit (``-9``) is dropped. The first is the
  main one.
- ``departments`` (INSEE codes, overseas collectivities 971-978, 984, 986-988 included) and
  ``regions`` (INSEE region codes) name where the work is; Corsica's former ``20`` names 2A,
  2B or both (``places.py``). When ``departments`` is absent they are derived from ``nuts``
  (NUTS 2016: level 3 is a department, levels 1 and 2 name regions; ``FR`` alone names no
  place), then from ``postal_code``. Regions always include those of the departments.
- ``deadline``: a date, or a date and time; without an offset it is read in Europe/Paris.
- ``value``: the estimated total value, a number (euros) or ``{"amount", "currency"}``. Only
  euros are accepted: searches bound values in euros. An award amount is never a value.
- ``contact``: the buyer's contact person (personal data). Never shown once they opposed
  (``mailer/suppression/contacts.py``).
- ``notice_kind``: ``competition`` when absent (``notice_kinds.py``); ``notice_type``: the
  publisher's code; ``notice_id`` / ``procedure_id`` / ``changes_notice_id``: eForms' notice,
  procedure and changed notice; ``descriptors``: the publisher's keywords.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailer.alerts.formats.base import RawNotice
from mailer.alerts.notice_kinds import STORED_KINDS, NoticeKind, left_out
from mailer.import_file import json_lines


def notices(text: str) -> Iterator[RawNotice]:
    for number, value in json_lines(text):
        if isinstance(value, str):
            yield RawNotice(number, problem=value)
            continue
        kind = next((k for k in NoticeKind if k.value == value.get("notice_kind")), None)
        if kind is not None and kind not in STORED_KINDS:
            yield RawNotice(number, skipped=left_out(f"notice_kind {kind.value}", kind), kind=kind)
            continue
        yield RawNotice(number, fields=value)
