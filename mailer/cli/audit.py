"""``mailer audit``: what we hold on an address and what we sent it."""

from __future__ import annotations

import json

import click
from rich.table import Table

from mailer import audit as service
from mailer.cli.base import console, mailer
from mailer.db import session_scope


@mailer.group()
def audit() -> None:
    """The audit trail: consent events, deliveries and their provider events."""


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else ""


@audit.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for an access request).")
def show(address: str, as_json: bool) -> None:
    """Show every delivery record and consent event for ADDRESS.

    \b
    Example:
      mailer audit show marie@example.com
      mailer audit show marie@example.com --json > access-request-4521.json
    """
    with session_scope(readonly=True) as session:
        found = service.report(session, address)
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
        return
    if found.recipient is None:
        console.print(f"no recipient with address {found.address}")
    else:
        r = found.recipient
        console.print(
            f"recipient {r['id']}: {r['address']} name={r['name'] or '-'} locale={r['locale']} "
            f"state={r['state']} since {_when(r['created_at'])} UTC"
        )
    table = Table("scope", "reason", "source", "since", "note", title="suppression entries")
    for e in found.suppressions:
        table.add_row(e["scope"], str(e["reason"]), e["source"], _when(e["created_at"]), e["note"] or "")
    console.print(table)
    table = Table(
        "at (UTC)",
        "purpose",
        "action",
        "source",
        "by",
        "ip",
        "wording",
        "partners",
        title="consent events",
    )
    for e in found.consent_events:
        table.add_row(
            _when(e["at"]),
            e["purpose"],
            str(e["action"]),
            str(e["source"]),
            e["recorded_by"] or "",
            e["ip"] or "",
            e["wording_version"] or "",
            e["partner_list_version"] or "",
        )
    console.print(table)
    table = Table(
        "id",
        "purpose",
        "kind",
        "for",
        "state",
        "reason / error",
        "provider id",
        "at (UTC)",
        "events",
        title="deliveries",
    )
    for d in found.deliveries:
        table.add_row(
            str(d["id"]),
            d["purpose"],
            d["kind"],
            d["belongs_to"],
            str(d["state"]),
            d["skip_reason"] or d["error"] or "",
            d["provider_message_id"] or "",
            _when(d["finished_at"] or d["created_at"]),
            ", ".join(e["type"] for e in d["events"]),
        )
    console.print(table)
