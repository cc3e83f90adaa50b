"""The consent ledger: append a grant or withdrawal with its proof; the current state follows it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.db import in_chunks, utcnow
from mailer.models import Consent, ConsentAction, ConsentEvent, ConsentSource
from mailer.purposes import get_consent

#: Rows per INSERT when writing many events (bound-parameter limits on SQLite).
WRITE_CHUNK = 500


@dataclass(frozen=True)
class Proof:
    """How a grant or withdrawal was made: what a regulator may ask us to show."""

    source: ConsentSource
    at: dt.datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    wording_version: str | None = None
    partner_list_version: str | None = None
    recorded_by: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ConsentChange:
    """One event to append: who, which purpose, granted or withdrawn, and the proof."""

    recipient_id: int
    purpose: str
    action: ConsentAction
    proof: Proof


def grant(session: Session, recipient_id: int, purpose: str, proof: Proof) -> ConsentEvent:
    """Record that a recipient granted consent for a purpose."""
    return record(session, ConsentChange(recipient_id, purpose, ConsentAction.GRANTED, proof))


def withdraw(session: Session, recipient_id: int, purpose: str, proof: Proof) -> ConsentEvent:
    """Record that a recipient withdrew consent for a purpose; the gate sees it at once."""
    return record(session, ConsentChange(recipient_id, purpose, ConsentAction.WITHDRAWN, proof))


def record(session: Session, change: ConsentChange) -> ConsentEvent:
    """Append one consent event and bring the current state in step, in the caller's transaction."""
    event = _event(change)
    session.add(event)
    session.flush()
    _advance_state(session, [event])
    return event


def record_many(session: Session, changes: Sequence[ConsentChange]) -> int:
    """Append many events in bulk (imports); returns how many were written."""
    if not changes:
        return 0
    events = [_event(change) for change in changes]
    for chunk in in_chunks(events, WRITE_CHUNK):
        session.add_all(chunk)
        session.flush()
        _advance_state(session, chunk)
    return len(events)


def _event(change: ConsentChange) -> ConsentEvent:
    get_consent(change.purpose)
    proof = change.proof
    recorded_at = utcnow()
    at = proof.at or recorded_at
    if at.tzinfo is None:
        raise ValueError("consent time must be timezone-aware")
    # A decision cannot postdate its recording: a grant stamped ahead (a clock running fast)
    # would otherwise outrank a withdrawal recorded in the meantime.
    at = min(at, recorded_at)
    return ConsentEvent(
        recipient_id=change.recipient_id,
        purpose=change.purpose,
        action=change.action,
        at=at,
        recorded_at=recorded_at,
        source=proof.source,
        ip=proof.ip,
        user_agent=proof.user_agent,
        wording_version=proof.wording_version,
        partner_list_version=proof.partner_list_version,
        recorded_by=proof.recorded_by,
        note=proof.note,
    )


def _advance_state(session: Session, events: Iterable[ConsentEvent]) -> None:
    # The state is the latest event by (at, id). The guarded upsert keeps that true whatever order
    # events arrive in, imports with old dates and two writers racing on the same recipient included.
    latest: dict[tuple[int, str], ConsentEvent] = {}
    for event in events:
        key = (event.recipient_id, event.purpose)
        if key not in latest or (event.at, event.id) > (latest[key].at, latest[key].id):
            latest[key] = event
    if not latest:
        return
    rows = [
        {
            "recipient_id": e.recipient_id,
            "purpose": e.purpose,
            "granted": e.action == ConsentAction.GRANTED,
            "at": e.at,
            "event_id": e.id,
            "wording_version": e.wording_version,
            "partner_list_version": e.partner_list_version,
        }
        for e in latest.values()
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Consent).values(rows)
    table = Consent.__table__
    newer = sa.tuple_(statement.excluded.at, statement.excluded.event_id) > sa.tuple_(
        table.c.at, table.c.event_id
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.recipient_id, table.c.purpose],
        set_={
            name: statement.excluded[name]
            for name in ("granted", "at", "event_id", "wording_version", "partner_list_version")
        },
        where=newer,
    )
    session.execute(statement)


def latest_event(
    session: Session, recipient_id: int, purpose: str, action: ConsentAction | None = None
) -> ConsentEvent | None:
    """The newest event of a recipient for a purpose (of one action when given), by (at, id)."""
    query = sa.select(ConsentEvent).where(
        ConsentEvent.recipient_id == recipient_id, ConsentEvent.purpose == purpose
    )
    if action is not None:
        query = query.where(ConsentEvent.action == action)
    return session.scalars(query.order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc()).limit(1)).first()


def current(session: Session, recipient_id: int) -> dict[str, Consent]:
    """The current consent of a recipient, by purpose (purposes never consented to are absent)."""
    rows = session.scalars(sa.select(Consent).where(Consent.recipient_id == recipient_id))
    return {row.purpose: row for row in rows}


def derived_from_ledger(session: Session) -> dict[tuple[int, str], tuple[bool, int]]:
    """The state recomputed from the events alone: (recipient, purpose) -> (granted, event id)."""
    ranked = sa.select(
        ConsentEvent.recipient_id,
        ConsentEvent.purpose,
        ConsentEvent.action,
        ConsentEvent.id,
        sa.func.row_number()
        .over(
            partition_by=(ConsentEvent.recipient_id, ConsentEvent.purpose),
            order_by=(ConsentEvent.at.desc(), ConsentEvent.id.desc()),
        )
        .label("rank"),
    ).subquery()
    rows = session.execute(sa.select(ranked).where(ranked.c.rank == 1))
    return {(r.recipient_id, r.purpose): (r.action == ConsentAction.GRANTED, r.id) for r in rows}
