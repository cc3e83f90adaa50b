"""``mailer tenders``, ``mailer searches``, ``mailer digest``, ``mailer suppress add-name``."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
import sqlalchemy as sa

from mailer.cli.base import console, console_err, mailer, operator
from mailer.cli.suppress import suppress
from mailer.db import session_scope
from mailer.errors import ImportFailed

if TYPE_CHECKING:
    from mailer.alerts.formats import ParsedTenders

#: Problems (and notices left out, notes) listed before "... and N more".
SHOWN_PROBLEMS = 20


def _report(file: Path, problems: Sequence[tuple[int | str, str]], skip_invalid: bool) -> None:
    from mailer.alerts.formats import label

    for where, message in problems[:SHOWN_PROBLEMS]:
        console_err.print(f"{label(file, where)}: {message}", markup=False, highlight=False)
    if len(problems) > SHOWN_PROBLEMS:
        console_err.print(f"... and {len(problems) - SHOWN_PROBLEMS} more bad lines")
    if problems and not skip_invalid:
        raise ImportFailed(problems)


def _report_left_out(file: Path, parsed: ParsedTenders) -> None:
    """Name the notices left out (kinds never announced) and the notes; neither stops an import."""
    from mailer.alerts.formats import label

    for title, lines in (
        ("left out", [(s.where, s.message) for s in parsed.skipped]),
        ("note", parsed.notes),
    ):
        for where, message in lines[:SHOWN_PROBLEMS]:
            console.print(f"{label(file, where)}: {message}", markup=False, highlight=False)
        if len(lines) > SHOWN_PROBLEMS:
            console.print(f"... and {len(lines) - SHOWN_PROBLEMS} more ({title})")
    kinds = Counter(s.kind.value for s in parsed.skipped if s.kind is not None)
    if kinds:
        counted = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        console.print(f"{sum(kinds.values())} notices of kinds never announced left out: {counted}")


@mailer.group()
def tenders() -> None:
    """Tenders (appels d'offres) the digests announce."""


@tenders.command(name="import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["nouma", "ted", "boamp", "eforms"]),
    help="Default: recognised from the file (mailer/alerts/formats/ describes each).",
)
@click.option("--skip-invalid", is_flag=True, help="Import the good records and report the bad ones.")
@click.option("--dry-run", is_flag=True, help="Check the file, write nothing.")
def import_tenders(file: Path, format_: str | None, skip_invalid: bool, dry_run: bool) -> None:
    """Import tenders from FILE: the mailer's JSON Lines, TED notices, a BOAMP API response, or
    eForms XML notices (one file, a folder of them or a .zip).

    A tender already known by its reference is updated, never duplicated (and not announced
    again). Notices of kinds never announced (results, awards, modifications ...) are left out
    and named. A bad record is reported with its line (or file) and nothing is imported, unless
    --skip-invalid.

    \b
    Example:
      mailer tenders import ted_fr_notices.jsonl
      mailer tenders import boamp.json --format boamp --dry-run
      mailer tenders import eforms_notices.zip
    """
    from mailer.alerts import formats
    from mailer.alerts import tenders as service

    parsed = formats.read_tender_file(file, format=format_)
    _report_left_out(file, parsed)
    _report(file, parsed.problems, skip_invalid)
    if dry_run:
        console.print(
            f"{len(parsed.records)} good records, {len(parsed.skipped)} left out, "
            f"{len(parsed.problems)} bad; nothing written"
        )
        return
    with session_scope() as session:
        result = service.import_tenders(session, parsed.records)
    console.print(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{len(parsed.skipped)} left out, {len(parsed.problems)} bad records skipped"
    )


@mailer.group()
def searches() -> None:
    """Saved searches: what each recipient's digest looks for."""


@searches.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--skip-invalid", is_flag=True, help="Import the good lines and report the bad ones.")
@click.option("--dry-run", is_flag=True, help="Check the file, write nothing.")
def import_searches(file: Path, skip_invalid: bool, dry_run: bool) -> None:
    """Import saved searches from a JSON Lines FILE (format: mailer/alerts/searches.py).

    A search is updated by its ref; its high-water mark is kept. Every line must name a known
    recipient; a bad line is reported and nothing is imported, unless --skip-invalid.

    \b
    Example:
      mailer searches import saved_searches.jsonl
    """
    from mailer.alerts import searches as service

    parsed = service.read_search_file(file)
    _report(file, parsed.problems, skip_invalid)
    if dry_run:
        console.print(f"{len(parsed.records)} good lines, {len(parsed.problems)} bad; nothing written")
        return
    with session_scope() as session:
        result = service.import_searches(session, parsed.records)
    console.print(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.geolocations} locations recorded, {len(parsed.problems)} lines skipped"
    )


@mailer.group()
def digest() -> None:
    """Tender alert digests: one mail per recipient and window with what their searches found."""


def _as_of(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--as-of") from None
    from mailer.alerts.windows import today_in_paris

    # A future window would move every search's high-water mark now, and the real run on that
    # day would find nothing left to announce.
    if day > today_in_paris():
        raise click.BadParameter(f"{value} is in the future", param_hint="--as-of")
    return day


@digest.command()
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), required=True)
@click.option("--as-of", "as_of", metavar="DATE", help="The window's day (YYYY-MM-DD, Paris); default today.")
def run(frequency: str, as_of: str | None) -> None:
    """Plan a digest window (once) and queue its pending sends; safe to run again.

    The window is the day (daily) or the ISO week (weekly) of --as-of. Running it again, or
    while the scheduler runs it, sends nothing twice: it queues only the sends still pending,
    e.g. those of a run that crashed halfway.

    \b
    Example:
      mailer digest run --frequency daily
      mailer digest run --frequency weekly --as-of 2026-11-23
    """
    from mailer import actors
    from mailer.alerts import planning as service
    from mailer.alerts.windows import parse_frequency
    from mailer.broker import embedded_worker
    from mailer.models import Delivery

    day = _as_of(as_of)
    plan = service.plan(parse_frequency(frequency), day)
    batches = service.pending_batches(plan.frequency, plan.window)
    with embedded_worker():
        actors.enqueue(batches)
    state = "planned now" if plan.planned_now else "already planned"
    console.print(
        f"{plan.belongs_to}: {state}; {plan.recipients} recipients, {plan.digests} with new tenders"
        + (
            f" ({plan.stats.get('searches', 0)} searches over {plan.stats.get('tenders_in_window', 0)} "
            f"tenders matched in {plan.stats.get('matching_seconds', 0):.2f} s)"
            if plan.planned_now
            else ""
        )
        + f"; {sum(len(b.recipient_ids) for b in batches)} pending sends queued in {len(batches)} batches"
    )
    with session_scope(readonly=True) as session:
        outcomes = Counter(
            f"{state.value}" + (f" ({reason})" if reason else "")
            for state, reason in session.execute(
                sa.select(Delivery.state, Delivery.skip_reason).where(Delivery.belongs_to == plan.belongs_to)
            )
        )
    if outcomes:
        console.print("outcomes so far: " + ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())))


@suppress.command(name="add-name")
@click.argument("name")
@click.option("--source", default="support_request", show_default=True, help="Where the request came from.")
@click.option("--note", help="Free text kept with the entry (e.g. a ticket number).")
def add_name(name: str, source: str, note: str | None) -> None:
    """Record that the tender contact NAME opposed being shown in digests (policy article 5).

    Type the name as the person gives it; a surname in capitals says which part it is. Kept as
    hashes like addresses are; every tender contact written with that name is then left out of
    every digest (name, e-mail and phone; the buyer stays): the full name in any order, the surname
    after a civility or initials, an e-mail address built from the name. A contact known by
    address is suppressed with `mailer suppress add ADDRESS --all --reason opposition`.

    \b
    Example:
      mailer suppress add-name "Marie Houssay" --note "ticket 4600"
      mailer suppress add-name "Anne-Marie de LA ROCHEFOUCAULD" --note "ticket 4601"
    """
    from mailer.suppression import contacts

    with session_scope() as session:
        entry, created = contacts.add_name(session, name, source=source, note=note, created_by=operator())
        if created:
            console.print("contact name added to the opposition list")
        else:
            console.print(f"already on the opposition list since {entry.created_at:%Y-%m-%d}; kept as is")
