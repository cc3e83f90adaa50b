"""What people change themselves: unsubscribe links, their undo, and the preference centre.

Every change is a consent event (mailer/consent.py) with its proof; "stop everything" also puts
the address on the suppression list for all purposes. The web pages call these; nothing here
knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import consent
from mailer.config import get_settings
from mailer.models import (
    AccountState,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    Recipient,
    SuppressionReason,
)
from mailer.purposes import ALL_PURPOSES, CONSENTS
from mailer.suppression import entries

#: Version of the wording the preference centre shows beside each purpose
#: (templates/web/preferences.html): recorded on every grant made there.
PREFERENCE_CENTRE_WORDING = "preference-centre-2026-11"

#: Sources of withdrawals a person makes with one of our links; an undo may reverse these only.
LINK_SOURCES = (ConsentSource.ONE_CLICK, ConsentSource.UNSUBSCRIBE_LINK)

#: Sources whose withdrawals ``mailer stats unsubscribes`` measures.
UNSUBSCRIBE_SOURCES = (
    ConsentSource.ONE_CLICK,
    ConsentSource.UNSUBSCRIBE_LINK,
    ConsentSource.PREFERENCE_CENTRE,
    ConsentSource.SENDGRID_EVENT,
)
#: ``recorded_by`` of the events the person made through the product itself: the web pages
#: (``web``; null before it was written) and the provider's events (``sendgrid``). Imports and
#: operators name themselves: history imported with these sources is not a request we answered.
RECORDED_BY_WEB = "web"
PRODUCT_RECORDERS = (RECORDED_BY_WEB, "sendgrid")


@dataclass(frozen=True)
class PurposeChoice:
    """One purpose as the preference centre shows it."""

    key: str
    label: str
    granted: bool
    #: On the suppression list for this purpose (or all): not switchable here.
    stopped: bool
    #: Whether the page may offer to turn it on.
    can_grant: bool


@dataclass(frozen=True)
class Preferences:
    """A recipient's preferences: each purpose, and whether everything is stopped."""

    recipient_id: int
    purposes: list[PurposeChoice]
    #: When an all-purposes suppression was recorded, if there is one.
    stopped_all_since: dt.datetime | None
    partner_names: list[str]


def active_recipient(session: Session, recipient_id: int) -> Recipient | None:
    """The recipient a valid link names, unless erased or gone."""
    recipient = session.get(Recipient, recipient_id)
    if recipient is None or recipient.state != AccountState.ACTIVE or not recipient.address_hash:
        return None
    return recipient


def preferences(session: Session, recipient: Recipient) -> Preferences:
    """The current state of every purpose for a recipient."""
    settings = get_settings()
    current = consent.current(session, recipient.id)
    suppressions = entries.entries_for_hashes(session, [recipient.address_hash or ""])
    stopped_scopes = {e.scope for e in suppressions}
    stopped_all = next((e.created_at for e in suppressions if e.scope == ALL_PURPOSES), None)
    choices = []
    for key, purpose in CONSENTS.items():
        stopped = ALL_PURPOSES in stopped_scopes or key in stopped_scopes
        granted = bool(current.get(key) and current[key].granted)
        can_grant = not stopped and (
            not purpose.needs_partner_list or settings.partner_list_version is not None
        )
        choices.append(PurposeChoice(key, purpose.label, granted, stopped, can_grant))
    return Preferences(recipient.id, choices, stopped_all, settings.partner_names())


def _hold(session: Session, recipient_id: int) -> None:
    """Lock the recipient's row until the transaction ends, before reading what a change depends on.

    Under READ COMMITTED two one-click POSTs at the same moment would both read "granted" and
    both record a withdrawal; the second now waits, then reads the first one's event. SQLite's
    write transactions (BEGIN IMMEDIATE) are serial already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(Recipient.id).where(Recipient.id == recipient_id).with_for_update())


def is_granted(session: Session, recipient_id: int, purpose: str) -> bool:
    """Whether the recipient's consent for the purpose is granted now."""
    state = consent.current(session, recipient_id).get(purpose)
    return bool(state and state.granted)


def unsubscribe(session: Session, recipient_id: int, purpose: str, proof: consent.Proof) -> bool:
    """Withdraw one purpose through an unsubscribe link; False when it was not granted anyway.

    A second click (mail clients retry one-click POSTs) records nothing more and is a success.
    """
    _hold(session, recipient_id)
    if not is_granted(session, recipient_id, purpose):
        return False
    consent.withdraw(session, recipient_id, purpose, proof)
    return True


def undo_unsubscribe(session: Session, recipient_id: int, purpose: str, proof: consent.Proof) -> bool:
    """Re-grant a purpose withdrawn through an unsubscribe link; False when there is nothing to undo.

    The grant carries the wording and partner list versions of the grant it restores, and a note
    naming the withdrawal it undoes.
    """
    _hold(session, recipient_id)
    last = consent.latest_event(session, recipient_id, purpose)
    if last is None or last.action != ConsentAction.WITHDRAWN or last.source not in LINK_SOURCES:
        return False
    restored = consent.latest_event(session, recipient_id, purpose, ConsentAction.GRANTED)
    if restored is None:
        return False
    consent.grant(
        session,
        recipient_id,
        purpose,
        consent.Proof(
            source=ConsentSource.UNSUBSCRIBE_LINK,
            at=proof.at,
            ip=proof.ip,
            user_agent=proof.user_agent,
            wording_version=restored.wording_version,
            partner_list_version=restored.partner_list_version,
            note=f"undo of unsubscribe: reverses consent event {last.id}",
        ),
    )
    return True


def can_undo(session: Session, recipient_id: int, purpose: str) -> bool:
    """Whether the latest event of the purpose is a withdrawal made with an unsubscribe link."""
    last = consent.latest_event(session, recipient_id, purpose)
    return last is not None and last.action == ConsentAction.WITHDRAWN and last.source in LINK_SOURCES


def update(
    session: Session, recipient: Recipient, wanted: Mapping[str, bool], proof: consent.Proof
) -> dict[str, ConsentAction]:
    """Apply the preference centre's switches; returns what changed, by purpose.

    Purposes on the suppression list, and partner offers without a configured partner list,
    are never turned on here.
    """
    settings = get_settings()
    _hold(session, recipient.id)
    now = preferences(session, recipient)
    changed: dict[str, ConsentAction] = {}
    for choice in now.purposes:
        if choice.key not in wanted or wanted[choice.key] == choice.granted:
            continue
        if wanted[choice.key]:
            if not choice.can_grant:
                continue
            purpose = CONSENTS[choice.key]
            consent.grant(
                session,
                recipient.id,
                choice.key,
                consent.Proof(
                    source=ConsentSource.PREFERENCE_CENTRE,
                    at=proof.at,
                    ip=proof.ip,
                    user_agent=proof.user_agent,
                    wording_version=PREFERENCE_CENTRE_WORDING,
                    partner_list_version=settings.partner_list_version
                    if purpose.needs_partner_list
                    else None,
                ),
            )
            changed[choice.key] = ConsentAction.GRANTED
        else:
            consent.withdraw(session, recipient.id, choice.key, proof)
            changed[choice.key] = ConsentAction.WITHDRAWN
    return changed


def stop_everything(session: Session, recipient: Recipient, proof: consent.Proof) -> bool:
    """Withdraw every purpose and oppose all mail to the address; False when already stopped."""
    _hold(session, recipient.id)
    for purpose in CONSENTS:
        if is_granted(session, recipient.id, purpose):
            consent.withdraw(session, recipient.id, purpose, proof)
    _, created = entries.add_hash(
        session,
        recipient.address_hash or "",
        scope=ALL_PURPOSES,
        reason=SuppressionReason.OPPOSITION,
        source=ConsentSource.PREFERENCE_CENTRE.value,
        note="stop everything, from the preference centre",
    )
    return created


@dataclass(frozen=True)
class UnsubscribeDelay:
    """One withdrawal: how it came, and how long from the person's request to the gate seeing it."""

    source: ConsentSource
    requested_at: dt.datetime
    delay: dt.timedelta


def unsubscribe_delays(session: Session, since: dt.datetime) -> list[UnsubscribeDelay]:
    """Withdrawals made by people since a date, with their request-to-effect delay.

    ``at`` is when the person asked (the web request's arrival, or SendGrid's event time);
    ``recorded_at`` is written in the transaction that makes the gate refuse from its commit on.
    """
    rows = session.execute(
        sa.select(ConsentEvent.source, ConsentEvent.at, ConsentEvent.recorded_at)
        .where(
            ConsentEvent.action == ConsentAction.WITHDRAWN,
            ConsentEvent.source.in_(UNSUBSCRIBE_SOURCES),
            sa.or_(ConsentEvent.recorded_by.in_(PRODUCT_RECORDERS), ConsentEvent.recorded_by.is_(None)),
            ConsentEvent.recorded_at >= since,
        )
        .order_by(ConsentEvent.recorded_at)
    )
    return [
        UnsubscribeDelay(row.source, row.at, max(row.recorded_at - row.at, dt.timedelta(0))) for row in rows
    ]
