"""The root group, the consoles, and option types shared by several commands."""

from __future__ import annotations

import getpass
import sys

import click
from rich.console import Console

from mailer.models import ConsentSource, SuppressionReason
from mailer.purposes import PURPOSE_KEYS

#: Tables are wide; when the output is a file or a pipe, do not fold them at 80 columns.
_PIPE_WIDTH = 200

console = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
console_err = Console(stderr=True, highlight=False, soft_wrap=True)

PURPOSE = click.Choice(PURPOSE_KEYS)
#: A record id as the database holds it (a signed 64-bit integer); a larger one is a typo.
RECORD_ID = click.IntRange(1, 2**63 - 1)
CONSENT_SOURCE = click.Choice([s.value for s in ConsentSource])
SUPPRESSION_REASON = click.Choice([r.value for r in SuppressionReason])


def operator() -> str:
    """Who is typing: recorded as ``recorded_by`` / ``created_by`` on what a command writes."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="nouma-mailer", prog_name="mailer")
def mailer() -> None:
    """NouMa Mailer: tender alert digests and offers, sent only with consent, every send audited.

    \b
    Configuration comes from the environment (MAILER_DATABASE_URL, MAILER_BROKER_URL,
    MAILER_EMAIL_BACKEND, SENDGRID_API_KEY, MAILER_SECRET_KEY, ...); unset, everything runs
    embedded: a SQLite file under ./var, an in-process worker, .eml files in ./var/outbox.

    \b
    Example:
      mailer demo
    """
