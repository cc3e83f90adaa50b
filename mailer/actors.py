"""Dramatiq actors: thin, idempotent, taking ids only. Each states its retry policy."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage

from mailer import delivery, emails  # noqa: F401  (emails registers the kinds)
from mailer.batch import BatchSpec
from mailer.broker import DELIVERY_QUEUE, MAINTENANCE_QUEUE, broker  # noqa: F401  (set first)

log = logging.getLogger(__name__)

#: Retries of a delivery batch after a transient failure (5xx, connection refused): backoff
#: doubles from 10 s to 10 min, so about 40 minutes of SendGrid trouble are ridden out.
DELIVERY_MAX_RETRIES = 8
DELIVERY_MIN_BACKOFF_MS = 10_000
DELIVERY_MAX_BACKOFF_MS = 600_000
#: A batch of 1000 takes seconds; past this the worker is stuck and the message is retried.
DELIVERY_TIME_LIMIT_MS = 900_000


def _retries_so_far() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


@dramatiq.actor(
    queue_name=DELIVERY_QUEUE,
    max_retries=DELIVERY_MAX_RETRIES,
    min_backoff=DELIVERY_MIN_BACKOFF_MS,
    max_backoff=DELIVERY_MAX_BACKOFF_MS,
    time_limit=DELIVERY_TIME_LIMIT_MS,
)
def deliver(kind: str, purpose: str, belongs_to: str, recipient_ids: list[int]) -> None:
    """Send one batch: gate at send time, one record per send key, never twice."""
    spec = BatchSpec(kind, purpose, belongs_to, tuple(recipient_ids))
    final = _retries_so_far() >= DELIVERY_MAX_RETRIES
    try:
        outcome = delivery.deliver_batch(spec, final_attempt=final)
    except Exception as error:
        if final:
            # Nothing may stay pending silently: the last attempt records what stopped it.
            delivery.fail_remaining(spec, f"internal error: {error!r}")
        raise
    log.info(
        "batch %s/%s: %d sent, %d skipped, %d failed, %d unknown, %d already done",
        purpose,
        belongs_to,
        outcome.sent,
        sum(outcome.skipped.values()),
        outcome.failed,
        outcome.unknown,
        outcome.already_done,
    )
    if outcome.retry:
        # 429: the server's delay; 5xx and refused connections: the Retries middleware's backoff.
        raise dramatiq.Retry(outcome.last_error or "transient failure", delay=outcome.retry_after_ms)


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_deliveries() -> None:
    """Mark sends stuck in flight ``unknown``; queue again pending sends whose message was lost.

    Not retried: the next scheduled sweep does the same work.
    """
    result = delivery.sweep()
    for spec in result.requeue:
        deliver.send(*spec.as_message_args())
    log.info(
        "sweep: %d marked unknown, %d batches queued again",
        result.marked_unknown,
        len(result.requeue),
    )


def enqueue(specs: list[BatchSpec]) -> int:
    """Queue batches for delivery; returns how many messages were sent to the broker."""
    for spec in specs:
        deliver.send(*spec.as_message_args())
    return len(specs)


# -- Campaigns (mailer/campaigns/): their own lane, so tender alerts never wait behind them.

from mailer.broker import CAMPAIGN_QUEUE  # noqa: E402
from mailer.campaigns import batches as campaign_batches  # noqa: E402
from mailer.campaigns import control as campaign_control  # noqa: E402

#: A batch pass that raises (database unreachable, a bug) is retried with backoff from 10 s to
#: 10 min; SendGrid trouble does not raise (the batch re-queues itself and the error budget
#: decides). Past the retries the batch's lease runs out and the sweep queues it again, until
#: control.MAX_BATCH_ATTEMPTS pauses the campaign with the error.
CAMPAIGN_BATCH_MAX_RETRIES = 5
CAMPAIGN_BATCH_MIN_BACKOFF_MS = 10_000
CAMPAIGN_BATCH_MAX_BACKOFF_MS = 600_000
#: A batch of 1000 takes about a second; a pass stuck this long is abandoned and retried.
CAMPAIGN_BATCH_TIME_LIMIT_MS = 600_000


@dramatiq.actor(
    queue_name=CAMPAIGN_QUEUE,
    max_retries=CAMPAIGN_BATCH_MAX_RETRIES,
    min_backoff=CAMPAIGN_BATCH_MIN_BACKOFF_MS,
    max_backoff=CAMPAIGN_BATCH_MAX_BACKOFF_MS,
    time_limit=CAMPAIGN_BATCH_TIME_LIMIT_MS,
)
def send_campaign_batch(batch_id: int) -> None:
    """Send one campaign batch (paced, gated at send time, never twice); then queue the next ones."""
    step = campaign_batches.run(batch_id)
    if step.again_in_ms is not None:
        send_campaign_batch.send_with_options(args=(batch_id,), delay=step.again_in_ms)
    enqueue_campaign_batches(step.release)


#: Starting resolves the audience in one transaction: safe to retry a few times.
@dramatiq.actor(queue_name=CAMPAIGN_QUEUE, max_retries=3, time_limit=CAMPAIGN_BATCH_TIME_LIMIT_MS)
def start_campaign(campaign_id: int) -> None:
    """Start a scheduled campaign at its send time: resolve its audience, queue its first batches."""
    enqueue_campaign_batches(campaign_control.start(campaign_id))


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_campaigns() -> None:
    """Start due campaigns, queue again batches lost with the broker, close cancelled ones.

    Not retried: the next scheduled sweep does the same work.
    """
    result = campaign_control.sweep()
    enqueue_campaign_batches(result.requeue)
    log.info(
        "campaign sweep: %d started, %d lost batches queued again, %d batches queued, %d completed",
        len(result.started),
        result.lost,
        len(result.requeue),
        len(result.completed),
    )


def enqueue_campaign_batches(batch_ids: list[int]) -> int:
    """Send one message per campaign batch (ids only)."""
    for batch_id in batch_ids:
        send_campaign_batch.send(batch_id)
    return len(batch_ids)
