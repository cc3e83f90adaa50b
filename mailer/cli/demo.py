"""``mailer demo``: the whole pipeline on the embedded default."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from mailer.cli.base import console, mailer


@mailer.command()
def demo() -> None:
    """Run the mailer end to end with nothing to start, in ./var/demo.

    Creates a SQLite database, imports six recipients with varied consents, records one
    opposition, imports 80 real TED tenders (moved to today) and the recipients' saved
    searches, hides two buyer contacts who opposed, then runs today's daily digest (asked
    twice, as two schedulers would) and sends a test message of each offer purpose (each
    batch queued twice, as a redelivered message would be), all through the in-process broker
    and workers. Prints what was sent, what was skipped and why, and where each .eml file is.

    \b
    Example:
      mailer demo
    """
    from mailer import demo as service

    service.use_embedded_default()
    rows = service.run()
    table = Table("recipient", "purpose", "what", "outcome", "why", ".eml file", title="NouMa Mailer demo")
    for row in rows:
        colour = "green" if row.state == "sent" else "yellow" if row.state == "skipped" else "red"
        table.add_row(row.address, row.purpose, row.what, f"[{colour}]{row.state}[/]", row.detail, row.eml)
    console.print(table)
    counts = Counter(row.state for row in rows)
    console.print(
        ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + f"; {len(rows)} delivery records for {len(rows)} intended sends (each queued twice)"
    )
    console.print(
        "Digest contacts: the buyer contacts who opposed (by name and by address) are left out of "
        "every digest; the buyer organisation is still shown"
    )
    console.print(
        f"Inspect one: mailer audit show {rows[0].address}  (with MAILER_DATABASE_URL=sqlite:///var/demo/mailer.sqlite)"
    )
