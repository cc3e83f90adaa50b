"""Suppression entries: keyed by the address hash, scoped to one purpose or all, never lost."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.addresses import address_hash, normalise_address
from mailer.models import Suppression, SuppressionReason
from mailer.purposes import ALL_PURPOSES, check_scope

#: Reasons that express the person's will rather than a fact about one mailbox; they follow the
#: person to a rectified address. A hard bounce or an invalid mailbox stays with the old address.
PERSONAL_REASONS = frozenset(
    {
        SuppressionReason.OPPOSITION,
        SuppressionReason.UNSUBSCRIBE,
        SuppressionReason.SPAM_COMPLAINT,
        SuppressionReason.MANUAL,
    }
)


def add(
    session: Session,
    address: str,
    *,
    scope: str,
    reason: SuppressionReason,
    source: str,
    note: str | None = None,
    created_by: str | None = None,
) -> tuple[Suppression, bool]:
    """Suppress an address for a scope; returns the entry and whether it is new.

    An existing entry for the same address and scope is kept as it is: the first reason and date
    are the ones that matter for the record.
    """
    return add_hash(
        session,
        address_hash(normalise_address(address)),
        scope=scope,
        reason=reason,
        source=source,
        note=note,
        created_by=created_by,
    )


def add_hash(
    session: Session,
    hashed: str,
    *,
    scope: str,
    reason: SuppressionReason,
    source: str,
    note: str | None = None,
    created_by: str | None = None,
) -> tuple[Suppression, bool]:
    """Suppress an address known only by its hash (erased recipients, provider events)."""
    check_scope(scope)
    reason = SuppressionReason(reason)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(Suppression)
        .values(
            address_hash=hashed,
            scope=scope,
            reason=reason,
            source=source,
            note=note,
            created_by=created_by,
        )
        .on_conflict_do_nothing(index_elements=["address_hash", "scope"])
        .returning(Suppression.id)
    ).scalar_one_or_none()
    entry = session.scalars(
        sa.select(Suppression).where(Suppression.address_hash == hashed, Suppression.scope == scope)
    ).one()
    return entry, inserted is not None


def entries_for(session: Session, address: str) -> list[Suppression]:
    """Every suppression entry for an address, oldest first."""
    return entries_for_hashes(session, [address_hash(normalise_address(address))])


def entries_for_hashes(session: Session, hashes: Sequence[str]) -> list[Suppression]:
    """Every suppression entry for these address hashes, oldest first."""
    if not hashes:
        return []
    return list(
        session.scalars(
            sa.select(Suppression)
            .where(Suppression.address_hash.in_(hashes))
            .order_by(Suppression.created_at, Suppression.id)
        )
    )


def blocks(entry: Suppression, purpose: str) -> bool:
    """Whether an entry keeps mail of a purpose from its address."""
    return entry.scope in (ALL_PURPOSES, purpose)


def listing(
    session: Session,
    *,
    scope: str | None = None,
    reason: SuppressionReason | None = None,
    limit: int = 100,
) -> tuple[list[Suppression], int]:
    """The newest entries matching the filters, and how many match in all."""
    query = sa.select(Suppression)
    if scope is not None:
        query = query.where(Suppression.scope == check_scope(scope))
    if reason is not None:
        query = query.where(Suppression.reason == SuppressionReason(reason))
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(limit))
    return list(rows), total


def carry_over(session: Session, old_hash: str, new_hash: str, *, source: str) -> int:
    """Copy the person's own oppositions from an old address to its rectified one."""
    copied = 0
    for entry in entries_for_hashes(session, [old_hash]):
        if entry.reason not in PERSONAL_REASONS:
            continue
        _, created = add_hash(
            session,
            new_hash,
            scope=entry.scope,
            reason=entry.reason,
            source=source,
            note=f"carried over on rectification from entry {entry.id}",
        )
        copied += created
    return copied
