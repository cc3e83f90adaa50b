"""``mailer recipients``: import (rectification and erasure are ``mailer subject`` commands)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import Progress

from mailer import recipients as service
from mailer.cli.base import console, console_err, mailer, operator
from mailer.db import session_scope
from mailer.errors import ImportFailed
from mailer.recipient_file import read_recipient_file

#: Problems listed before "... and N more".
SHOWN_PROBLEMS = 20


@mailer.group()
def recipients() -> None:
    """The people we may e-mail, with their language and consents."""


@recipients.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "format_", type=click.Choice(["csv", "jsonl"]), help="Default: from the file name.")
@click.option("--skip-invalid", is_flag=True, help="Import the good lines and report the bad ones.")
@click.option("--dry-run", is_flag=True, help="Check the file, write nothing.")
def import_(file: Path, format_: str | None, skip_invalid: bool, dry_run: bool) -> None:
    """Import recipients and their consents from a CSV or JSON Lines FILE.

    A bad line is reported with its number and nothing is imported, unless --skip-invalid.
    Importing the same file again changes nothing. The formats are described in
    mailer/recipient_file.py.

    \b
    Example:
      mailer recipients import signups.jsonl
      mailer recipients import export.csv --skip-invalid
    """
    parsed = read_recipient_file(file, format=format_)
    if parsed.problems:
        for line, message in parsed.problems[:SHOWN_PROBLEMS]:
            console_err.print(f"{file}:{line}: {message}", markup=False)
        if len(parsed.problems) > SHOWN_PROBLEMS:
            console_err.print(f"... and {len(parsed.problems) - SHOWN_PROBLEMS} more bad lines")
        if not skip_invalid:
            raise ImportFailed(parsed.problems)
    if dry_run:
        console.print(
            f"{len(parsed.records)} good records, {len(parsed.problems)} bad lines; nothing written"
        )
        return
    with Progress(console=console_err, transient=True) as progress:
        task = progress.add_task("importing", total=len(parsed.records))
        with session_scope() as session:
            result = service.import_records(
                session,
                parsed.records,
                recorded_by=f"import:{file.name}:{operator()}",
                progress=lambda n: progress.advance(task, n),
            )
    console.print(
        f"{result.created} created, {result.updated} updated, {result.consent_events} consent events "
        f"recorded ({result.unchanged_consents} unchanged), {len(parsed.problems)} lines skipped"
    )
