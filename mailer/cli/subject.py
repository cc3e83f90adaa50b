"""``mailer subject``: the rights of access, opposition, rectification and erasure (support desk)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mailer.cli.base import PURPOSE, console, mailer, operator
from mailer.config import SUPPORTED_LOCALES
from mailer.db import session_scope
from mailer.errors import InvalidInput

#: Where a request reached us when the support desk does not say.
DEFAULT_SOURCE = "support_request"

_SOURCE = click.option(
    "--source",
    default=DEFAULT_SOURCE,
    show_default=True,
    help="How the request reached us (e-mail, letter...).",
)
_NOTE = click.option("--note", help="Kept with the request (a ticket number). No personal data.")


@mailer.group()
def subject() -> None:
    """A person's rights (ServiceClients@nouma.fr): access, opposition, rectification, erasure.

    Every request answered is kept in the rights trail, by address hash.
    """


@subject.command()
@click.argument("address")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write FILE.json and FILE.html.")
@click.option("--name", help="Also list tender notices naming this person as a contact.")
@click.option(
    "--locale", type=click.Choice(SUPPORTED_LOCALES), help="Language of the page (default: theirs)."
)
@_SOURCE
@_NOTE
def export(
    address: str, out: Path | None, name: str | None, locale: str | None, source: str, note: str | None
) -> None:
    """Everything held on ADDRESS (right of access): one JSON document and a readable page.

    Without --out the JSON is printed.

    \b
    Example:
      mailer subject export marie@example.com --out access-4521 --note "ticket 4521"
    """
    from mailer.rights import access

    with session_scope() as session:
        found = access.export(session, address, name=name, source=source, note=note, operator=operator())
    if out is None:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    language = locale or (found["recipient"] or {}).get("locale") or "fr"
    stem = out.with_suffix("") if out.suffix in (".json", ".html") else out
    stem.with_suffix(".json").write_text(
        json.dumps(found, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    stem.with_suffix(".html").write_text(access.readable(found, language), encoding="utf-8")
    console.print(f"written: {stem.with_suffix('.json')} and {stem.with_suffix('.html')}")


@subject.command()
@click.argument("address", required=False)
@click.option("--purpose", type=PURPOSE, help="Only this purpose (default: every purpose).")
@click.option("--name", help="A tender contact known by name instead of an address.")
@_SOURCE
@_NOTE
def oppose(address: str | None, purpose: str | None, name: str | None, source: str, note: str | None) -> None:
    """Never mail ADDRESS again, nor show it as a tender contact (right of opposition).

    Effective at once, for sends already queued too. A recipient's consents for the purposes
    covered are withdrawn, with the request as proof.

    \b
    Examples:
      mailer subject oppose marie@example.com --note "ticket 4522"
      mailer subject oppose marie@example.com --purpose partner_offers
      mailer subject oppose --name "Élisabeth Chich-Bourgine" --note "ticket 4523"
    """
    from mailer.rights import opposition

    if (address is None) == (name is None):
        raise click.UsageError("give an ADDRESS or --name, not both")
    with session_scope() as session:
        if name is not None:
            if purpose is not None:
                raise click.UsageError("--purpose applies to an address, not to a contact's name")
            created = opposition.oppose_name(session, name, source=source, note=note, operator=operator())
            console.print("contact name opposed" if created else "contact name already opposed; kept as is")
            return
        assert address is not None
        done = opposition.oppose(
            session, address, purpose=purpose, source=source, note=note, operator=operator()
        )
    scope = purpose or "every purpose"
    console.print(f"opposed for {scope}" + ("" if done.new_entry else " (already on the list; kept as is)"))
    if done.withdrawn:
        console.print(f"consent withdrawn: {', '.join(done.withdrawn)}")


@subject.command()
@click.argument("old_address")
@click.argument("new_address")
@_SOURCE
@_NOTE
def rectify(old_address: str, new_address: str, source: str, note: str | None) -> None:
    """Give a person NEW_ADDRESS instead of OLD_ADDRESS (right of rectification).

    Their history stays theirs; OLD_ADDRESS stays suppressed wherever it was; their own
    oppositions follow them; what the list already holds against NEW_ADDRESS is shown.

    \b
    Example:
      mailer subject rectify marie@old.example.com marie@example.com --note "ticket 4524"
    """
    from mailer.rights import rectification

    with session_scope() as session:
        done = rectification.rectify(
            session, old_address, new_address, source=source, note=note, operator=operator()
        )
    console.print(f"recipient {done.recipient_id}: address changed")
    for entry in done.new_address_entries:
        console.print(f"the new address was already suppressed ({entry}): the gate applies it")


@subject.command()
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_SOURCE
@_NOTE
def erase(address: str, yes: bool, source: str, note: str | None) -> None:
    """Erase every clear copy of ADDRESS, its name, IPs and user agents (right to erasure).

    The suppression entries (hashes) and a pseudonymous trail stay; later sends are skipped
    `erased`. Cannot be undone.

    \b
    Example:
      mailer subject erase marie@example.com --yes --note "ticket 4525"
    """
    from mailer.rights import erasure

    if not yes:
        click.confirm("Erase everything held on this address, for good?", abort=True)
    with session_scope() as session:
        done = erasure.erase(session, address, source=source, note=note, operator=operator())
        if done.recipient_id is None and not (done.provider_events or done.webhook_batches or done.tenders):
            raise InvalidInput("nothing is held on that address")  # nothing recorded either
    console.print(
        "erased: "
        + ", ".join(
            [
                f"recipient {done.recipient_id}" if done.recipient_id is not None else "no recipient",
                f"{done.consent_events} consent proofs",
                f"{done.provider_events} provider events",
                f"{done.webhook_batches} webhook bodies",
                f"{done.outbox_files} outbox files",
                f"{done.tenders} tender contacts",
            ]
        )
    )
