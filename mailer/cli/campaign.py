"""``mailer campaign``: marketing campaigns, from writing to watching them go out."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from mailer.cli.base import console, console_err, mailer, operator
from mailer.config import SUPPORTED_LOCALES
from mailer.db import session_scope, utcnow
from mailer.errors import InvalidInput

#: A --send-at without a zone is read in the marketing team's zone.
LOCAL_ZONE = ZoneInfo("Europe/Paris")
#: Seconds between two refreshes of ``status --watch``.
WATCH_INTERVAL = 1.0


def _when(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a date and time such as 2026-12-01T09:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=LOCAL_ZONE)
    return when.astimezone(dt.UTC)


def _enqueue(batch_ids: list[int]) -> None:
    from mailer import actors
    from mailer.broker import embedded_worker

    with embedded_worker():
        actors.enqueue_campaign_batches(batch_ids)


def _start_later(campaign_id: int, start_at: dt.datetime) -> None:
    """A delayed start message (with Redis); the sweep starts it too, should the broker lose it."""
    from mailer import actors
    from mailer.campaigns.operations import start_delay_ms

    actors.start_campaign.send_with_options(args=(campaign_id,), delay=start_delay_ms(start_at))


@mailer.group()
def campaign() -> None:
    """Marketing campaigns (nouma_offers, partner_offers): write, preview, test, queue, watch."""


@campaign.command()
@click.option("--purpose", type=click.Choice(["nouma_offers", "partner_offers"]), required=True)
@click.option("--name", required=True, help="What the marketing team calls it (not shown to recipients).")
@click.option(
    "--content",
    "content_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="DIR/<locale>/{subject.txt,body.html,body.txt}; fr required, en optional.",
)
@click.option("--partner", help="partner_offers: the partner the offer is from.")
@click.option("--partner-list", "partner_list", help="Partner list version naming it (default: the latest).")
@click.option(
    "--audience", help='Narrow the audience, e.g. \'locale == "fr" and signed_up >= "2025-01-01"\'.'
)
@click.option("--send-at", help="Start at this time (ISO 8601; Europe/Paris when no zone is given).")
def create(
    purpose: str,
    name: str,
    content_dir: Path,
    partner: str | None,
    partner_list: str | None,
    audience: str | None,
    send_at: str | None,
) -> None:
    """Create a campaign from a content folder; its templates are checked now, not mid-send.

    The templates run in a sandbox with these variables: first_name, greeting, unsubscribe_url,
    preferences_url (per recipient), locale, partner_name, purpose_label, campaign_name. A
    syntax error, an unknown variable or an unsafe construct is refused with its file and line.
    Audience attributes: locale, time_zone, signed_up, consents, and department, region (the
    codes named by the recipient's active saved searches).

    \b
    Example:
      mailer campaign create --purpose nouma_offers --name "Offre de Noël" --content ./noel \\
        --audience 'locale == "fr"' --send-at 2026-12-01T09:00
      mailer campaign create --purpose partner_offers --partner Acme --name "Acme" --content ./acme
    """
    from mailer.campaigns import operations

    when = _when(send_at)
    if when is not None and when <= utcnow():
        raise click.BadParameter("is in the past", param_hint="--send-at")
    created = operations.create(
        name=name,
        purpose=purpose,
        content_dir=content_dir,
        partner=partner,
        partner_list_version=partner_list,
        audience_expression=audience,
        send_at=when,
        created_by=operator(),
    )
    cid = created.campaign_id
    console.print(
        f"campaign {cid} created ({', '.join(created.locales)}); about {created.audience_today:,} "
        "recipients today (resolved when it starts)"
    )
    console.print(f"next: mailer campaign preview {cid}; mailer campaign queue {cid}")


@campaign.command()
@click.argument("campaign_id", type=int)
@click.option("--locale", type=click.Choice(SUPPORTED_LOCALES), default="fr", show_default=True)
@click.option("--recipient", "address", help="Render with this recipient's own name and links.")
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("var/preview"),
    show_default=True,
    help="Folder the files are written to.",
)
def preview(campaign_id: int, locale: str, address: str | None, output: Path) -> None:
    """Render a campaign as a recipient gets it and write the HTML and text parts to files.

    \b
    Example:
      mailer campaign preview 12 --locale en --recipient marie@example.com
    """
    from mailer.campaigns import operations

    shown = operations.preview(campaign_id, locale=locale, address=address, output=output)
    if address is None and shown.locale != locale:
        console_err.print(f"no {locale} content: showing {shown.locale}")
    console.print(f"subject: {shown.subject}", markup=False)
    console.print(f"html: {shown.html_path}", markup=False)
    console.print(f"text: {shown.text_path}", markup=False)


@campaign.command(name="test")
@click.argument("campaign_id", type=int)
@click.option("--to", "addresses", multiple=True, required=True, help="A seed recipient (repeatable).")
def test_send(campaign_id: int, addresses: tuple[str, ...]) -> None:
    """Send the campaign now to a seed list, marked as a test and never counted in the campaign.

    Seeds are recipients like any other: the gate applies (consent, suppression, partner list).

    \b
    Example:
      mailer campaign test 12 --to marketing@example.com --to boss@example.com
    """
    from mailer.campaigns import operations

    for seed in operations.test_send(campaign_id, list(addresses)):
        detail = f" ({seed.detail})" if seed.detail else ""
        console.print(f"{seed.address}: {seed.state}{detail}", markup=False)


@campaign.command()
@click.argument("campaign_id", type=int)
def queue(campaign_id: int) -> None:
    """Queue a campaign: it starts now, or at its --send-at time; the audience is resolved then.

    With Redis, a delayed message starts it on time (the scheduler's sweep too, should Redis lose
    it); on the embedded default, `mailer scheduler` or `mailer campaign sweep` starts it once its
    time has come.

    \b
    Example:
      mailer campaign queue 12
    """
    from mailer.campaigns import operations

    going = operations.queue(campaign_id)
    if going.start_at is not None:
        _start_later(campaign_id, going.start_at)
        when = going.start_at.astimezone(LOCAL_ZONE)
        console.print(f"campaign {campaign_id} scheduled for {when:%Y-%m-%d %H:%M %Z}")
        return
    total, batches = going.recipients_total, going.batches_total
    console.print(f"campaign {campaign_id} started: {total:,} recipients in {batches:,} batches")
    _enqueue(going.batches)


def _status_table(st: object) -> Table:
    from mailer.campaigns.lifecycle import Status

    assert isinstance(st, Status)
    c = st.campaign
    table = Table("", "", show_header=False, box=None)
    table.add_row(
        "campaign", f"{c.id} {c.name!r} ({c.purpose}{', partner ' + c.partner if c.partner else ''})"
    )
    table.add_row("state", c.state.value + (f": {c.pause_reason}" if c.pause_reason else ""))
    if c.audience:
        table.add_row("audience", c.audience)
    table.add_row("recipients", f"{c.recipients_total:,} in {c.batches_total:,} batches")
    table.add_row("batches", ", ".join(f"{n:,} {s}" for s, n in sorted(st.batches.items())) or "none yet")
    for (state, reason), n in sorted(st.deliveries.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        table.add_row(f"  {state}" + (f" ({reason})" if reason else ""), f"{n:,}")
    table.add_row("rate", f"{st.rate_per_second:,.0f} recipients/s")
    if st.seconds_left is not None:
        table.add_row("time left", str(dt.timedelta(seconds=round(st.seconds_left))))
    if c.rate_limited:
        table.add_row("SendGrid 429", f"{c.rate_limited} (held until {c.held_until:%H:%M:%S} UTC)")
    return table


@campaign.command()
@click.argument("campaign_id", type=int)
@click.option("--watch", is_flag=True, help="Keep refreshing, with a progress bar, until it finishes.")
def status(campaign_id: int, watch: bool) -> None:
    """Show a campaign's deliveries by state and reason, its rate and the time left.

    \b
    Example:
      mailer campaign status 12 --watch
    """
    from mailer.campaigns import lifecycle

    def read() -> lifecycle.Status:
        with session_scope(readonly=True) as session:
            return lifecycle.status(session, campaign_id)

    current = read()
    if not watch:
        console.print(_status_table(current))
        return
    progress = Progress(
        TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}")
    )
    task = progress.add_task("", total=max(1, current.campaign.recipients_total), rate="")
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            progress.update(
                task,
                total=max(1, current.campaign.recipients_total),
                completed=current.recipients_done,
                rate=f"{current.rate_per_second:,.0f}/s",
            )
            live.update(Group(progress, _status_table(current)))
            if lifecycle.finished(current.campaign):
                break
            time.sleep(WATCH_INTERVAL)
            current = read()


@campaign.command()
@click.argument("campaign_id", type=int)
def pause(campaign_id: int) -> None:
    """Pause a campaign: no new batch starts; the batches being sent finish.

    \b
    Example:
      mailer campaign pause 12
    """
    from mailer.campaigns import lifecycle

    with session_scope() as session:
        lifecycle.pause_by_operator(session, campaign_id, operator=operator())
    console.print(f"campaign {campaign_id} paused")


@campaign.command()
@click.argument("campaign_id", type=int)
@click.option("--force", is_flag=True, help="Resume although the complaint breaker still trips.")
def resume(campaign_id: int, force: bool) -> None:
    """Resume a paused campaign where it stopped.

    \b
    Example:
      mailer campaign resume 12
    """
    from mailer.campaigns import operations

    going = operations.resume(campaign_id, force=force)
    if going.start_at is not None:
        _start_later(campaign_id, going.start_at)
        when = going.start_at.astimezone(LOCAL_ZONE)
        console.print(f"campaign {campaign_id} scheduled again for {when:%Y-%m-%d %H:%M %Z}")
        return
    _enqueue(going.batches)
    if going.continued:
        console.print(f"campaign {campaign_id} resumed ({len(going.batches)} batches queued)")
    else:
        console.print(f"campaign {campaign_id} resumed and started")


@campaign.command()
@click.argument("campaign_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def cancel(campaign_id: int, yes: bool) -> None:
    """Cancel a campaign for good; recipients not yet sent to are recorded skipped (campaign_cancelled).

    \b
    Example:
      mailer campaign cancel 12 --yes
    """
    from mailer.campaigns import lifecycle, operations

    with session_scope(readonly=True) as session:
        lifecycle.get(session, campaign_id)
    if not yes:
        click.confirm(f"Cancel campaign {campaign_id} for good?", abort=True)
    with Progress(console=console_err, transient=True) as progress:
        task = progress.add_task("recording the recipients not sent to", total=None)
        closed = operations.cancel(
            campaign_id, operator=operator(), progress=lambda n: progress.advance(task, n)
        )
    console.print(f"campaign {campaign_id} cancelled; {closed:,} batches closed")


@campaign.command(name="list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_(limit: int) -> None:
    """List campaigns, newest first.

    \b
    Example:
      mailer campaign list
    """
    from mailer.campaigns import lifecycle

    with session_scope(readonly=True) as session:
        rows = lifecycle.listing(session, limit=limit)
    table = Table("id", "name", "purpose", "partner", "state", "recipients", "send at", "created")
    for c in rows:
        table.add_row(
            str(c.id),
            c.name,
            c.purpose,
            c.partner or "",
            c.state.value + (f" ({c.paused_by.value})" if c.paused_by else ""),
            f"{c.recipients_total:,}",
            f"{c.send_at.astimezone(LOCAL_ZONE):%Y-%m-%d %H:%M}" if c.send_at else "",
            f"{c.created_at:%Y-%m-%d}",
        )
    console.print(table)


@campaign.command()
def sweep() -> None:
    """Start due campaigns, queue again batches lost with the broker, settle stale sends.

    Also runs the delivery sweep (sends left in flight by a dead process become unknown). The
    scheduler runs both regularly (MAILER_CAMPAIGN_SWEEP_SECONDS); run it by hand after an outage.

    \b
    Example:
      mailer campaign sweep
    """
    from mailer import actors, delivery
    from mailer.broker import embedded_worker
    from mailer.campaigns import fanout

    settled = delivery.sweep()
    result = fanout.sweep()
    with embedded_worker():
        actors.enqueue(settled.requeue)
        actors.enqueue_campaign_batches(result.requeue)
    console.print(
        f"{settled.marked_unknown} sends marked unknown; {len(result.started)} campaigns started, "
        f"{result.lost} lost batches queued again, {len(result.requeue)} batches queued, "
        f"{len(result.completed)} completed"
    )


@campaign.group(name="partner-list")
def partner_list() -> None:
    """The partner lists shown when people consent to partner offers, by version."""


@partner_list.command(name="add")
@click.argument("version")
@click.argument("partners", nargs=-1, required=True)
def partner_list_add(version: str, partners: tuple[str, ...]) -> None:
    """Record the PARTNERS named on the consent form under list VERSION (never changed after).

    A partner_offers consent covers a partner's campaign when the list version it was given
    for names that partner.

    \b
    Example:
      mailer campaign partner-list add 2026-11 Acme "Bâtiment Plus"
    """
    from mailer.campaigns import partners as partner_lists

    with session_scope() as session:
        entry = partner_lists.add_partner_list(session, version, list(partners), created_by=operator())
        console.print(f"partner list {entry.version}: {', '.join(entry.partners)}")


@partner_list.command(name="show")
def partner_list_show() -> None:
    """Show every partner list version and the partners it names.

    \b
    Example:
      mailer campaign partner-list show
    """
    from mailer.campaigns import partners as partner_lists

    with session_scope(readonly=True) as session:
        rows = partner_lists.partner_lists(session)
    if not rows:
        raise InvalidInput("no partner list recorded yet (mailer campaign partner-list add)")
    table = Table("version", "partners", "recorded")
    for p in rows:
        table.add_row(p.version, ", ".join(p.partners), f"{p.created_at:%Y-%m-%d}")
    console.print(table)
