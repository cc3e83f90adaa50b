"""Stored webhook batches: kept as received before any worker reads them, applied once, swept.

The web process stores a verified post and queues its id (its body holds addresses: never in a
message); a worker parses it with its source's parser (``mailer/providers``) and applies the
provider-neutral events (``applying.py``). A batch no worker applied is queued again by the sweep.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from mailer.campaigns import breaker
from mailer.db import session_scope, utcnow
from mailer.provider_events.applying import apply_events
from mailer.provider_events.models import WebhookBatch
from mailer.provider_events.outcome import ApplyOutcome
from mailer.providers import webhook_source

log = logging.getLogger(__name__)

#: A stored batch no worker has applied after this long is queued again by the sweep.
UNAPPLIED_GRACE = dt.timedelta(minutes=5)
#: Applied batches are kept this long for inspection; every event stays in delivery_events.
BATCH_RETENTION = dt.timedelta(days=30)


def store_batch(source: str, body: bytes, signed_at: int) -> int:
    """Keep a post ``source`` verified as received, committed; return its id (the only thing queued)."""
    with session_scope() as session:
        batch = WebhookBatch(
            provider=source,
            body=body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            signed_at=dt.datetime.fromtimestamp(signed_at, dt.UTC),
        )
        session.add(batch)
        session.flush()
        return batch.id


def forget_batch(batch_id: int) -> None:
    """Remove a stored batch that could not be queued (the provider is told to post it again)."""
    with session_scope() as session:
        session.execute(
            sa.delete(WebhookBatch).where(WebhookBatch.id == batch_id, WebhookBatch.applied_at.is_(None))
        )


def apply_batch(batch_id: int) -> ApplyOutcome | None:
    """Apply a stored batch once; None when it does not exist. Safe to run twice, or in parallel."""
    with session_scope() as session:
        # Two workers given the same batch: the second waits here, then sees it applied.
        batch = session.get(WebhookBatch, batch_id, with_for_update=True)
        if batch is None:
            return None
        if batch.applied_at is not None:
            return ApplyOutcome(events=int((batch.outcome or {}).get("events", 0)))
        try:
            source = webhook_source(batch.provider)
            events = source.parse(batch.body, utcnow())
        except ValueError as error:
            # Signed by the provider yet unreadable: kept as received, marked, never retried.
            batch.applied_at = utcnow()
            batch.outcome = {"error": str(error)[:500]}
            log.error("webhook batch %d could not be read: %s", batch_id, error)
            return ApplyOutcome()
        outcome = apply_events(session, source, events)
        # New complaints or bounces: a marketing purpose past its rates pauses its campaigns now,
        # in the transaction that recorded them (tender alerts are never paused).
        for purpose in sorted(outcome.purposes_hit):
            paused = breaker.check(session, purpose)
            if paused:
                log.warning("complaint breaker paused %s campaigns %s", purpose, paused)
        batch.applied_at = utcnow()
        batch.outcome = outcome.as_dict()
    return outcome


def unapplied_batches(now: dt.datetime | None = None) -> list[int]:
    """Stored batches still waiting after the grace period (their message was lost)."""
    cutoff = (now or utcnow()) - UNAPPLIED_GRACE
    with session_scope(readonly=True) as session:
        return list(
            session.scalars(
                sa.select(WebhookBatch.id)
                .where(WebhookBatch.applied_at.is_(None), WebhookBatch.received_at < cutoff)
                .order_by(WebhookBatch.id)
            )
        )


def prune_batches(now: dt.datetime | None = None) -> int:
    """Delete applied batches past their retention; returns how many."""
    cutoff = (now or utcnow()) - BATCH_RETENTION
    with session_scope() as session:
        result = session.execute(
            sa.delete(WebhookBatch).where(
                WebhookBatch.applied_at.is_not(None), WebhookBatch.applied_at < cutoff
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
