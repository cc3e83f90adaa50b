"""One campaign batch through the delivery pipeline, paced, with the campaign's rules around it.

A batch: open it (the campaign must be running), wait for the pace, run the delivery pipeline
(claim send keys, one gate query, render once per locale, one SendGrid request per locale group,
record in bulk), then settle: 429 holds the campaign, a refused API key or too many failures in a
row pause it, and finished batches release the next ones and feed the complaint breaker.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from mailer import delivery
from mailer.batch import BatchSpec
from mailer.campaigns import breaker, fanout, lifecycle, partners
from mailer.campaigns.composer import KIND
from mailer.campaigns.models import (
    FINISHED_BATCH_STATES,
    BatchState,
    Campaign,
    CampaignBatch,
    CampaignState,
    PauseCause,
    belongs_to,
)
from mailer.campaigns.pacing import get_pacer
from mailer.config import get_settings
from mailer.db import session_scope, utcnow
from mailer.delivery import BatchOutcome
from mailer.message import OutgoingMessage
from mailer.providers import Backend, KeyRefused, TransientSendError, get_backend

log = logging.getLogger(__name__)

#: Backoff of a batch after a transient failure (5xx, SendGrid unreachable): doubles from 10 s to
#: 10 min. The campaign's error budget, not a retry count, decides when to stop and pause.
MIN_BACKOFF_MS = 10_000
MAX_BACKOFF_MS = 600_000


@dataclass
class Step:
    """What the actor does after a pass: send this batch again later, and queue these batches."""

    again_in_ms: int | None = None
    release: list[int] = field(default_factory=list)
    outcome: BatchOutcome | None = None


#: Requests of up to 1000 personalizations a process builds and sends at once. Each holds a few
#: megabytes of payload while it is built and written; more threads than this wait their turn
#: (their database work goes on), which keeps a worker process under 150 MB.
MAX_CONCURRENT_REQUESTS = 4
_request_slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)


class CampaignBackend(Backend):
    """The configured backend, with a refused API key turned into a pause instead of failures."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.label = inner.label
        self.limits = inner.limits
        #: Why the campaign must pause, once the provider refused the API key.
        self.refused: str | None = None

    def send(self, message: OutgoingMessage) -> str:
        try:
            with _request_slots:
                return self.inner.send(message)
        except KeyRefused as error:
            # Not the recipients' fault: transient for the pipeline, so their sends go back to
            # pending; the batch's settling pauses the campaign on ``refused``.
            self.refused = f"{self.label} refused the API key ({error.detail})"
            raise TransientSendError(error.detail, status_code=error.status_code) from error


@dataclass(frozen=True)
class Opened:
    batch_id: int
    campaign_id: int
    purpose: str
    spec: BatchSpec
    size: int
    attempts: int


def run(batch_id: int, *, backend: Backend | None = None) -> Step:
    """One pass over a batch; safe to run twice, or on two workers at once."""
    now = utcnow()
    settings = get_settings()
    lease = dt.timedelta(seconds=settings.campaign_batch_lease_seconds)
    with session_scope() as session:
        opened, step = _open(session, batch_id, now, lease)
    if opened is None:
        return step

    pacer = get_pacer()
    if not pacer.acquire(opened.size):
        # Waiting for the pace is not a failed attempt: the error budget must not count it.
        delay = pacer.retry_delay_ms()
        _requeue(batch_id, delay, lease, attempts=CampaignBatch.attempts - 1)
        return Step(again_in_ms=delay)

    wrapped = CampaignBackend(backend or get_backend())
    try:
        # The campaign sweep runs a batch again until it is done: its keys may be recorded when
        # first decided (two row versions a send, mailer/claims.py).
        outcome = delivery.deliver_batch(opened.spec, backend=wrapped, reserve_ids=True)
    except Exception as error:
        with session_scope() as session:
            session.execute(
                sa.update(CampaignBatch)
                .where(CampaignBatch.id == batch_id)
                .values(last_error=repr(error)[:2000])
            )
        raise
    with session_scope() as session:
        step = _settle(session, opened, outcome, wrapped.refused, lease)
        step.outcome = outcome
    if outcome.sent and _breaker_due(opened.purpose):
        # Its own short transaction: pausing locks the campaign row, the batches must not wait on it.
        with session_scope() as session:
            breaker.check(session, opened.purpose)
    log.info(
        "campaign %d batch %d: %d sent, %d skipped, %d failed, %d unknown, %d already done",
        opened.campaign_id,
        batch_id,
        outcome.sent,
        sum(outcome.skipped.values()),
        outcome.failed,
        outcome.unknown,
        outcome.already_done,
    )
    return step


def _open(
    session: sa.orm.Session, batch_id: int, now: dt.datetime, lease: dt.timedelta
) -> tuple[Opened | None, Step]:
    row = session.execute(
        sa.select(CampaignBatch, Campaign)
        .join(Campaign, Campaign.id == CampaignBatch.campaign_id)
        .where(CampaignBatch.id == batch_id)
    ).one_or_none()
    if row is None:
        log.warning("campaign batch %d does not exist", batch_id)
        return None, Step()
    batch, campaign = row[0], row[1]
    if batch.state in FINISHED_BATCH_STATES:
        return None, Step()
    if campaign.state == CampaignState.CANCELLED:
        fanout.cancel_batch(session, batch_id, now=now)
        return None, Step()
    if campaign.state != CampaignState.RUNNING:
        # Paused (or not started): the batch waits, pending, for resume to queue it again.
        _set(session, batch_id, [BatchState.QUEUED, BatchState.RUNNING], state=BatchState.PENDING)
        return None, Step()
    if campaign.held_until is not None and campaign.held_until > now:
        delay = campaign.held_until - now
        _set(
            session,
            batch_id,
            [BatchState.QUEUED, BatchState.RUNNING, BatchState.PENDING],
            state=BatchState.QUEUED,
            lease_until=campaign.held_until + lease,
        )
        return None, Step(again_in_ms=max(1, int(delay.total_seconds() * 1000)))
    if not _set(
        session,
        batch_id,
        [BatchState.QUEUED, BatchState.RUNNING, BatchState.PENDING],
        state=BatchState.RUNNING,
        started_at=now,
        lease_until=now + lease,
        attempts=CampaignBatch.attempts + 1,
    ):
        return None, Step()
    versions = partners.covering_versions(session, campaign.partner) if campaign.partner else None
    spec = BatchSpec(
        KIND,
        campaign.purpose,
        belongs_to(campaign.id),
        tuple(batch.recipient_ids),
        versions,
        campaign_id=campaign.id,
    )
    return Opened(batch_id, campaign.id, campaign.purpose, spec, batch.size, batch.attempts + 1), Step()


def _set(session: sa.orm.Session, batch_id: int, from_states: list[BatchState], **values: object) -> bool:
    result = session.execute(
        sa.update(CampaignBatch)
        .where(CampaignBatch.id == batch_id, CampaignBatch.state.in_(from_states))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _requeue(batch_id: int, delay_ms: int, lease: dt.timedelta, **values: object) -> None:
    with session_scope() as session:
        _set(
            session,
            batch_id,
            [BatchState.RUNNING],
            state=BatchState.QUEUED,
            lease_until=utcnow() + dt.timedelta(milliseconds=delay_ms) + lease,
            **values,
        )


def _settle(
    session: sa.orm.Session, opened: Opened, outcome: BatchOutcome, refused: str | None, lease: dt.timedelta
) -> Step:
    now = utcnow()
    settings = get_settings()
    batch_id = opened.batch_id
    campaign_id = opened.campaign_id
    if outcome.retry:
        campaign = lifecycle.get(session, campaign_id)
        if campaign.state == CampaignState.CANCELLED:
            # Cancelled while these were in flight; SendGrid did not take them: they go nowhere.
            fanout.skip_pending_as_cancelled(session, campaign, list(opened.spec.recipient_ids), now=now)
            fanout.cancel_batch(session, batch_id, now=now)
            return Step()
        if refused is not None:
            lifecycle.pause(
                session,
                campaign_id,
                reason=f"{refused}; nothing failed: fix the key, then resume",
                by=PauseCause.ERROR_BUDGET,
                now=now,
            )
            _set(session, batch_id, [BatchState.RUNNING], state=BatchState.PENDING, last_error=refused)
            return Step()
        if outcome.retry_after_ms is not None:
            # 429: SendGrid asks every sender of this account to wait; hold the whole campaign.
            until = now + dt.timedelta(milliseconds=outcome.retry_after_ms)
            session.execute(
                sa.update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(
                    held_until=sa.case(
                        (sa.or_(Campaign.held_until.is_(None), Campaign.held_until < until), until),
                        else_=Campaign.held_until,
                    ),
                    rate_limited=Campaign.rate_limited + 1,
                )
                .execution_options(synchronize_session=False)
            )
            _set(
                session,
                batch_id,
                [BatchState.RUNNING],
                state=BatchState.QUEUED,
                lease_until=until + lease,
                last_error=outcome.last_error,
            )
            return Step(again_in_ms=outcome.retry_after_ms)
        put_back = (
            outcome.claimed - outcome.sent - sum(outcome.skipped.values()) - outcome.failed - outcome.unknown
        )
        if _count_failures(
            session,
            campaign_id,
            put_back + outcome.failed + outcome.unknown,
            reset=False,
            last_error=outcome.last_error,
            now=now,
        ):
            _set(
                session,
                batch_id,
                [BatchState.RUNNING],
                state=BatchState.PENDING,
                last_error=outcome.last_error,
            )
            return Step()
        delay = min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** max(0, opened.attempts - 1))
        _set(
            session,
            batch_id,
            [BatchState.RUNNING],
            state=BatchState.QUEUED,
            lease_until=now + dt.timedelta(milliseconds=delay) + lease,
            last_error=outcome.last_error,
        )
        return Step(again_in_ms=delay)

    _set(
        session,
        batch_id,
        [BatchState.RUNNING, BatchState.QUEUED, BatchState.PENDING],
        state=BatchState.DONE,
        finished_at=now,
        last_error=outcome.last_error,
    )
    _count_failures(
        session,
        campaign_id,
        outcome.failed + outcome.unknown,
        reset=outcome.sent > 0,
        last_error=outcome.last_error,
        now=now,
    )
    released = fanout.release(session, campaign_id, now=now, limit=settings.campaign_batches_in_flight)
    fanout.complete_if_done(session, campaign_id, now=now)
    return Step(release=released)


#: Seconds between two complaint-breaker checks by finishing batches of one purpose, per process
#: (the code applying provider events checks at every complaint or bounce).
BREAKER_CHECK_INTERVAL = 2.0
_breaker_checked: dict[str, float] = {}
_breaker_lock = threading.Lock()


def _breaker_due(purpose: str) -> bool:
    now = time.monotonic()
    with _breaker_lock:
        if now - _breaker_checked.get(purpose, -BREAKER_CHECK_INTERVAL) < BREAKER_CHECK_INTERVAL:
            return False
        _breaker_checked[purpose] = now
        return True


def _count_failures(
    session: sa.orm.Session,
    campaign_id: int,
    failures: int,
    *,
    reset: bool,
    last_error: str | None,
    now: dt.datetime,
) -> bool:
    """Add to the campaign's failures in a row; pause it past the error budget. True when paused."""
    if failures == 0 and not reset:
        return False
    new_value = sa.literal(failures) if reset else Campaign.consecutive_failures + failures
    # The campaign row is shared by every batch: leave it unlocked when nothing changes.
    unchanged = Campaign.consecutive_failures != failures if reset else sa.true()
    count = session.scalar(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, unchanged)
        .values(consecutive_failures=new_value)
        .returning(Campaign.consecutive_failures)
    )
    budget = get_settings().campaign_error_budget
    if count is not None and count >= budget:
        return lifecycle.pause(
            session,
            campaign_id,
            reason=f"{count:,} failed sends in a row (error budget {budget:,}); last error: {last_error}",
            by=PauseCause.ERROR_BUDGET,
            now=now,
        )
    return False
