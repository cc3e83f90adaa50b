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
    """Figures: how fast unsubscribes take effect; anonymised statistics for third parties."""


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
@click.option(
    "--days", type=click.IntRange(1, 36_500), default=30, show_default=True, help="Look this far back."
)
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


class Period(click.ParamType):
    """``2026-11`` (a month) or ``2026-10-01..2026-11-30`` (days, both included), in UTC."""

    name = "period"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[dt.datetime, dt.datetime]:
        text = str(value).strip()
        try:
            if ".." in text:
                first, last = (dt.date.fromisoformat(part) for part in text.split("..", 1))
            else:
                first = dt.date.fromisoformat(f"{text}-01")
                last = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        except ValueError:
            self.fail("expected a month (2026-11) or two dates (2026-10-01..2026-11-30)", param, ctx)
        if last < first:
            self.fail("the period ends before it starts", param, ctx)
        start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
        return start, dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


@stats.command()
@click.option("--period", type=Period(), required=True, help="A month (2026-11) or FROM..TO dates.")
@click.option(
    "--out", type=click.Path(dir_okay=False, writable=True), required=True, help="The CSV to write."
)
@click.option(
    "--k",
    type=click.IntRange(min=2, max=1000),
    default=10,
    show_default=True,
    help="Fewest recipients a published cell may describe.",
)
def export(period: tuple[dt.datetime, dt.datetime], out: str, k: int) -> None:
    """Write anonymised statistics to share with partners (CSV).

    Sends, deliveries, bounces, complaints and unsubscribes by purpose, campaign, week and
    department, with totals. Every cell describing fewer than K recipients is left empty, and
    enough others with it that none can be worked back from the totals. No address, name or id.

    \b
    Example:
      mailer stats export --period 2026-11 --out stats-2026-11.csv
    """
    from mailer.statistics import anonymised_table, write_csv

    since, until = period
    with session_scope(readonly=True) as session:
        table = anonymised_table(session, since, until, k=k)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        rows = write_csv(table, handle)
    hidden = sum(cell.suppressed for cell in table.cells.values())
    console.print(f"{rows} rows written to {out}; {hidden} cells suppressed (k = {k})")
