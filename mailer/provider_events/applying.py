"""Store verified webhook batches; apply their events to deliveries, suppressions and consent.

SendGrid posts events in batches and delivers each event several times, in any order. So:

- each event is stored once, keyed by its ``sg_event_id`` (an event without one is keyed by a
  hash of its content); only events stored for the first time have an effect;
- an event names our delivery through the ``delivery_id`` custom arg we put in every
  personalization (older mail: SendGrid's message id prefix plus the address);
- a delivery's state only ever moves up ``TRANSITIONS`` (a total order), so the final state is the
  same whatever order the events arrive in, and a duplicate changes nothing;
- what an event says about the person (hard bounce, spam complaint, unsubscribe) is applied to
  the suppression list and the consent ledger, whether or not a delivery matches.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer import consent
from mailer.addresses import address_hash, normalise_address
from mailer.campaigns import breaker
from mailer.config import get_settings
from mailer.db import id_in, in_chunks, session_scope, utcnow
from mailer.errors import InvalidAddress
from mailer.models import (
    ConsentAction,
    ConsentSource,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Recipient,
    SuppressionReason,
)
from mailer.provider_events.models import WebhookBatch
from mailer.purposes import ALL_PURPOSES, MARKETING_PURPOSE_KEYS, PURPOSE_KEYS
from mailer.suppression import entries

log = logging.getLogger(__name__)

#: Rows per statement when storing events (bound-parameter limits on SQLite).
WRITE_CHUNK = 500
#: A stored batch no worker has applied after this long is queued again by the sweep.
UNAPPLIED_GRACE = dt.timedelta(minutes=5)
#: Applied batches are kept this long for inspection; every event stays in delivery_events.
BATCH_RETENTION = dt.timedelta(days=30)
#: Who is named as the author of what an event records.
RECORDED_BY = "sendgrid"
#: A timestamp above this is in milliseconds (some Marketing Campaigns events use them).
_MILLISECONDS_FROM = 100_000_000_000


class EventKind(enum.StrEnum):
    """What a provider event means to us."""

    PROCESSED = "processed"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    #: A permanent bounce: the mailbox does not exist or refuses for good.
    BOUNCE = "bounce"
    #: SendGrid's ``bounce`` event of ``type: blocked``: a temporary refusal (reputation, content).
    BLOCKED = "blocked"
    DROPPED = "dropped"
    SPAMREPORT = "spamreport"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GROUP_RESUBSCRIBE = "group_resubscribe"
    #: A type we do not know: stored with its name, no effect.
    UNKNOWN = "unknown"


#: The delivery state an event proves. Opens, clicks and unsubscribe clicks happen in the
#: delivered mail, so they prove delivery even when the ``delivered`` event is late or lost.
EVENT_OUTCOME: dict[EventKind, DeliveryState | None] = {
    EventKind.PROCESSED: DeliveryState.SENT,
    EventKind.DEFERRED: DeliveryState.SENT,
    EventKind.DELIVERED: DeliveryState.DELIVERED,
    EventKind.OPEN: DeliveryState.DELIVERED,
    EventKind.CLICK: DeliveryState.DELIVERED,
    EventKind.UNSUBSCRIBE: DeliveryState.DELIVERED,
    EventKind.GROUP_UNSUBSCRIBE: DeliveryState.DELIVERED,
    # A resubscription happens on SendGrid's preference page, maybe days later: proves nothing.
    EventKind.GROUP_RESUBSCRIBE: None,
    # SendGrid files a block as a bounce (``type: blocked``); only hard bounces suppress.
    EventKind.BOUNCE: DeliveryState.BOUNCED,
    EventKind.BLOCKED: DeliveryState.BOUNCED,
    EventKind.DROPPED: DeliveryState.DROPPED,
    EventKind.SPAMREPORT: DeliveryState.COMPLAINED,
    EventKind.UNKNOWN: None,
}

_S = DeliveryState
_FROM_ANY_OUTCOME = frozenset({_S.SENT, _S.DELIVERED, _S.DROPPED, _S.BOUNCED, _S.COMPLAINED})

#: The order TRANSITIONS climbs; an event never moves a delivery down it.
OUTCOME_ORDER = (_S.SENT, _S.DELIVERED, _S.DROPPED, _S.BOUNCED, _S.COMPLAINED)


#: Where a delivery may move on a provider event. Every move goes up one order
#: (sent < delivered < dropped < bounced < complained), which is what makes the final state the
#: same whatever order duplicated and late events arrive in.
TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    # Our call's outcome was lost (unknown), or looked like a failure, or the process stopped
    # before recording it, yet the provider has the message: its events settle the delivery.
    _S.UNKNOWN: _FROM_ANY_OUTCOME,
    _S.SENDING: _FROM_ANY_OUTCOME,
    _S.PENDING: _FROM_ANY_OUTCOME,
    _S.FAILED: _FROM_ANY_OUTCOME,
    _S.SENT: frozenset({_S.DELIVERED, _S.DROPPED, _S.BOUNCED, _S.COMPLAINED}),
    # A remote server may accept (250) then bounce later; a complaint comes after delivery.
    _S.DELIVERED: frozenset({_S.DROPPED, _S.BOUNCED, _S.COMPLAINED}),
    _S.DROPPED: frozenset({_S.BOUNCED, _S.COMPLAINED}),
    _S.BOUNCED: frozenset({_S.COMPLAINED}),
    _S.COMPLAINED: frozenset(),
    # Never handed to the provider: an event naming it is kept, and changes nothing.
    _S.SKIPPED: frozenset(),
}

#: SendGrid's ``dropped`` reasons that tell something lasting about the address: it is already
#: on one of SendGrid's own suppression lists, so ours records it too.
DROP_SUPPRESSIONS: dict[str, tuple[SuppressionReason, tuple[str, ...]]] = {
    "bounced address": (SuppressionReason.HARD_BOUNCE, (ALL_PURPOSES,)),
    "invalid": (SuppressionReason.INVALID, (ALL_PURPOSES,)),
    "spam reporting address": (SuppressionReason.SPAM_COMPLAINT, MARKETING_PURPOSE_KEYS),
}


@dataclass(frozen=True)
class ProviderEvent:
    """One event, read from SendGrid's JSON; ``payload`` keeps it whole."""

    event_id: str
    kind: EventKind
    #: The event name as sent (unknown types are stored under it).
    name: str
    occurred_at: dt.datetime
    payload: dict[str, Any]
    delivery_id: int | None = None
    email: str | None = None
    message_id: str | None = None
    asm_group_id: int | None = None
    reason: str | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass
class ApplyOutcome:
    """What applying a batch did (counts only: this is logged and stored)."""

    events: int = 0
    duplicates: int = 0
    uncorrelated: int = 0
    unknown_types: int = 0
    state_changes: int = 0
    suppressions_added: int = 0
    consents_withdrawn: int = 0
    consents_regranted: int = 0
    not_applied: Counter[str] = field(default_factory=Counter)
    #: Purposes whose deliveries got a new bounce or spam complaint in this batch: what a
    #: complaint-rate check (mailer/campaigns) looks at after the batch is applied.
    purposes_hit: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "uncorrelated": self.uncorrelated,
            "unknown_types": self.unknown_types,
            "state_changes": self.state_changes,
            "suppressions_added": self.suppressions_added,
            "consents_withdrawn": self.consents_withdrawn,
            "consents_regranted": self.consents_regranted,
            "not_applied": dict(self.not_applied),
            "purposes_hit": sorted(self.purposes_hit),
        }


# Reading events -------------------------------------------------------------------------------


def parse_body(body: str) -> list[ProviderEvent]:
    """The events of a webhook body; ValueError when it is not a JSON array (or object)."""
    try:
        document = _storable(json.loads(body))
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"body is not JSON: {error}") from None
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise ValueError("body is not a JSON array of events")
    received = utcnow()
    return [read_event(item, received) for item in document]


def read_event(item: Any, received_at: dt.datetime) -> ProviderEvent:
    """One event, whatever its shape: a malformed one is kept as an unknown event."""
    if not isinstance(item, dict):
        payload = {"malformed": item}
        return ProviderEvent(_content_id(payload), EventKind.UNKNOWN, "malformed", received_at, payload)
    name = str(item.get("event") or "").strip().lower()[:40] or "missing"
    kind = _kind(name, item.get("type"))
    return ProviderEvent(
        event_id=_event_id(item),
        kind=kind,
        name=name,
        occurred_at=_timestamp(item.get("timestamp"), received_at),
        payload=item,
        delivery_id=_int(item.get("delivery_id")),
        email=_text(item.get("email"), 254),
        message_id=_text(item.get("sg_message_id"), 200),
        asm_group_id=_int(item.get("asm_group_id")),
        reason=_text(item.get("reason"), 500),
        ip=_text(item.get("ip"), 45),
        user_agent=_text(item.get("useragent"), 500),
    )


def _kind(name: str, bounce_type: Any) -> EventKind:
    if name == "bounce" and str(bounce_type or "").lower() == "blocked":
        return EventKind.BLOCKED
    try:
        return EventKind(name)
    except ValueError:
        return EventKind.UNKNOWN


def _event_id(item: dict[str, Any]) -> str:
    event_id = item.get("sg_event_id")
    if isinstance(event_id, str) and event_id.strip():
        event_id = event_id.strip()
        # The column holds 120 characters; a longer id still dedupes through its hash.
        return event_id if len(event_id) <= 120 else "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    # Old and Marketing Campaigns events may lack an id: the same content is the same event.
    return _content_id(item)


def _content_id(item: Any) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _timestamp(value: Any, default: dt.datetime) -> dt.datetime:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return default


def _int(value: Any) -> int | None:
    # SendGrid sends custom args back as strings; group ids as numbers.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    return None


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:limit]
    return None


def _storable(document: Any) -> Any:
    """The document without what databases refuse: NUL characters and lone UTF-16 surrogates.

    Both can only come from JSON escapes (``\\u0000``, ``\\ud800``); they become U+FFFD / "?".
    """
    text = json.dumps(document, ensure_ascii=False)
    cleaned = text.replace("\\u0000", "\\ufffd").encode("utf-8", errors="replace").decode("utf-8")
    return document if cleaned == text else json.loads(cleaned)


# Storing and applying batches -----------------------------------------------------------------


def store_batch(body: bytes, signed_at: int, provider: str = "sendgrid") -> int:
    """Keep a verified post as received, committed; return its id (the only thing queued)."""
    with session_scope() as session:
        batch = WebhookBatch(
            provider=provider,
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
            events = parse_body(batch.body)
        except ValueError as error:
            # Signed by SendGrid yet unreadable: kept as received, marked, never retried.
            batch.applied_at = utcnow()
            batch.outcome = {"error": str(error)[:500]}
            log.error("webhook batch %d could not be read: %s", batch_id, error)
            return ApplyOutcome()
        outcome = apply_events(session, events)
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


def apply_events(session: Session, events: Sequence[ProviderEvent]) -> ApplyOutcome:
    """Store the events not seen before and apply them, in the caller's transaction."""
    outcome = ApplyOutcome(events=len(events))
    unique: dict[str, ProviderEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    outcome.duplicates = len(events) - len(unique)
    deliveries = _correlate(session, list(unique.values()))
    new_ids = _store(session, list(unique.values()), deliveries)
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
    groups = _asm_groups()
    for event in fresh:
        delivery = deliveries.get(event.event_id)
        _apply_to_person(session, event, delivery, groups, outcome)
    return outcome


@dataclass(frozen=True)
class _DeliveryRow:
    id: int
    purpose: str
    recipient_id: int
    address_hash: str | None


def _correlate(session: Session, events: list[ProviderEvent]) -> dict[str, _DeliveryRow | None]:
    """Our delivery each event is about, by the ``delivery_id`` custom arg, else message id + address."""
    by_id: dict[int, _DeliveryRow] = {}
    wanted = sorted({e.delivery_id for e in events if e.delivery_id is not None})
    for chunk in in_chunks(wanted, WRITE_CHUNK):
        for row in session.execute(
            sa.select(Delivery.id, Delivery.purpose, Delivery.recipient_id, Recipient.address_hash)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(id_in(session, Delivery.id, chunk))
        ):
            by_id[row.id] = _DeliveryRow(row.id, row.purpose, row.recipient_id, row.address_hash)
    # Mail sent before delivery ids travelled in custom_args: SendGrid's message id starts with
    # the X-Message-Id of the request, shared by its personalizations; the address tells them apart.
    by_message: dict[tuple[str, str], _DeliveryRow] = {}
    fallback = {
        (e.message_id.split(".")[0], _hash_or_none(e.email) or "")
        for e in events
        if e.delivery_id is None and e.message_id and e.email
    }
    prefixes = sorted({prefix for prefix, _ in fallback})
    for chunk in in_chunks(prefixes, WRITE_CHUNK):
        for match in session.execute(
            sa.select(
                Delivery.id,
                Delivery.purpose,
                Delivery.recipient_id,
                Delivery.provider_message_id,
                Recipient.address_hash,
            )
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(Delivery.provider_message_id.in_(chunk))
        ):
            key = (str(match.provider_message_id), match.address_hash or "")
            if key in fallback:
                by_message[key] = _DeliveryRow(
                    match.id, match.purpose, match.recipient_id, match.address_hash
                )
    found: dict[str, _DeliveryRow | None] = {}
    for event in events:
        if event.delivery_id is not None:
            found[event.event_id] = by_id.get(event.delivery_id)
        elif event.message_id and event.email:
            found[event.event_id] = by_message.get(
                (event.message_id.split(".")[0], _hash_or_none(event.email) or "")
            )
        else:
            found[event.event_id] = None
    return found


def _store(
    session: Session, events: list[ProviderEvent], deliveries: dict[str, _DeliveryRow | None]
) -> set[str]:
    """Insert the events; return the ids inserted now (the others were seen before)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    inserted: set[str] = set()
    for chunk in in_chunks(events, WRITE_CHUNK):
        rows = [
            {
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
                .on_conflict_do_nothing(index_elements=["provider_event_id"])
                .returning(DeliveryEvent.provider_event_id)
            )
        )
    return inserted


def _advance_deliveries(
    session: Session,
    events: Iterable[ProviderEvent],
    deliveries: dict[str, _DeliveryRow | None],
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
            message_ids.setdefault(row.id, event.message_id.split(".")[0][:120])
        target = EVENT_OUTCOME[event.kind]
        if target in (_S.BOUNCED, _S.COMPLAINED):
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
        # A delivery whose answer was lost (unknown) learns SendGrid's id from its events.
        session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("delivery_id"), table.c.provider_message_id.is_(None))
            .values(provider_message_id=sa.bindparam("message_id")),
            [{"delivery_id": d, "message_id": m} for d, m in message_ids.items()],
        )


def _hash_or_none(email: str | None) -> str | None:
    if not email:
        return None
    try:
        return address_hash(normalise_address(email))
    except InvalidAddress:
        return None


def _asm_groups() -> dict[int, str]:
    settings = get_settings()
    return {group: key for key in PURPOSE_KEYS if (group := settings.asm_group(key)) is not None}


def _apply_to_person(
    session: Session,
    event: ProviderEvent,
    delivery: _DeliveryRow | None,
    groups: dict[int, str],
    outcome: ApplyOutcome,
) -> None:
    kind = event.kind
    if kind == EventKind.BOUNCE:
        _suppress(session, event, delivery, SuppressionReason.HARD_BOUNCE, (ALL_PURPOSES,), outcome)
    elif kind == EventKind.SPAMREPORT:
        _suppress(session, event, delivery, SuppressionReason.SPAM_COMPLAINT, MARKETING_PURPOSE_KEYS, outcome)
    elif kind == EventKind.DROPPED:
        known = DROP_SUPPRESSIONS.get((event.reason or "").strip().lower())
        if known is not None:
            _suppress(session, event, delivery, known[0], known[1], outcome)
    elif kind in (EventKind.UNSUBSCRIBE, EventKind.GROUP_UNSUBSCRIBE):
        _withdraw(session, event, delivery, groups, outcome)
    elif kind == EventKind.GROUP_RESUBSCRIBE:
        _resubscribe(session, event, delivery, groups, outcome)


def _suppress(
    session: Session,
    event: ProviderEvent,
    delivery: _DeliveryRow | None,
    reason: SuppressionReason,
    scopes: Sequence[str],
    outcome: ApplyOutcome,
) -> None:
    # The address that bounced or complained is the event's; our recipient's address is the
    # fallback (it may have been rectified since, so it is second best).
    hashed = _hash_or_none(event.email) or (delivery.address_hash if delivery else None)
    if hashed is None:
        outcome.not_applied["no_address"] += 1
        return
    detail = f"SendGrid {event.name}" + (f": {event.reason}" if event.reason else "")
    for scope in scopes:
        _, created = entries.add_hash(
            session,
            hashed,
            scope=scope,
            reason=reason,
            source=f"sendgrid:{event.kind.value}",
            note=f"{detail[:400]} (event {event.event_id})",
            created_by=RECORDED_BY,
        )
        outcome.suppressions_added += created


def _recipient_id(session: Session, event: ProviderEvent, delivery: _DeliveryRow | None) -> int | None:
    if delivery is not None:
        return delivery.recipient_id
    hashed = _hash_or_none(event.email)
    if hashed is None:
        return None
    return session.scalar(sa.select(Recipient.id).where(Recipient.address_hash == hashed))


def _purposes(
    event: ProviderEvent, delivery: _DeliveryRow | None, groups: dict[int, str]
) -> tuple[str, ...] | None:
    """The purposes an unsubscribe event is about; None when nothing says which."""
    if event.asm_group_id is not None and event.asm_group_id in groups:
        return (groups[event.asm_group_id],)
    if delivery is not None:
        return (delivery.purpose,)
    if event.kind == EventKind.UNSUBSCRIBE:
        # SendGrid's global unsubscribe: it drops every later mail to the address, whatever its
        # purpose, so the ledger records the withdrawal of every purpose.
        return PURPOSE_KEYS
    return None


def _withdraw(
    session: Session,
    event: ProviderEvent,
    delivery: _DeliveryRow | None,
    groups: dict[int, str],
    outcome: ApplyOutcome,
) -> None:
    recipient_id = _recipient_id(session, event, delivery)
    purposes = _purposes(event, delivery, groups)
    if recipient_id is None or purposes is None:
        outcome.not_applied["unsubscribe_unmatched"] += 1
        return
    current = consent.current(session, recipient_id)
    for purpose in purposes:
        state = current.get(purpose)
        if state is None or not state.granted:
            continue
        consent.withdraw(session, recipient_id, purpose, _proof(event))
        outcome.consents_withdrawn += 1


def _resubscribe(
    session: Session,
    event: ProviderEvent,
    delivery: _DeliveryRow | None,
    groups: dict[int, str],
    outcome: ApplyOutcome,
) -> None:
    """Undo a SendGrid group unsubscribe, and only that.

    A withdrawal made through our own pages or the support desk is the person's word to us; a
    click on SendGrid's generic preference page does not overturn it.
    """
    recipient_id = _recipient_id(session, event, delivery)
    purposes = _purposes(event, delivery, groups)
    if recipient_id is None or purposes is None:
        outcome.not_applied["resubscribe_unmatched"] += 1
        return
    for purpose in purposes:
        last = consent.latest_event(session, recipient_id, purpose)
        if (
            last is None
            or last.action != ConsentAction.WITHDRAWN
            or last.source != ConsentSource.SENDGRID_EVENT
            or last.at > event.occurred_at
        ):
            outcome.not_applied["resubscribe_without_sendgrid_unsubscribe"] += 1
            continue
        grant = consent.latest_event(session, recipient_id, purpose, ConsentAction.GRANTED)
        consent.grant(
            session,
            recipient_id,
            purpose,
            _proof(
                event,
                note=f"undoes consent event {last.id}",
                wording_version=grant.wording_version if grant else None,
                partner_list_version=grant.partner_list_version if grant else None,
            ),
        )
        outcome.consents_regranted += 1


def _proof(event: ProviderEvent, note: str | None = None, **versions: str | None) -> consent.Proof:
    group = f" (group {event.asm_group_id})" if event.asm_group_id is not None else ""
    text = f"SendGrid {event.name}{group}, event {event.event_id}" + (f"; {note}" if note else "")
    return consent.Proof(
        source=ConsentSource.SENDGRID_EVENT,
        at=event.occurred_at,
        ip=event.ip,
        user_agent=event.user_agent,
        recorded_by=RECORDED_BY,
        note=text,
        **versions,
    )
