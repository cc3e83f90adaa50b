"""``mailer stats``: figures that show whether the mailer keeps its promises."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from typing import Any

import click
from rich.table import Table

from mailer import preferences
from mailer.cli.base import console, mailer
from mailer.db import session_scope, utcnow

#: Gmail's and Yahoo's bulk-sender rules: an unsubscribe takes effect within two days.
UNSUBSCRIBE_DEADLINE = dt.timedelta(days=2)


@mailer.group()
def stats() -> None:
    """Figures: how fast unsubscribes take effect."""


def _seconds(delays: list[dt.timedelta]) -> list[float]:
    return sorted(d.total_seconds() for d in delays)


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def _shown(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@stats.command()
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="Look this far back.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def unsubscribes(days: int, as_json: bool) -> None:
    """Time from an unsubscribe request to its effect, by how it came (deadline: 2 days).

    The request is when the person acted (the web request's arrival, or SendGrid's event time);
    the effect is the commit after which no mail of that purpose leaves.

    \b
    Example:
      mailer stats unsubscribes --days 7
    """
    with session_scope(readonly=True) as session:
        found = preferences.unsubscribe_delays(session, utcnow() - dt.timedelta(days=days))
    by_source: dict[str, list[dt.timedelta]] = {}
    for delay in found:
        by_source.setdefault(delay.source.value, []).append(delay.delay)
    rows: list[dict[str, Any]] = []
    for source, delays in sorted(by_source.items()):
        values = _seconds(delays)
        rows.append(
            {
                "source": source,
                "count": len(values),
                "median_seconds": statistics.median(values),
                "p95_seconds": _percentile(values, 0.95),
                "max_seconds": values[-1],
                "over_deadline": sum(v > UNSUBSCRIBE_DEADLINE.total_seconds() for v in values),
            }
        )
    if as_json:
        click.echo(
            json.dumps(
                {"days": days, "deadline_seconds": UNSUBSCRIBE_DEADLINE.total_seconds(), "sources": rows}
            )
        )
        return
    if not rows:
        console.print(f"no unsubscribes in the last {days} days")
        return
    table = Table(title=f"Unsubscribes, last {days} days: request to effect (deadline 2 days)")
    for column in ("source", "count", "median", "p95", "max", "over deadline"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for row in rows:
        table.add_row(
            row["source"],
            str(row["count"]),
            _shown(row["median_seconds"]),
            _shown(row["p95_seconds"]),
            _shown(row["max_seconds"]),
            str(row["over_deadline"]),
        )
    console.print(table)
