"""Which of our deliveries a provider event is about.

Every message carries our delivery id in its custom args, which the provider echoes on each
event. Mail sent before that has only the provider's id of the request, shared by its
recipients: the event's address tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.addresses import address_hash, normalise_address
from mailer.db import id_in, in_chunks
from mailer.errors import InvalidAddress
from mailer.models import Delivery, Recipient
from mailer.providers.events import ProviderEvent

#: Ids per lookup statement (bound-parameter limits on SQLite).
LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class EventDelivery:
    """What applying an event needs of the delivery it is about."""

    id: int
    purpose: str
    recipient_id: int
    address_hash: str | None


def correlate(session: Session, events: Sequence[ProviderEvent]) -> dict[str, EventDelivery | None]:
    """Our delivery each event is about (by event id), by the ``delivery_id`` custom arg, else
    the provider's message id and the address."""
    by_id: dict[int, EventDelivery] = {}
    wanted = sorted({e.delivery_id for e in events if e.delivery_id is not None})
    for chunk in in_chunks(wanted, LOOKUP_CHUNK):
        for row in session.execute(
            sa.select(Delivery.id, Delivery.purpose, Delivery.recipient_id, Recipient.address_hash)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(id_in(session, Delivery.id, chunk))
        ):
            by_id[row.id] = EventDelivery(row.id, row.purpose, row.recipient_id, row.address_hash)
    by_message: dict[tuple[str, str], EventDelivery] = {}
    fallback = {
        (e.message_id, hash_or_none(e.email) or "")
        for e in events
        if e.delivery_id is None and e.message_id and e.email
    }
    prefixes = sorted({message_id for message_id, _ in fallback})
    for chunk in in_chunks(prefixes, LOOKUP_CHUNK):
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
                by_message[key] = EventDelivery(
                    match.id, match.purpose, match.recipient_id, match.address_hash
                )
    found: dict[str, EventDelivery | None] = {}
    for event in events:
        if event.delivery_id is not None:
            found[event.event_id] = by_id.get(event.delivery_id)
        elif event.message_id and event.email:
            found[event.event_id] = by_message.get((event.message_id, hash_or_none(event.email) or ""))
        else:
            found[event.event_id] = None
    return found


def hash_or_none(email: str | None) -> str | None:
    """The hash our records key an address by; None for no address or one that does not parse."""
    if not email:
        return None
    try:
        return address_hash(normalise_address(email))
    except InvalidAddress:
        return None
