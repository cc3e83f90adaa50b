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


def _last_attempt() -> bool:
    """Whether the Retries middleware will not retry this message again."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    limit = message.options.get("max_retries", DELIVERY_MAX_RETRIES)
    return int(message.options.get("retries", 0)) >= int(limit)


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
    final = _last_attempt()
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
