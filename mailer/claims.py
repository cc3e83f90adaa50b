"""Claiming a batch's send keys: the rows that exist, and delivery ids reserved for the others.

A send key (purpose, what is sent, recipient) has one ``deliveries`` row. A claim inserts the
missing rows ``pending``, except for batches their owner runs again until they are done
(campaign batches, found by the campaign sweep) on PostgreSQL: there a delivery id is reserved for
each missing key from the table's sequence, and the row is inserted when the key is first decided,
``sending`` as it is taken into flight (the gate re-checked in the same statement), or ``skipped``
/ ``failed``. A campaign send then writes two row versions instead of three (each with an entry in
every index), still before the provider is called; a key never decided (the worker died, SendGrid
said wait) is claimed again when the batch runs again. Rows are inserted ON CONFLICT DO NOTHING on
the send key: when two workers, or a cancel, race for a key, one row wins and the other reserved
ids stay unused. SQLite has no sequence: there every claim inserts the missing rows ``pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer import gate
from mailer.batch import BatchSpec
from mailer.db import IdArray, id_in, utcnow
from mailer.models import Delivery, DeliveryState, Recipient

log = logging.getLogger(__name__)

SEND_KEY = ["purpose", "belongs_to", "recipient_id"]
#: The sequence behind ``deliveries.id`` on PostgreSQL (a bigserial column, migration 0001).
ID_SEQUENCE = "deliveries_id_seq"


@dataclass
class Claim:
    """The sends a batch still has to make: delivery id -> recipient id."""

    pending: dict[int, int] = field(default_factory=dict)
    #: The part of ``pending`` with no row yet (reserved ids, PostgreSQL).
    unrecorded: dict[int, int] = field(default_factory=dict)
    #: Keys of the batch already decided (sent, skipped...) by an earlier pass.
    already_done: int = 0

    def unrecorded_among(self, delivery_ids: Iterable[int]) -> dict[int, int]:
        """Those of ``delivery_ids`` with no row yet (they stay unrecorded)."""
        return {d: self.unrecorded[d] for d in delivery_ids if d in self.unrecorded}

    def take_unrecorded(self, delivery_ids: Iterable[int]) -> dict[int, int]:
        """Those of ``delivery_ids`` with no row yet; the caller records them."""
        taken = {}
        for delivery_id in delivery_ids:
            recipient_id = self.unrecorded.pop(delivery_id, None)
            if recipient_id is not None:
                taken[delivery_id] = recipient_id
        return taken


def claim(session: Session, spec: BatchSpec, *, reserve: bool = False) -> Claim:
    """The batch's pending sends: its existing pending rows, and the missing keys, inserted
    ``pending``, or with ``reserve`` (a batch run again by its owner until done) ids reserved."""
    recipient_ids = list(dict.fromkeys(spec.recipient_ids))
    if not reserve or session.get_bind().dialect.name != "postgresql":
        return _claim_by_inserting(session, spec, recipient_ids)
    # One send-key lookup per recipient, forced: offered the list of ids, PostgreSQL used only the
    # key's (purpose, belongs_to) prefix, reading every row of the campaign so far for each batch
    # (statistics taken before the campaign say it has none).
    wanted = (
        sa.func.unnest(sa.literal(recipient_ids, type_=IdArray())).table_valued("id").render_derived("wanted")
    )
    existing = (
        sa.select(Delivery.id, Delivery.recipient_id, Delivery.state)
        .where(
            Delivery.purpose == spec.purpose,
            Delivery.belongs_to == spec.belongs_to,
            Delivery.recipient_id == wanted.c.id,
        )
        .limit(1)
        .lateral("existing")
    )
    rows = session.execute(
        sa.select(existing.c.id, existing.c.recipient_id, existing.c.state).select_from(
            wanted.join(existing, sa.true())
        )
    ).all()
    recorded = {row.recipient_id for row in rows}
    unknown = [rid for rid in recipient_ids if rid not in recorded]
    missing = (
        list(session.scalars(sa.select(Recipient.id).where(id_in(session, Recipient.id, unknown))))
        if unknown
        else []
    )
    result = Claim(
        pending={row.id: row.recipient_id for row in rows if row.state == DeliveryState.PENDING},
        already_done=sum(1 for row in rows if row.state != DeliveryState.PENDING),
    )
    if missing:
        reserved = session.scalars(
            sa.select(sa.func.nextval(sa.literal_column(f"'{ID_SEQUENCE}'::regclass"))).select_from(
                sa.func.generate_series(1, len(missing))
            )
        ).all()
        result.unrecorded = dict(zip(reserved, missing, strict=True))
        result.pending.update(result.unrecorded)
    _warn_unknown(spec, len(recipient_ids) - len(rows) - len(missing))
    return result


def _claim_by_inserting(session: Session, spec: BatchSpec, recipient_ids: list[int]) -> Claim:
    rows = insert_missing(session, spec, DeliveryState.PENDING)
    if len(rows) < len(recipient_ids):
        # Some keys existed already (a redelivered message, a resumed batch): read them all back.
        rows = session.execute(
            sa.select(Delivery.id, Delivery.recipient_id, Delivery.state).where(
                Delivery.purpose == spec.purpose,
                Delivery.belongs_to == spec.belongs_to,
                id_in(session, Delivery.recipient_id, recipient_ids),
            )
        ).all()
    pending = {row.id: row.recipient_id for row in rows if row.state == DeliveryState.PENDING}
    _warn_unknown(spec, len(recipient_ids) - len(rows))
    return Claim(pending=pending, already_done=len(rows) - len(pending))


def insert_missing(session: Session, spec: BatchSpec, state: DeliveryState, **values: Any) -> Sequence[Any]:
    """A row in ``state`` for each recipient of the batch that has none; returns the rows inserted
    (id, recipient_id, state). An id that names no recipient gets no row (and no FK error)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    columns = {
        **_row_values(spec, state, values),
        "recipient_id": Recipient.id,
    }
    source = sa.select(*columns.values()).where(
        id_in(session, Recipient.id, list(dict.fromkeys(spec.recipient_ids)))
    )
    return session.execute(
        insert(Delivery)
        .from_select(list(columns), source)
        .on_conflict_do_nothing(index_elements=SEND_KEY)
        .returning(Delivery.id, Delivery.recipient_id, Delivery.state)
    ).all()


def _row_values(spec: BatchSpec, state: DeliveryState, values: dict[str, Any]) -> dict[str, Any]:
    """The values a new row of the batch shares, as typed literals: column name -> expression."""
    table = Delivery.__table__
    shared: dict[str, Any] = {
        "purpose": spec.purpose,
        "belongs_to": spec.belongs_to,
        "kind": spec.kind,
        "state": state.value,
        "attempts": 0,
        "created_at": utcnow(),
        **values,
    }
    return {name: sa.literal(value, type_=table.c[name].type) for name, value in shared.items()}


def _warn_unknown(spec: BatchSpec, count: int) -> None:
    if count > 0:
        log.warning("%d recipient ids of %s name no recipient", count, spec.belongs_to)


def insert(
    session: Session,
    spec: BatchSpec,
    keys: dict[int, int],
    state: DeliveryState,
    *,
    gated: bool = False,
    **values: Any,
) -> set[int]:
    """Insert the rows of unrecorded keys (delivery id -> recipient id) in ``state``; returns the
    ids inserted. A key that got its row meanwhile is left alone. ``gated``: only the recipients
    the gate allows now (the statement that takes sends into flight)."""
    if not keys:
        return set()
    pairs = sa.select(
        sa.func.unnest(sa.literal(list(keys), type_=IdArray())).label("id"),
        sa.func.unnest(sa.literal(list(keys.values()), type_=IdArray())).label("recipient_id"),
    ).subquery("unrecorded")
    columns = {
        **_row_values(spec, state, values),
        "id": pairs.c.id,
        "recipient_id": pairs.c.recipient_id,
    }
    source = sa.select(*columns.values()).select_from(pairs)
    if gated:
        source = source.where(
            gate.allowed_now(
                pairs.c.recipient_id,
                sa.literal(spec.purpose),
                partner_list_versions=spec.partner_list_versions,
            )
        )
    return set(
        session.scalars(
            postgresql.insert(Delivery)
            .from_select(list(columns), source)
            .on_conflict_do_nothing(index_elements=SEND_KEY)
            .returning(Delivery.id)
        )
    )
