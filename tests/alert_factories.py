"""Builders for tender-alert tests: tenders, saved searches, digest runs (example.* addresses only)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import sqlalchemy as sa

from mailer.alerts import planning
from mailer.alerts.models import Frequency, SavedSearch, Tender
from mailer.alerts.searches import NumberedSearch, SearchRecord, import_searches
from mailer.alerts.tenders import TenderRecord, import_tenders
from mailer.db import session_scope

_references = itertools.count(1)

#: The day the tests' digests run: a Thursday; its week starts on Monday 2026-11-23.
TODAY = dt.date(2026, 11, 26)


def tender(**fields: Any) -> TenderRecord:
    """A tender record with defaults: open until after TODAY, in Isère."""
    values: dict[str, Any] = {
        "reference": f"test:{next(_references)}",
        "title": "Travaux divers",
        "departments": ["38"],
        "deadline": "2026-12-15T12:00",
    }
    values.update(fields)
    return TenderRecord.model_validate(values)


def add_tenders(*records: TenderRecord) -> list[int]:
    """Import tenders; their ids in the order given."""
    with session_scope() as session:
        import_tenders(session, list(records))
        by_reference = {
            reference: tid
            for reference, tid in session.execute(
                sa.select(Tender.reference, Tender.id).where(
                    Tender.reference.in_([r.reference for r in records])
                )
            )
        }
    return [by_reference[r.reference] for r in records]


def add_search(address: str, **fields: Any) -> int:
    """Save a search for the recipient with this address; its id."""
    values: dict[str, Any] = {"ref": f"s-{next(_references)}", "recipient": address, "name": "Recherche"}
    values.update(fields)
    record = SearchRecord.model_validate(values)
    with session_scope() as session:
        import_searches(session, [NumberedSearch(1, record)])
        return int(session.scalar(sa.select(SavedSearch.id).where(SavedSearch.external_ref == record.ref)))


def plan(frequency: Frequency = Frequency.DAILY, as_of: dt.date = TODAY) -> planning.RunPlan:
    return planning.plan(frequency, as_of)


def run_window(frequency: Frequency = Frequency.DAILY, as_of: dt.date = TODAY) -> planning.RunPlan:
    """Plan a window and deliver its pending batches in this process (what a worker does)."""
    from mailer.delivery import deliver_batch

    planned = planning.plan(frequency, as_of)
    for spec in planning.pending_batches(planned.frequency, planned.window):
        deliver_batch(spec)
    return planned
