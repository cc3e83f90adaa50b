"""A campaign's life: create, queue, start (audience into batches), pause, resume, cancel, sweep.

Every transition is a conditional UPDATE on the campaign's state, so two operators, two workers
or a worker and the sweep never both act on it. Services here return the batch ids to queue; the
caller (an actor or the CLI) sends the messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import claims
from mailer.batch import MAX_BATCH_SIZE, BatchSpec
from mailer.campaigns import audience, breaker
from mailer.campaigns.composer import KIND
from mailer.campaigns.content import LocaleContent, check_content
from mailer.campaigns.models import (
    FINISHED_BATCH_STATES,
    FINISHED_CAMPAIGN_STATES,
    IN_FLIGHT_BATCH_STATES,
    BatchState,
    Campaign,
    CampaignBatch,
    CampaignContent,
    CampaignState,
    PartnerList,
    PauseCause,
    belongs_to,
)
from mailer.campaigns.partners import covering_versions, partner_lists
from mailer.config import get_settings
from mailer.db import id_in, in_chunks, session_scope, state_is, utcnow
from mailer.errors import InvalidInput, NotFound, WrongCampaignState
from mailer.models import Delivery, DeliveryState
from mailer.purposes import get_purpose

#: Skip reason of the recipients a cancelled campaign never sent to.
CAMPAIGN_CANCELLED = "campaign_cancelled"
#: A batch that failed this many times for an unexpected reason pauses its campaign.
MAX_BATCH_ATTEMPTS = 10


# -- create and queue


def create(
    session: Session,
    *,
    name: str,
    purpose: str,
    contents: Mapping[str, LocaleContent],
    partner: str | None = None,
    partner_list_version: str | None = None,
    audience_expression: str | None = None,
    send_at: dt.datetime | None = None,
    created_by: str | None = None,
) -> Campaign:
    """Record a campaign after checking everything that could fail later (content, audience, partner)."""
    kind = get_purpose(purpose)
    if not kind.marketing:
        raise InvalidInput(
            f"campaigns are marketing mail: purpose must be nouma_offers or partner_offers, not {purpose}"
        )
    if not name.strip():
        raise InvalidInput("a campaign needs a name")
    if kind.needs_partner_list:
        if not partner or not partner.strip():
            raise InvalidInput("a partner_offers campaign must name its partner (--partner)")
        partner = partner.strip()
        versions = covering_versions(session, partner)
        if partner_list_version is None:
            if not versions:
                raise InvalidInput(
                    f"no partner list names {partner!r}: record the list shown at consent first "
                    "(mailer campaign partner-list add)"
                )
            latest = max(
                (p for p in partner_lists(session) if p.version in versions),
                key=lambda p: (p.created_at, p.version),
            )
            partner_list_version = latest.version
        elif partner_list_version not in versions:
            raise InvalidInput(
                f"partner list {partner_list_version!r} does not exist or does not name {partner!r}"
            )
        # The partner as the consent form spells it.
        named = session.get(PartnerList, partner_list_version)
        assert named is not None
        partner = next(n for n in named.partners if n.strip().casefold() == partner.casefold())
    elif partner or partner_list_version:
        raise InvalidInput("--partner is for partner_offers campaigns only")
    if audience_expression is not None:
        audience_expression = audience_expression.strip() or None
    if audience_expression:
        audience.parse(audience_expression)
    if send_at is not None and send_at.tzinfo is None:
        raise InvalidInput("--send-at needs a time zone")
    check_content(contents, purpose=purpose, partner=partner, campaign_name=name.strip())
    campaign = Campaign(
        name=name.strip(),
        purpose=purpose,
        partner=partner,
        partner_list_version=partner_list_version,
        audience=audience_expression,
        send_at=send_at,
        created_by=created_by,
        state=CampaignState.DRAFT,
    )
    session.add(campaign)
    session.flush()
    for content in contents.values():
        session.add(
            CampaignContent(
                campaign_id=campaign.id,
                locale=content.locale,
                subject=content.subject,
                body_html=content.body_html,
                body_text=content.body_text,
            )
        )
    session.flush()
    return campaign


def get(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def _transition(
    session: Session, campaign_id: int, from_states: Sequence[CampaignState], **values: object
) -> bool:
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state.in_(list(from_states)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def queue(session: Session, campaign_id: int, *, now: dt.datetime | None = None) -> Campaign:
    """Queue a draft: it starts at its send time (now when it has none); see ``start``."""
    now = now or utcnow()
    campaign = get(session, campaign_id)
    if not _transition(
        session, campaign_id, [CampaignState.DRAFT], state=CampaignState.SCHEDULED, queued_at=now
    ):
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: only a draft can be queued"
        )
    session.refresh(campaign)
    return campaign


def is_due(campaign: Campaign, now: dt.datetime | None = None) -> bool:
    return campaign.send_at is None or campaign.send_at <= (now or utcnow())


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


# -- pause, resume, cancel


def pause(
    session: Session,
    campaign_id: int,
    *,
    reason: str,
    by: PauseCause = PauseCause.OPERATOR,
    now: dt.datetime | None = None,
) -> bool:
    """Stop new batches from starting (those running finish); False when it was not running."""
    return _transition(
        session,
        campaign_id,
        [CampaignState.RUNNING, CampaignState.SCHEDULED],
        state=CampaignState.PAUSED,
        paused_at=now or utcnow(),
        paused_by=by,
        pause_reason=reason,
    )


def pause_by_operator(session: Session, campaign_id: int, *, operator: str) -> None:
    campaign = get(session, campaign_id)
    if not pause(session, campaign_id, reason=f"paused by {operator}"):
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: "
            "only a scheduled or running campaign can be paused"
        )


@dataclass
class Resumed:
    """What ``resume`` did: the batches to queue, or that the campaign waits for its send time."""

    release: list[int] = field(default_factory=list)
    started: bool = False


def resume(
    session: Session, campaign_id: int, *, force: bool = False, now: dt.datetime | None = None
) -> Resumed:
    """Continue a paused campaign where it stopped. A campaign paused before it started waits for its time.

    If the complaint breaker would pause it again at once, refuse unless ``force`` (the breaker
    then judges only deliveries made from now on).
    """
    now = now or utcnow()
    campaign = get(session, campaign_id)
    if campaign.state != CampaignState.PAUSED:
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: only a paused campaign resumes"
        )
    values: dict[str, object] = {
        "paused_at": None,
        "paused_by": None,
        "pause_reason": None,
        "consecutive_failures": 0,
    }
    verdict = breaker.rates(
        session, campaign.purpose, after_delivery_id=campaign.breaker_after_delivery_id
    ).verdict()
    if verdict is not None:
        if not force:
            raise WrongCampaignState(
                f"the complaint breaker still trips ({verdict}); resume --force to send anyway"
            )
        values["breaker_after_delivery_id"] = session.scalar(
            sa.select(sa.func.coalesce(sa.func.max(Delivery.id), 0))
        )
    started = campaign.started_at is not None
    values["state"] = CampaignState.RUNNING if started else CampaignState.SCHEDULED
    if not _transition(session, campaign_id, [CampaignState.PAUSED], **values):
        raise WrongCampaignState(f"campaign {campaign_id} changed state meanwhile; try again")
    if not started:
        return Resumed()
    released = release(session, campaign_id, now=now)
    complete_if_done(session, campaign_id, now=now)
    return Resumed(release=released, started=True)


def cancel(campaign_id: int, *, operator: str, progress: Callable[[int], None] | None = None) -> int:
    """Stop a campaign for good; recipients not yet sent to are recorded skipped. Returns batches closed."""
    with session_scope() as session:
        campaign = get(session, campaign_id)
        if not _transition(
            session,
            campaign_id,
            [CampaignState.DRAFT, CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.PAUSED],
            state=CampaignState.CANCELLED,
            finished_at=utcnow(),
            pause_reason=f"cancelled by {operator}",
        ):
            raise WrongCampaignState(
                f"campaign {campaign_id} is {campaign.state.value}: it cannot be cancelled"
            )
    return close_cancelled_batches(campaign_id, progress=progress)


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
        BatchSpec(KIND, campaign.purpose, key, tuple(ids)),
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


# -- status


@dataclass
class Status:
    """Where a campaign stands, for ``mailer campaign status``."""

    campaign: Campaign
    deliveries: dict[tuple[str, str | None], int]
    batches: dict[str, int]
    recipients_done: int
    rate_per_second: float
    seconds_left: float | None

    @property
    def recorded(self) -> int:
        return sum(self.deliveries.values())


#: Seconds over which the current rate is measured.
RATE_WINDOW_SECONDS = 60


def status(session: Session, campaign_id: int, *, now: dt.datetime | None = None) -> Status:
    now = now or utcnow()
    campaign = get(session, campaign_id)
    deliveries = {
        (str(state), reason): int(n)
        for state, reason, n in session.execute(
            sa.select(Delivery.state, Delivery.skip_reason, sa.func.count())
            .where(Delivery.purpose == campaign.purpose, Delivery.belongs_to == campaign.belongs_to)
            .group_by(Delivery.state, Delivery.skip_reason)
        )
    }
    batches = {
        str(state): int(n)
        for state, n in session.execute(
            sa.select(CampaignBatch.state, sa.func.count())
            .where(CampaignBatch.campaign_id == campaign_id)
            .group_by(CampaignBatch.state)
        )
    }
    done = int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CampaignBatch.size), 0)).where(
                CampaignBatch.campaign_id == campaign_id, CampaignBatch.state.in_(FINISHED_BATCH_STATES)
            )
        )
        or 0
    )
    since = now - dt.timedelta(seconds=RATE_WINDOW_SECONDS)
    recent = int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CampaignBatch.size), 0)).where(
                CampaignBatch.campaign_id == campaign_id,
                CampaignBatch.state == BatchState.DONE,
                CampaignBatch.finished_at >= since,
            )
        )
        or 0
    )
    elapsed = float(RATE_WINDOW_SECONDS)
    if campaign.started_at is not None:
        elapsed = max(1.0, min(RATE_WINDOW_SECONDS, (now - campaign.started_at).total_seconds()))
    rate = recent / elapsed if campaign.state == CampaignState.RUNNING else 0.0
    left = campaign.recipients_total - done
    seconds_left = left / rate if rate > 0 else None
    return Status(campaign, deliveries, batches, done, rate, seconds_left)


def listing(session: Session, *, limit: int = 50) -> list[Campaign]:
    return list(session.scalars(sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def finished(campaign: Campaign) -> bool:
    return campaign.state in FINISHED_CAMPAIGN_STATES
