"""The right of opposition: never mail this address again (for one purpose or all), and never show
it as a tender contact. Effective for sends already queued: the gate reads the list at send time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer import consent, preferences, recipients
from mailer.addresses import address_hash, normalise_address
from mailer.models import ConsentSource, SuppressionReason
from mailer.purposes import ALL_PURPOSES, PURPOSE_KEYS, check_scope
from mailer.rights import trail
from mailer.rights.models import RightKind
from mailer.suppression import contacts, entries


@dataclass(frozen=True)
class Opposed:
    """What an opposition did."""

    new_entry: bool
    #: Consents withdrawn (the address was a recipient with these purposes granted).
    withdrawn: tuple[str, ...]


def oppose(
    session: Session,
    address: str,
    *,
    purpose: str | None,
    source: str,
    note: str | None,
    operator: str | None,
) -> Opposed:
    """Record an opposition for an address: a suppression entry, the consents it covers withdrawn."""
    normal = normalise_address(address)
    scope = check_scope(purpose) if purpose else ALL_PURPOSES
    _, created = entries.add(
        session,
        normal,
        scope=scope,
        reason=SuppressionReason.OPPOSITION,
        source=source,
        note=note,
        created_by=operator,
    )
    withdrawn: list[str] = []
    recipient = recipients.find(session, normal)
    if recipient is not None:
        for key in PURPOSE_KEYS if scope == ALL_PURPOSES else (scope,):
            if preferences.is_granted(session, recipient.id, key):
                proof = consent.Proof(
                    source=ConsentSource.SUPPORT_REQUEST, recorded_by=operator, note=note or "opposition"
                )
                consent.withdraw(session, recipient.id, key, proof)
                withdrawn.append(key)
    trail.record(
        session,
        RightKind.OPPOSITION,
        address_hash(normal),
        source=source,
        operator=operator,
        note=note,
        recipient_id=recipient.id if recipient else None,
        scope=scope,
    )
    return Opposed(created, tuple(withdrawn))


def oppose_name(session: Session, name: str, *, source: str, note: str | None, operator: str | None) -> bool:
    """Record that a tender contact known by name opposed being shown; whether it is new."""
    entry, created = contacts.add_name(session, name, source=source, note=note, created_by=operator)
    trail.record(
        session,
        RightKind.OPPOSITION,
        entry.address_hash,
        source=source,
        operator=operator,
        note=note,
        scope=ALL_PURPOSES,
    )
    return created
