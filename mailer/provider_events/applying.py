"""Applying provider-neutral events: stored once, correlated, moving deliveries up, told to people.

Whichever provider reported them (``mailer/providers`` reads each one's posts into
``ProviderEvent``), and in whatever order and however often:

- each event is stored once, keyed by its provider and the provider's event id; only events
  stored for the first time have an effect;
- an event names our delivery through the delivery id every message carries (correlation.py);
- a delivery's state only ever moves up ``TRANSITIONS`` (transitions.py), so the final state is
  the same whatever order the events arrive in, and a duplicate changes nothing;
- what an event says about the person (hard bounce, spam complaint, unsubscribe) is applied to
  the suppression list and the consent ledger, whether or not a delivery matches (people.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.db import id_in, in_chunks, utcnow
from mailer.models import Delivery, DeliveryEvent, DeliveryState
from mailer.provider_events.correlation import EventDelivery, correlate
from mailer.provider_events.outcome import ApplyOutcome
from mailer.provider_events.people import apply_to_person
from mailer.provider_events.transitions import EVENT_OUTCOME, OUTCOME_ORDER, TRANSITIONS
from mailer.providers.events import EventKind, ProviderEvent
from mailer.providers.webhook import WebhookSource

#: Rows per statement when storing events (bound-parameter limits on SQLite).
WRITE_CHUNK = 500


def apply_events(session: Session, source: WebhookSource, events: Sequence[ProviderEvent]) -> ApplyOutcome:
    """Store the events of ``source`` not seen before and apply them, in the caller's transaction."""
    outcome = ApplyOutcome(events=len(events))
    unique: dict[str, ProviderEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    outcome.duplicates = len(events) - len(unique)
    deliveries = correlate(session, list(unique.values()))
    new_ids = _store(session, source.name, list(unique.values()), deliveries)
    outcome.duplicates += len(unique) - len(new_ids)
    fresh = sorted(
        (e for e in unique.values() if e.event_id in new_ids),
        key=lambda e: e.occurred_at,
    )
    for event in fresh:
        if event.kind == EventKind.UNKNOWN:
            outcome.unknown_types += 1
        if deliveries.get(event.event_id) is None:
            outcome.uncorrelated += 1
    _advance_deliveries(session, fresh, deliveries, outcome)
    for event in fresh:
        apply_to_person(session, source, event, deliveries.get(event.event_id), outcome)
    return outcome


def _store(
    session: Session, provider: str, events: list[ProviderEvent], deliveries: dict[str, EventDelivery | None]
) -> set[str]:
    """Insert the events of ``provider``; return the ids inserted now (the others were seen before)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    inserted: set[str] = set()
    for chunk in in_chunks(events, WRITE_CHUNK):
        rows = [
            {
                "provider": provider,
                "provider_event_id": e.event_id,
                "delivery_id": row.id if (row := deliveries.get(e.event_id)) else None,
                "type": e.kind.value if e.kind != EventKind.UNKNOWN else e.name,
                "occurred_at": e.occurred_at,
                "received_at": now,
                "payload": e.payload,
            }
            for e in chunk
        ]
        inserted.update(
            session.scalars(
                insert(DeliveryEvent)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
                .returning(DeliveryEvent.provider_event_id)
            )
        )
    return inserted


def _advance_deliveries(
    session: Session,
    events: Iterable[ProviderEvent],
    deliveries: dict[str, EventDelivery | None],
    outcome: ApplyOutcome,
) -> None:
    targets: dict[int, DeliveryState] = {}
    latest: dict[int, dt.datetime] = {}
    message_ids: dict[int, str] = {}
    for event in events:
        row = deliveries.get(event.event_id)
        if row is None:
            continue
        latest[row.id] = max(latest.get(row.id, event.occurred_at), event.occurred_at)
        if event.message_id:
            message_ids.setdefault(row.id, event.message_id[:120])
        target = EVENT_OUTCOME[event.kind]
        if target in (DeliveryState.BOUNCED, DeliveryState.COMPLAINED):
            outcome.purposes_hit.add(row.purpose)
        if target is not None and (
            row.id not in targets or OUTCOME_ORDER.index(target) > OUTCOME_ORDER.index(targets[row.id])
        ):
            targets[row.id] = target
    now = utcnow()
    # One guarded UPDATE per target state. The guard names the states the target may be reached
    # from, so a row another worker moved higher meanwhile is left where it is.
    for target in OUTCOME_ORDER:
        ids = [d for d, t in targets.items() if t == target]
        if not ids:
            continue
        sources = [s for s, allowed in TRANSITIONS.items() if target in allowed]
        for chunk in in_chunks(ids, WRITE_CHUNK):
            result = session.execute(
                sa.update(Delivery)
                .where(id_in(session, Delivery.id, chunk), Delivery.state.in_(sources))
                .values(state=target, finished_at=sa.func.coalesce(Delivery.finished_at, now))
                .execution_options(synchronize_session=False)
            )
            outcome.state_changes += int(result.rowcount)  # type: ignore[attr-defined]
    # Core statements run once per parameter set (executemany); ORM ones would want primary keys.
    table = sa.table(
        "deliveries",
        sa.column("id"),
        sa.column("event_at", Delivery.__table__.c.event_at.type),
        sa.column("provider_message_id"),
    )
    if latest:
        session.execute(
            sa.update(table)
            .where(
                table.c.id == sa.bindparam("delivery_id"),
                sa.or_(table.c.event_at.is_(None), table.c.event_at < sa.bindparam("at")),
            )
            .values(event_at=sa.bindparam("at")),
            [{"delivery_id": d, "at": at} for d, at in latest.items()],
        )
    if message_ids:
        # A delivery whose answer was lost (unknown) learns the provider's id from its events.
        session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("delivery_id"), table.c.provider_message_id.is_(None))
            .values(provider_message_id=sa.bindparam("message_id")),
            [{"delivery_id": d, "message_id": m} for d, m in message_ids.items()],
        )
