"""What the marketing team does to a campaign: one function per ``mailer campaign`` command.

Each joins what a command needs (the lifecycle, the audience, the composer, the delivery pipeline
for test sends) in one call. None sends a broker message: ``queue`` and ``resume`` return the
batches to queue, or the time a start message is due, and the caller sends them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from mailer import delivery, recipients
from mailer.batch import BatchSpec
from mailer.campaigns import audience, composer, content, fanout, lifecycle, partners
from mailer.db import session_scope, utcnow
from mailer.models import Delivery, Recipient
from mailer.suppression.tokens import preferences_url, unsubscribe_url

#: The name a preview without a recipient greets.
SAMPLE_NAME = "Marie Dupont"


@dataclass(frozen=True)
class Created:
    """A campaign just created, its locales, and how many recipients its audience holds today."""

    campaign_id: int
    locales: list[str]
    audience_today: int


def create(
    *,
    name: str,
    purpose: str,
    content_dir: Path,
    partner: str | None = None,
    partner_list_version: str | None = None,
    audience_expression: str | None = None,
    send_at: dt.datetime | None = None,
    created_by: str | None = None,
) -> Created:
    """Create a campaign from a content folder (checked now, not mid-send) and size its audience."""
    contents = content.read_content_dir(content_dir)
    with session_scope() as session:
        created = lifecycle.create(
            session,
            name=name,
            purpose=purpose,
            contents=contents,
            partner=partner,
            partner_list_version=partner_list_version,
            audience_expression=audience_expression,
            send_at=send_at,
            created_by=created_by,
        )
        versions = partners.covering_versions(session, created.partner) if created.partner else None
        size = audience.count(session, purpose, created.audience, partner_list_versions=versions)
        return Created(created.id, sorted(contents), size)


@dataclass(frozen=True)
class Preview:
    """The files a preview wrote, and the locale shown (French when the one asked for is missing)."""

    locale: str
    subject: str
    html_path: Path
    text_path: Path


def preview(campaign_id: int, *, locale: str, address: str | None, output: Path) -> Preview:
    """Render a campaign as a recipient gets it (a sample one without ``address``); write its parts.

    With ``address``, the recipient's own locale, name and links are used, ``locale`` ignored.
    """
    with session_scope(readonly=True) as session:
        snapshot = composer.load(session, campaign_id)
        if address is not None:
            person = recipients.get(session, address)
            shown = composer.content_locale(snapshot, person.locale)
            values = content.recipient_values(
                shown, person.name, unsubscribe_url(person.id, snapshot.purpose), preferences_url(person.id)
            )
        else:
            shown = composer.content_locale(snapshot, locale)
            values = content.sample_values(shown, SAMPLE_NAME)
    subject, text, html = composer.rendered(snapshot, shown).as_received(values)
    output.mkdir(parents=True, exist_ok=True)
    stem = output / f"campaign-{campaign_id}-{shown}"
    html_path, text_path = stem.with_suffix(".html"), stem.with_suffix(".txt")
    html_path.write_text(html, encoding="utf-8")
    text_path.write_text(f"Subject: {subject}\n\n{text}", encoding="utf-8")
    return Preview(shown, subject, html_path, text_path)


@dataclass(frozen=True)
class SeedOutcome:
    """What became of one seed's test send: its state, and the skip reason or error if any."""

    #: None when the seed's account was erased meanwhile.
    address: str | None
    state: str
    detail: str | None


def test_send(campaign_id: int, addresses: list[str]) -> list[SeedOutcome]:
    """Send the campaign now to seed recipients, through the gate, never counted in the campaign."""
    with session_scope(readonly=True) as session:
        campaign = lifecycle.get(session, campaign_id)
        ids = [recipients.get(session, a).id for a in addresses]
        versions = partners.covering_versions(session, campaign.partner) if campaign.partner else None
        purpose = campaign.purpose
    belongs_to = f"{composer.TEST_PREFIX}{campaign_id}:{uuid.uuid4().hex[:12]}"
    seeds = tuple(dict.fromkeys(ids))
    delivery.deliver_now(
        BatchSpec(composer.KIND, purpose, belongs_to, seeds, versions, campaign_id=campaign_id)
    )
    with session_scope(readonly=True) as session:
        rows = session.execute(
            sa.select(Recipient.address, Delivery.state, Delivery.skip_reason, Delivery.error)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(Delivery.purpose == purpose, Delivery.belongs_to == belongs_to)
            .order_by(Recipient.address)
        ).all()
    return [SeedOutcome(address, state.value, reason or error) for address, state, reason, error in rows]


@dataclass(frozen=True)
class Going:
    """What ``queue`` or ``resume`` leaves to the caller: batch messages to send now, or a start
    message due at ``start_at`` (the campaign waits for its send time)."""

    batches: list[int] = field(default_factory=list)
    start_at: dt.datetime | None = None
    #: ``resume``: the campaign had started before its pause; its batches go on.
    continued: bool = False
    recipients_total: int = 0
    batches_total: int = 0


def queue(campaign_id: int, *, now: dt.datetime | None = None) -> Going:
    """Queue a draft: started now when due (its audience resolved into batches), else at its time."""
    with session_scope() as session:
        queued = lifecycle.queue(session, campaign_id, now=now)
        due, send_at = lifecycle.is_due(queued, now), queued.send_at
    if not due and send_at is not None:
        return Going(start_at=send_at)
    return _started(campaign_id, now)


def resume(campaign_id: int, *, force: bool = False, now: dt.datetime | None = None) -> Going:
    """Resume a paused campaign where it stopped; one paused before it started waits for its time."""
    with session_scope() as session:
        if lifecycle.resume(session, campaign_id, force=force):
            released = fanout.release(session, campaign_id, now=now)
            fanout.complete_if_done(session, campaign_id, now=now)
            return Going(batches=released, continued=True)
    with session_scope(readonly=True) as session:
        again = lifecycle.get(session, campaign_id)
        due, send_at = lifecycle.is_due(again, now), again.send_at
    if not due and send_at is not None:
        return Going(start_at=send_at)
    return _started(campaign_id, now)


def _started(campaign_id: int, now: dt.datetime | None) -> Going:
    released = fanout.start(campaign_id, now=now)
    with session_scope(readonly=True) as session:
        started = lifecycle.get(session, campaign_id)
        return Going(
            batches=released, recipients_total=started.recipients_total, batches_total=started.batches_total
        )


def cancel(campaign_id: int, *, operator: str, progress: Callable[[int], None] | None = None) -> int:
    """Cancel a campaign for good; its recipients not yet sent to are recorded skipped. Returns the
    batches closed."""
    with session_scope() as session:
        lifecycle.cancel(session, campaign_id, operator=operator)
    return fanout.close_cancelled_batches(campaign_id, progress=progress)


def start_delay_ms(start_at: dt.datetime, now: dt.datetime | None = None) -> int:
    """How long a start message waits for ``start_at`` (0 when the time has come)."""
    return max(0, int((start_at - (now or utcnow())).total_seconds() * 1000))
