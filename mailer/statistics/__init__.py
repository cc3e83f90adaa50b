"""Anonymised statistics to hand to third parties: sends, deliveries, bounces, complaints and
unsubscribes by purpose, campaign, week and department, with every small cell suppressed.

``figures.py`` says what each send and unsubscribe counts for; ``disclosure.py`` protects the
table (k recipients at least per published cell, complementary suppression). Nothing in the
output names or identifies a person: no address, name or id.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import TextIO

from sqlalchemy.orm import Session

from mailer.statistics.disclosure import DEFAULT_K, DIMENSIONS, Table, protect
from mailer.statistics.figures import FIGURES, cells

__all__ = ["DEFAULT_K", "anonymised_table", "write_csv"]


def anonymised_table(
    session: Session, since: dt.datetime, until: dt.datetime, *, k: int = DEFAULT_K
) -> Table:
    """The period's figures, protected: no published cell under ``k`` recipients, none recomputable."""
    return protect(cells(session, since, until), k)


def write_csv(table: Table, out: TextIO) -> int:
    """Write the table as CSV (suppressed figures left empty); returns the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*DIMENSIONS, "recipients", *FIGURES, "suppressed"])
    rows = 0
    for key in sorted(table.cells):
        cell = table.cells[key]
        if cell.suppressed:
            values = [""] * (1 + len(FIGURES))
        else:
            values = [str(cell.recipients), *(str(cell.figures[f]) for f in FIGURES)]
        writer.writerow([*key, *values, "yes" if cell.suppressed else "no"])
        rows += 1
    return rows
