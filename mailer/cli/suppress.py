"""``mailer suppress``: the opposition list."""

from __future__ import annotations

import click
from rich.table import Table

from mailer import gate
from mailer.cli.base import PURPOSE, SUPPRESSION_REASON, console, mailer, operator
from mailer.db import session_scope
from mailer.models import SuppressionReason
from mailer.purposes import ALL_PURPOSES, PURPOSE_KEYS
from mailer.suppression import entries


@mailer.group()
def suppress() -> None:
    """The suppression (opposition) list, keyed by a hash of the address."""


@suppress.command()
@click.argument("address")
@click.option("--purpose", type=PURPOSE, help="Suppress this purpose only.")
@click.option("--all", "all_purposes", is_flag=True, help="Suppress every purpose.")
@click.option("--reason", type=SUPPRESSION_REASON, required=True)
@click.option("--source", default="support_request", show_default=True, help="Where the request came from.")
@click.option("--note", help="Free text kept with the entry (e.g. a ticket number).")
def add(
    address: str,
    purpose: str | None,
    all_purposes: bool,
    reason: str,
    source: str,
    note: str | None,
) -> None:
    """Put ADDRESS on the suppression list for one purpose (--purpose) or all (--all).

    Works for any address, a buyer contact in tender data included.

    \b
    Example:
      mailer suppress add jean@example.com --all --reason opposition --note "ticket 4522"
    """
    if (purpose is None) == (not all_purposes):
        raise click.UsageError("give exactly one of --purpose P or --all")
    scope = ALL_PURPOSES if all_purposes else str(purpose)
    with session_scope() as session:
        entry, created = entries.add(
            session,
            address,
            scope=scope,
            reason=SuppressionReason(reason),
            source=source,
            note=note,
            created_by=operator(),
        )
        if created:
            console.print(f"suppressed for {scope} ({reason})")
        else:
            console.print(
                f"already suppressed for {scope} since {entry.created_at:%Y-%m-%d} "
                f"({entry.reason.value}); kept as is"
            )


@suppress.command()
@click.argument("address")
def check(address: str) -> None:
    """Show the suppression entries of ADDRESS and what the gate says for each purpose.

    \b
    Example:
      mailer suppress check jean@example.com
    """
    with session_scope(readonly=True) as session:
        found = entries.entries_for(session, address)
        verdicts = {p: gate.check_addresses(session, p, [address])[address] for p in PURPOSE_KEYS}
    if not found:
        console.print("not on the suppression list")
    for entry in found:
        console.print(
            f"suppressed for {entry.scope}: {entry.reason.value}, source {entry.source}, "
            f"{entry.created_at:%Y-%m-%d %H:%M} UTC" + (f", note: {entry.note}" if entry.note else "")
        )
    for purpose, verdict in verdicts.items():
        console.print(f"  {purpose}: {'may be sent' if verdict is None else 'not sent: ' + verdict}")


@suppress.command(name="list")
@click.option("--scope", type=click.Choice([ALL_PURPOSES, *PURPOSE_KEYS]), help="Only this scope.")
@click.option("--reason", type=SUPPRESSION_REASON, help="Only this reason.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
def list_(scope: str | None, reason: str | None, limit: int) -> None:
    """List suppression entries, newest first (addresses are kept only as hashes).

    \b
    Example:
      mailer suppress list --reason hard_bounce --limit 20
    """
    with session_scope(readonly=True) as session:
        rows, total = entries.listing(
            session, scope=scope, reason=SuppressionReason(reason) if reason else None, limit=limit
        )
    table = Table("address hash", "scope", "reason", "source", "since", "note")
    for entry in rows:
        table.add_row(
            entry.address_hash[:16] + "…",
            entry.scope,
            entry.reason.value,
            entry.source,
            f"{entry.created_at:%Y-%m-%d}",
            entry.note or "",
        )
    console.print(table)
    console.print(f"{len(rows)} of {total} entries shown")
