"""What a provider event says about the person: suppressions and consent.

Applied whether or not a delivery of ours matches: a hard bounce suppresses the address for every
purpose, a spam complaint for the marketing purposes, a drop for a lasting reason as that reason
says; an unsubscribe withdraws consent, and a resubscription undoes only what such an
unsubscribe withdrew.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import consent
from mailer.models import ConsentAction, Recipient, SuppressionReason
from mailer.provider_events.correlation import EventDelivery, hash_or_none
from mailer.provider_events.outcome import ApplyOutcome
from mailer.providers.events import DropReason, EventKind, ProviderEvent
from mailer.providers.webhook import WebhookSource
from mailer.purposes import ALL_PURPOSES, MARKETING_PURPOSE_KEYS, PURPOSE_KEYS
from mailer.suppression import entries

#: A drop for one of these reasons means the address is already on one of the provider's own
#: suppression lists, so ours records it too.
DROP_SUPPRESSIONS: dict[DropReason, tuple[SuppressionReason, tuple[str, ...]]] = {
    DropReason.BOUNCED_ADDRESS: (SuppressionReason.HARD_BOUNCE, (ALL_PURPOSES,)),
    DropReason.INVALID_ADDRESS: (SuppressionReason.INVALID, (ALL_PURPOSES,)),
    DropReason.REPORTED_SPAM: (SuppressionReason.SPAM_COMPLAINT, MARKETING_PURPOSE_KEYS),
}


def apply_to_person(
    session: Session,
    source: WebhookSource,
    event: ProviderEvent,
    delivery: EventDelivery | None,
    outcome: ApplyOutcome,
) -> None:
    """Record what ``event`` says about its person, counting it in ``outcome``."""
    kind = event.kind
    suppression: tuple[SuppressionReason, tuple[str, ...]] | None = None
    if kind == EventKind.BOUNCE:
        suppression = (SuppressionReason.HARD_BOUNCE, (ALL_PURPOSES,))
    elif kind == EventKind.SPAMREPORT:
        suppression = (SuppressionReason.SPAM_COMPLAINT, MARKETING_PURPOSE_KEYS)
    elif kind == EventKind.DROPPED and event.drop_reason is not None:
        suppression = DROP_SUPPRESSIONS[event.drop_reason]
    if suppression is not None:
        _suppress(session, source, event, delivery, *suppression, outcome)
    if kind in (EventKind.UNSUBSCRIBE, EventKind.GROUP_UNSUBSCRIBE):
        _withdraw(session, source, event, delivery, outcome)
    elif kind == EventKind.GROUP_RESUBSCRIBE:
        _resubscribe(session, source, event, delivery, outcome)


def _suppress(
    session: Session,
    source: WebhookSource,
    event: ProviderEvent,
    delivery: EventDelivery | None,
    reason: SuppressionReason,
    scopes: Sequence[str],
    outcome: ApplyOutcome,
) -> None:
    # The address that bounced or complained is the event's; our recipient's address is the
    # fallback (it may have been rectified since, so it is second best).
    hashed = hash_or_none(event.email) or (delivery.address_hash if delivery else None)
    if hashed is None:
        outcome.not_applied["no_address"] += 1
        return
    detail = f"{source.label} {event.name}" + (f": {event.reason}" if event.reason else "")
    for scope in scopes:
        _, created = entries.add_hash(
            session,
            hashed,
            scope=scope,
            reason=reason,
            source=f"{source.name}:{event.kind.value}",
            note=f"{detail[:400]} (event {event.event_id})",
            created_by=source.name,
        )
        outcome.suppressions_added += created


def _recipient_id(session: Session, event: ProviderEvent, delivery: EventDelivery | None) -> int | None:
    if delivery is not None:
        return delivery.recipient_id
    hashed = hash_or_none(event.email)
    if hashed is None:
        return None
    return session.scalar(sa.select(Recipient.id).where(Recipient.address_hash == hashed))


def _purposes(event: ProviderEvent, delivery: EventDelivery | None) -> tuple[str, ...] | None:
    """The purposes an unsubscribe event is about; None when nothing says which."""
    if event.group_purpose is not None:
        return (event.group_purpose,)
    if delivery is not None:
        return (delivery.purpose,)
    if event.kind == EventKind.UNSUBSCRIBE:
        # A global unsubscribe: the provider drops every later mail to the address, whatever its
        # purpose, so the ledger records the withdrawal of every purpose.
        return PURPOSE_KEYS
    return None


def _withdraw(
    session: Session,
    source: WebhookSource,
    event: ProviderEvent,
    delivery: EventDelivery | None,
    outcome: ApplyOutcome,
) -> None:
    recipient_id = _recipient_id(session, event, delivery)
    purposes = _purposes(event, delivery)
    if recipient_id is None or purposes is None:
        outcome.not_applied["unsubscribe_unmatched"] += 1
        return
    current = consent.current(session, recipient_id)
    for purpose in purposes:
        state = current.get(purpose)
        if state is None or not state.granted:
            continue
        consent.withdraw(session, recipient_id, purpose, _proof(source, event))
        outcome.consents_withdrawn += 1


def _resubscribe(
    session: Session,
    source: WebhookSource,
    event: ProviderEvent,
    delivery: EventDelivery | None,
    outcome: ApplyOutcome,
) -> None:
    """Undo a group unsubscribe made at the provider, and only that.

    A withdrawal made through our own pages or the support desk is the person's word to us; a
    click on the provider's generic preference page does not overturn it.
    """
    recipient_id = _recipient_id(session, event, delivery)
    purposes = _purposes(event, delivery)
    if recipient_id is None or purposes is None:
        outcome.not_applied["resubscribe_unmatched"] += 1
        return
    for purpose in purposes:
        last = consent.latest_event(session, recipient_id, purpose)
        if (
            last is None
            or last.action != ConsentAction.WITHDRAWN
            or last.source != source.consent_source
            or last.at > event.occurred_at
        ):
            outcome.not_applied[f"resubscribe_without_{source.name}_unsubscribe"] += 1
            continue
        grant = consent.latest_event(session, recipient_id, purpose, ConsentAction.GRANTED)
        consent.grant(
            session,
            recipient_id,
            purpose,
            _proof(
                source,
                event,
                note=f"undoes consent event {last.id}",
                wording_version=grant.wording_version if grant else None,
                partner_list_version=grant.partner_list_version if grant else None,
            ),
        )
        outcome.consents_regranted += 1


def _proof(
    source: WebhookSource, event: ProviderEvent, note: str | None = None, **versions: str | None
) -> consent.Proof:
    group = f" (group {event.unsubscribe_group})" if event.unsubscribe_group is not None else ""
    text = f"{source.label} {event.name}{group}, event {event.event_id}" + (f"; {note}" if note else "")
    return consent.Proof(
        source=source.consent_source,
        at=event.occurred_at,
        ip=event.ip,
        user_agent=event.user_agent,
        recorded_by=source.name,
        note=text,
        **versions,
    )
