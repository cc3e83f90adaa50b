"""Tender files the mailer reads, one module a format, each giving the fields of ``TenderRecord``.

- ``nouma``: the mailer's own JSON Lines (NouMa's site);
- ``ted``: TED notices before eForms, normalised as JSON Lines;
- ``boamp``: a BOAMP API v2.1 response;
- ``eforms``: eForms XML notices, one file, a folder or a .zip.

``reader`` recognises the format and checks every record.
"""

from __future__ import annotations

from mailer.alerts.formats.reader import (
    FORMATS,
    FORMATS_SAID,
    ParsedTenders,
    SkippedNotice,
    label,
    read_tender_file,
)

__all__ = ["FORMATS", "FORMATS_SAID", "ParsedTenders", "SkippedNotice", "label", "read_tender_file"]
