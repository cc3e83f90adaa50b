"""The right of rectification: a new address for a person, with their history and oppositions."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer import recipients
from mailer.addresses import address_hash, normalise_address
from mailer.rights import trail
from mailer.rights.models import RightKind
from mailer.suppression import entries


@dataclass(frozen=True)
class Rectified:
    """What a rectification did, and what the new address already had against it."""

    recipient_id: int
    #: Suppression entries the new address had before (the gate applies them from now on).
    new_address_entries: tuple[str, ...]


def rectify(
    session: Session, old: str, new: str, *, source: str, note: str | None, operator: str | None
) -> Rectified:
    """Move a recipient to a new address. Deliveries and consents keep pointing at the person; the
    old address stays suppressed wherever it was, and the person's own oppositions follow them."""
    new_normal = normalise_address(new)
    already = tuple(f"{e.scope}: {e.reason.value}" for e in entries.entries_for(session, new_normal))
    old_hash = address_hash(normalise_address(old))
    recipient = recipients.rectify(session, old, new, recorded_by=operator or source)
    trail.record(
        session,
        RightKind.RECTIFICATION,
        old_hash,
        source=source,
        operator=operator,
        note=note,
        recipient_id=recipient.id,
        new_subject_hash=address_hash(new_normal),
    )
    return Rectified(recipient.id, already)
