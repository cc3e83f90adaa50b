"""The ``mailer`` command: thin commands over the services, one module per group."""

from __future__ import annotations

import sys

import click

# Each module adds its commands to the ``mailer`` group.
from mailer.cli import (  # noqa: F401
    alerts,
    audit,
    campaign,
    consent,
    db,
    deliveries,
    demo,
    events,
    recipients,
    scheduler,
    send_test,
    stats,
    subject,
    suppress,
)
from mailer.cli.base import console_err, mailer
from mailer.errors import MailerError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr, never a traceback."""
    try:
        result = mailer.main(args=argv, prog_name="mailer", standalone_mode=False)
    except click.exceptions.Abort:
        console_err.print("mailer: aborted")
        return 130
    except click.exceptions.NoArgsIsHelpError as shown:
        click.echo(shown.format_message())
        return 2
    except click.ClickException as error:
        context = error.ctx if isinstance(error, click.UsageError) else None
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        message = " ".join(error.format_message().split())  # Click folds long choice lists
        console_err.print(f"mailer: error: {message}{hint}", markup=False, highlight=False)
        return error.exit_code
    except MailerError as error:
        console_err.print(f"mailer: error: {error}", markup=False, highlight=False)
        return 1
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())
