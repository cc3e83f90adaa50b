"""``mailer consent``: record a grant or a withdrawal, with its proof."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mailer import consent as ledger
from mailer import recipients
from mailer.cli.base import CONSENT_SOURCE, PURPOSE, console, mailer, operator
from mailer.db import session_scope
from mailer.models import ConsentAction, ConsentSource

_PROOF_OPTIONS = [
    click.option("--source", type=CONSENT_SOURCE, required=True, help="How the request reached us."),
    click.option("--ip", help="IP address the request came from, when known."),
    click.option("--user-agent", help="Browser user agent, when known."),
    click.option("--wording-version", help="Version of the consent wording shown."),
    click.option("--partner-list-version", help="Partner list version shown (partner_offers)."),
    click.option("--note", help="Free text kept with the event (e.g. a ticket number)."),
]


@mailer.group()
def consent() -> None:
    """The consent ledger: every grant and withdrawal is kept with its proof."""


def _proof_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_PROOF_OPTIONS):
        function = option(function)
    return function


def _record(
    action: ConsentAction,
    address: str,
    purpose: str,
    *,
    source: str,
    ip: str | None,
    user_agent: str | None,
    wording_version: str | None,
    partner_list_version: str | None,
    note: str | None,
) -> None:
    proof = ledger.Proof(
        source=ConsentSource(source),
        ip=ip,
        user_agent=user_agent,
        wording_version=wording_version,
        partner_list_version=partner_list_version,
        note=note,
        recorded_by=operator(),
    )
    with session_scope() as session:
        recipient = recipients.get(session, address)
        event = ledger.record(session, ledger.ConsentChange(recipient.id, purpose, action, proof))
        console.print(f"{purpose}: {action.value} for recipient {recipient.id} (event {event.id})")


@consent.command()
@click.argument("address")
@click.argument("purpose", type=PURPOSE)
@_proof_options
def grant(address: str, purpose: str, **proof: Any) -> None:
    """Record that ADDRESS granted consent for PURPOSE.

    \b
    Example:
      mailer consent grant marie@example.com nouma_offers --source support_request \\
        --note "ticket 4521" --wording-version offers-2026-01
    """
    if purpose == "partner_offers" and not proof.get("partner_list_version"):
        # Consent to partner offers is given for the partners named at the time (CNIL): say which.
        raise click.UsageError("partner_offers needs --partner-list-version (the partner list shown)")
    _record(ConsentAction.GRANTED, address, purpose, **proof)


@consent.command()
@click.argument("address")
@click.argument("purpose", type=PURPOSE)
@_proof_options
def withdraw(address: str, purpose: str, **proof: Any) -> None:
    """Record that ADDRESS withdrew consent for PURPOSE; no mail of it leaves from now on.

    \b
    Example:
      mailer consent withdraw marie@example.com partner_offers --source support_request
    """
    _record(ConsentAction.WITHDRAWN, address, purpose, **proof)
