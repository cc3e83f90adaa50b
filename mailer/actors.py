"""Dramatiq actors: thin, idempotent, taking ids only. Each states its retry policy."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage

from mailer import delivery
from mailer.alerts import inbox as alert_inbox
from mailer.alerts import planning
from mailer.alerts.windows import parse_frequency
from mailer.batch import BatchSpec
from mailer.broker import (  # noqa: F401  (broker: set before any actor is declared)
    CAMPAIGN_QUEUE,
    DELIVERY_QUEUE,
    MAINTENANCE_QUEUE,
    PROVIDER_EVENTS_QUEUE,
    broker,
)
from mailer.campaigns import batches as campaign_batches
from mailer.campaigns import fanout as campaign_fanout
from mailer.errors import MailerError
from mailer.provider_events import batches as provider_events

# Importing mailer.broker chose the broker from the configuration, before any actor below is
# declared; the services imported above declare none.

log = logging.getLogger(__name__)

#: Retries of a delivery batch after a transient failure (5xx, connection refused): backoff
#: doubles from 10 s to 10 min, so about 40 minutes of SendGrid trouble are ridden out.
DELIVERY_MAX_RETRIES = 8
DELIVERY_MIN_BACKOFF_MS = 10_000
DELIVERY_MAX_BACKOFF_MS = 600_000
#: A batch of 1000 takes seconds; past this the worker is stuck and the message is retried.
DELIVERY_TIME_LIMIT_MS = 900_000


def _first_attempt() -> bool:
    """Whether this message is being processed for the first time (not a retry)."""
    message = CurrentMessage.get_current_message()
    return message is None or int(message.options.get("retries", 0)) == 0


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
def deliver(
    kind: str, purpose: str, belongs_to: str, recipient_ids: list[int], campaign_id: int | None = None
) -> None:
    """Send one batch: gate at send time, one record per send key, never twice."""
    spec = BatchSpec(kind, purpose, belongs_to, tuple(recipient_ids), campaign_id=campaign_id)
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
    if outcome.retry and outcome.retry_after_ms is not None:
        # 429: SendGrid asks us to slow down, nothing failed. The batch comes back after the delay
        # it gave as a new message, so a burst of 429s never uses up the retries meant for 5xx.
        deliver.send_with_options(args=spec.as_message_args(), delay=outcome.retry_after_ms)
    elif outcome.retry:
        # 5xx and refused connections: the Retries middleware's backoff, then failed for good.
        raise dramatiq.Retry(outcome.last_error or "transient failure")


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


# Provider events (the SendGrid webhook) --------------------------------------------------------

#: Applying a batch only fails when the database does: retry for about an hour (10 s doubling to
#: 10 min). Each event is applied once whatever the number of attempts (deduplicated on its id).
PROVIDER_EVENTS_MAX_RETRIES = 10
PROVIDER_EVENTS_MIN_BACKOFF_MS = 10_000
PROVIDER_EVENTS_MAX_BACKOFF_MS = 600_000
#: A batch of a few thousand events takes seconds.
PROVIDER_EVENTS_TIME_LIMIT_MS = 300_000


@dramatiq.actor(
    queue_name=PROVIDER_EVENTS_QUEUE,
    max_retries=PROVIDER_EVENTS_MAX_RETRIES,
    min_backoff=PROVIDER_EVENTS_MIN_BACKOFF_MS,
    max_backoff=PROVIDER_EVENTS_MAX_BACKOFF_MS,
    time_limit=PROVIDER_EVENTS_TIME_LIMIT_MS,
)
def apply_provider_events(batch_id: int) -> None:
    """Apply one stored webhook batch: the message carries its id, never the events."""
    outcome = provider_events.apply_batch(batch_id)
    if outcome is None:
        log.warning("webhook batch %d not found", batch_id)
        return
    log.info(
        "webhook batch %d: %d events, %d duplicates, %d state changes, %d suppressions, "
        "%d consents withdrawn, %d re-granted, %d uncorrelated, %d of unknown type",
        batch_id,
        outcome.events,
        outcome.duplicates,
        outcome.state_changes,
        outcome.suppressions_added,
        outcome.consents_withdrawn,
        outcome.consents_regranted,
        outcome.uncorrelated,
        outcome.unknown_types,
    )


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_provider_events() -> None:
    """Queue again stored batches no worker applied; prune applied ones past their retention.

    Not retried: the next scheduled sweep does the same work.
    """
    waiting = provider_events.unapplied_batches()
    for batch_id in waiting:
        apply_provider_events.send(batch_id)
    pruned = provider_events.prune_batches()
    log.info("provider events sweep: %d batches queued again, %d pruned", len(waiting), pruned)


# -- Tender alerts: digest runs and the site's batches ------------------------------------------

#: Planning a window is one transaction: a failure (database restart) leaves nothing behind, so a
#: retry starts over; five retries with backoff from 30 s ride out a few minutes of trouble.
DIGEST_RUN_MAX_RETRIES = 5
DIGEST_RUN_MIN_BACKOFF_MS = 30_000
#: Planning 300,000 searches takes tens of seconds; past this something is stuck.
DIGEST_RUN_TIME_LIMIT_MS = 1_800_000


@dramatiq.actor(
    queue_name=MAINTENANCE_QUEUE,
    max_retries=DIGEST_RUN_MAX_RETRIES,
    min_backoff=DIGEST_RUN_MIN_BACKOFF_MS,
    time_limit=DIGEST_RUN_TIME_LIMIT_MS,
)
def run_digest(frequency: str, as_of: str) -> None:
    """Plan a digest window once and queue its batches; a window already planned is left alone.

    Two schedulers, or a redelivered message, plan nothing twice: the run row is unique per
    window. If the process that planned it died before queueing every batch, the sweep queues
    the pending sends again (and ``mailer digest run`` does at once).
    """
    import datetime as dt

    planned = planning.plan(parse_frequency(frequency), dt.date.fromisoformat(as_of))
    if not planned.planned_now and _first_attempt():
        log.info("digest window %s already planned; nothing queued", planned.belongs_to)
        return
    # Planned now, or planned by an earlier attempt of this message that died before queueing:
    # queue what is still pending (sending twice is impossible; the send keys see to it).
    queued = enqueue(planning.pending_batches(planned.frequency, planned.window))
    log.info("digest window %s: %d batches queued", planned.belongs_to, queued)


#: A batch file that does not parse never will: no retry, the error is logged and the file kept.
@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=3, throws=(MailerError,))
def import_tender_batch(file_name: str) -> None:
    """Import a JSON Lines file of tenders the site dropped in MAILER_IMPORT_DIR (a name, no data)."""
    result = alert_inbox.import_tender_batch(file_name)
    log.info(
        "tender batch: %d created, %d updated, %d unchanged", result.created, result.updated, result.unchanged
    )


#: Same policy as tender batches.
@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=3, throws=(MailerError,))
def import_search_batch(file_name: str) -> None:
    """Import a JSON Lines file of saved searches the site dropped in MAILER_IMPORT_DIR."""
    result = alert_inbox.import_search_batch(file_name)
    log.info(
        "search batch: %d created, %d updated, %d unchanged", result.created, result.updated, result.unchanged
    )


# -- Campaigns (mailer/campaigns/): their own lane, so tender alerts never wait behind them.

#: A batch pass that raises (database unreachable, a bug) is retried with backoff from 10 s to
#: 10 min; SendGrid trouble does not raise (the batch re-queues itself and the error budget
#: decides). Past the retries the batch's lease runs out and the sweep queues it again, until
#: fanout.MAX_BATCH_ATTEMPTS pauses the campaign with the error.
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
    enqueue_campaign_batches(campaign_fanout.start(campaign_id))


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_campaigns() -> None:
    """Start due campaigns, queue again batches lost with the broker, close cancelled ones.

    Not retried: the next scheduled sweep does the same work.
    """
    result = campaign_fanout.sweep()
    enqueue_campaign_batches(result.requeue)
    log.info(
        "campaign sweep: %d lost batches queued again, %d batches queued; campaigns started %s, "
        "completed %s, paused %s",
        result.lost,
        len(result.requeue),
        result.started or "none",
        result.completed or "none",
        result.paused or "none",
    )


def enqueue_campaign_batches(batch_ids: list[int]) -> int:
    """Send one message per campaign batch (ids only)."""
    for batch_id in batch_ids:
        send_campaign_batch.send(batch_id)
    return len(batch_ids)
