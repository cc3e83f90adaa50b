"""A campaign's fan-out: its audience cut into batches, released a few at a time, and swept.

Starting resolves the audience once into ``campaign_batches`` rows; a few batches are in flight
at a time (queued in the broker or on a worker), each finishing batch releases the next ones, and
the last completes the campaign. The sweep starts campaigns whose time came, queues again batches
lost with the broker, closes those of cancelled campaigns and pauses a campaign whose batch keeps
failing. Every step is a conditional UPDATE on a state, so two workers, or a worker and the sweep,
never both act on it. Functions here return the batch ids to queue; the caller sends the messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import claims
from mailer.batch import MAX_BATCH_SIZE, BatchSpec
from mailer.campaigns import audience
from mailer.campaigns.composer import KIND
from mailer.campaigns.lifecycle import get, pause
from mailer.campaigns.models import (
    FINISHED_BATCH_STATES,
    IN_FLIGHT_BATCH_STATES,
    BatchState,
    Campaign,
    CampaignBatch,
    CampaignState,
    PauseCause,
    belongs_to,
)
from mailer.campaigns.partners import covering_versions
from mailer.config import get_settings
from mailer.db import id_in, in_chunks, session_scope, state_is, utcnow
from mailer.models import Delivery, DeliveryState

#: Skip reason of the recipients a cancelled campaign never sent to.
CAMPAIGN_CANCELLED = "campaign_cancelled"
#: A batch that failed this many times for an unexpected reason pauses its campaign.
MAX_BATCH_ATTEMPTS = 10


def start(campaign_id: int, *, now: dt.datetime | None = None) -> list[int]:
    """Resolve the audience of a due scheduled campaign into batches; returns the batches to queue.

    Does nothing (returns []) when the campaign is not scheduled, not due, or already started.
    """
    now = now or utcnow()
    settings = get_settings()
    with session_scope() as session:
        taken = session.execute(
            sa.update(Campaign)
            .where(
                Campaign.id == campaign_id,
                Campaign.state == CampaignState.SCHEDULED,
                sa.or_(Campaign.send_at.is_(None), Campaign.send_at <= now),
            )
            .values(state=CampaignState.RUNNING, started_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not taken:
            return []
        campaign = get(session, campaign_id)
        versions = covering_versions(session, campaign.partner) if campaign.partner else None
        members = audience.resolve(
            session, campaign.purpose, campaign.audience, partner_list_versions=versions
        )
        ids = [rid for rid, _ in members]
        rows = [
            {
                "campaign_id": campaign_id,
                "number": number,
                "state": BatchState.PENDING,
                "recipient_ids": chunk,
                "size": len(chunk),
                "attempts": 0,
            }
            for number, chunk in enumerate(in_chunks(ids, min(MAX_BATCH_SIZE, settings.campaign_batch_size)))
        ]
        for chunk in in_chunks(rows, 200):
            session.execute(sa.insert(CampaignBatch), chunk)
        campaign.recipients_total = len(ids)
        campaign.batches_total = len(rows)
        session.flush()
        released = release(session, campaign_id, now=now, limit=settings.campaign_batches_in_flight)
        complete_if_done(session, campaign_id, now=now)
        return released


def release(
    session: Session, campaign_id: int, *, now: dt.datetime | None = None, limit: int | None = None
) -> list[int]:
    """Mark the next pending batches queued, keeping ``limit`` in flight; returns them to be sent."""
    now = now or utcnow()
    settings = get_settings()
    limit = settings.campaign_batches_in_flight if limit is None else limit
    state = session.scalar(sa.select(Campaign.state).where(Campaign.id == campaign_id))
    if state != CampaignState.RUNNING:
        return []
    in_flight = session.scalar(
        sa.select(sa.func.count())
        .select_from(CampaignBatch)
        .where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.state.in_(IN_FLIGHT_BATCH_STATES))
    )
    room = limit - int(in_flight or 0)
    if room <= 0:
        return []
    candidates = list(
        session.scalars(
            sa.select(CampaignBatch.id)
            .where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.state == BatchState.PENDING)
            .order_by(CampaignBatch.number)
            .limit(room)
        )
    )
    if not candidates:
        return []
    # The state condition again: another worker releasing at the same time gets the others.
    return sorted(
        session.scalars(
            sa.update(CampaignBatch)
            .where(CampaignBatch.id.in_(candidates), CampaignBatch.state == BatchState.PENDING)
            .values(
                state=BatchState.QUEUED,
                lease_until=now + dt.timedelta(seconds=settings.campaign_batch_lease_seconds),
            )
            .returning(CampaignBatch.id)
        )
    )


def complete_if_done(session: Session, campaign_id: int, *, now: dt.datetime | None = None) -> bool:
    """A running campaign with no batch left to send is completed."""
    left = sa.exists().where(
        CampaignBatch.campaign_id == campaign_id, CampaignBatch.state.not_in(FINISHED_BATCH_STATES)
    )
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state == CampaignState.RUNNING, ~left)
        .values(state=CampaignState.COMPLETED, finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def close_cancelled_batches(campaign_id: int, *, progress: Callable[[int], None] | None = None) -> int:
    """Record the unsent recipients of a cancelled campaign's open batches, one batch a transaction."""
    with session_scope(readonly=True) as session:
        open_ids = list(
            session.scalars(
                sa.select(CampaignBatch.id)
                .where(
                    CampaignBatch.campaign_id == campaign_id,
                    CampaignBatch.state.not_in(FINISHED_BATCH_STATES),
                )
                .order_by(CampaignBatch.number)
            )
        )
    for batch_id in open_ids:
        with session_scope() as session:
            cancel_batch(session, batch_id)
        if progress is not None:
            progress(1)
    return len(open_ids)


def skip_pending_as_cancelled(
    session: Session, campaign: Campaign, recipient_ids: list[int], *, now: dt.datetime
) -> int:
    """Record a cancelled campaign's still-pending sends among these recipients as skipped."""
    result = session.execute(
        sa.update(Delivery)
        .where(
            Delivery.purpose == campaign.purpose,
            Delivery.belongs_to == belongs_to(campaign.id),
            id_in(session, Delivery.recipient_id, recipient_ids),
            state_is(Delivery.state, DeliveryState.PENDING),
        )
        .values(state=DeliveryState.SKIPPED, skip_reason=CAMPAIGN_CANCELLED, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def cancel_batch(session: Session, batch_id: int, *, now: dt.datetime | None = None) -> int:
    """Every recipient of a batch without a delivery record gets one, skipped; pending sends too."""
    now = now or utcnow()
    batch = session.get(CampaignBatch, batch_id)
    if batch is None or batch.state in FINISHED_BATCH_STATES:
        return 0
    campaign = get(session, batch.campaign_id)
    key = belongs_to(campaign.id)
    ids = list(batch.recipient_ids)
    claims.insert_missing(
        session,
        BatchSpec(KIND, campaign.purpose, key, tuple(ids), campaign_id=campaign.id),
        DeliveryState.SKIPPED,
        skip_reason=CAMPAIGN_CANCELLED,
        created_at=now,
        finished_at=now,
    )
    # Claimed but not yet in flight: a worker still on this batch cannot take them any more.
    skip_pending_as_cancelled(session, campaign, ids, now=now)
    session.execute(
        sa.update(CampaignBatch)
        .where(CampaignBatch.id == batch_id, CampaignBatch.state.not_in(FINISHED_BATCH_STATES))
        .values(state=BatchState.CANCELLED, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


# -- sweep


@dataclass
class SweepResult:
    """What a sweep found; ``requeue`` are batch ids whose messages must be sent (again)."""

    started: list[int] = field(default_factory=list)
    requeue: list[int] = field(default_factory=list)
    lost: int = 0
    completed: list[int] = field(default_factory=list)
    cancelled_batches: int = 0
    paused: list[int] = field(default_factory=list)


def sweep(now: dt.datetime | None = None) -> SweepResult:
    """Start due campaigns, re-queue batches lost with the broker, close cancelled ones, complete.

    A queued or running batch whose lease ran out has no live message any more (Redis flushed or
    restarted, a worker killed): it is queued again. Its sends already claimed are never sent
    twice: the pending->sending transition lets one worker only take each.
    """
    now = now or utcnow()
    settings = get_settings()
    result = SweepResult()
    with session_scope(readonly=True) as session:
        campaigns = session.execute(
            sa.select(Campaign.id, Campaign.state, Campaign.send_at).where(
                Campaign.state.not_in([CampaignState.DRAFT, CampaignState.COMPLETED])
            )
        ).all()
    lease = dt.timedelta(seconds=settings.campaign_batch_lease_seconds)
    for campaign_id, state, send_at in campaigns:
        if state == CampaignState.SCHEDULED and (send_at is None or send_at <= now):
            released = start(campaign_id, now=now)
            result.started.append(campaign_id)
            result.requeue.extend(released)
        elif state == CampaignState.CANCELLED:
            result.cancelled_batches += close_cancelled_batches(campaign_id)
        elif state in (CampaignState.RUNNING, CampaignState.PAUSED):
            with session_scope() as session:
                stuck = session.execute(
                    sa.select(CampaignBatch.number, CampaignBatch.last_error).where(
                        CampaignBatch.campaign_id == campaign_id,
                        CampaignBatch.state.not_in(FINISHED_BATCH_STATES),
                        CampaignBatch.attempts >= MAX_BATCH_ATTEMPTS,
                    )
                ).first()
                if stuck is not None and pause(
                    session,
                    campaign_id,
                    reason=f"batch {stuck.number} failed {MAX_BATCH_ATTEMPTS} times: {stuck.last_error}",
                    by=PauseCause.ERROR_BUDGET,
                    now=now,
                ):
                    result.paused.append(campaign_id)
                    state = CampaignState.PAUSED
                lost_filter = (
                    CampaignBatch.campaign_id == campaign_id,
                    CampaignBatch.state.in_(IN_FLIGHT_BATCH_STATES),
                    CampaignBatch.lease_until < now,
                )
                if state == CampaignState.RUNNING:
                    lost = list(
                        session.scalars(
                            sa.update(CampaignBatch)
                            .where(*lost_filter)
                            .values(state=BatchState.QUEUED, lease_until=now + lease)
                            .returning(CampaignBatch.id)
                        )
                    )
                    result.lost += len(lost)
                    result.requeue.extend(sorted(lost))
                    result.requeue.extend(release(session, campaign_id, now=now))
                    if complete_if_done(session, campaign_id, now=now):
                        result.completed.append(campaign_id)
                else:
                    # Paused: a lost batch waits, pending, for resume to queue it.
                    session.execute(
                        sa.update(CampaignBatch)
                        .where(*lost_filter)
                        .values(state=BatchState.PENDING)
                        .execution_options(synchronize_session=False)
                    )
    return result
