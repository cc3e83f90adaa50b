"""Batches NouMa's site drops in the import directory for the import actors.

Tenders name their buyers' contact people and saved searches name recipients: personal data that
must not travel in Dramatiq message bodies. So the site writes a JSON Lines file (the formats of
``formats/nouma.py`` and ``searches.py``) into ``MAILER_IMPORT_DIR`` and sends the file's name only.
A file imported is renamed ``<name>.done``; a file with a bad line imports nothing and stays.
"""

from __future__ import annotations

from pathlib import Path

from mailer.alerts.formats import read_tender_file
from mailer.alerts.searches import SearchImportResult, import_searches, read_search_file
from mailer.alerts.tenders import TenderImportResult, import_tenders
from mailer.config import get_settings
from mailer.db import session_scope
from mailer.errors import ImportFailed, InvalidInput


def batch_path(file_name: str) -> Path:
    """The file a message names, inside the import directory only."""
    if not file_name or "/" in file_name or "\\" in file_name or file_name.startswith("."):
        raise InvalidInput(f"not a batch file name: {file_name!r}")
    path = get_settings().import_dir / file_name
    if not path.is_file():
        raise InvalidInput(f"no batch file {file_name!r} in the import directory")
    return path


def import_tender_batch(file_name: str) -> TenderImportResult:
    path = batch_path(file_name)
    parsed = read_tender_file(path, format="nouma")
    if parsed.problems:
        raise ImportFailed(parsed.problems)
    with session_scope() as session:
        result = import_tenders(session, parsed.records)
    path.rename(path.with_name(path.name + ".done"))
    return result


def import_search_batch(file_name: str) -> SearchImportResult:
    path = batch_path(file_name)
    parsed = read_search_file(path)
    if parsed.problems:
        raise ImportFailed(parsed.problems)
    with session_scope() as session:
        result = import_searches(session, parsed.records)
    path.rename(path.with_name(path.name + ".done"))
    return result
