"""Where a provider event moves a delivery: the outcome each event proves and the moves allowed.

Every move goes up one order (sent < delivered < dropped < bounced < complained), which is what
makes the final state the same whatever order duplicated and late events arrive in.
"""

from __future__ import annotations

from mailer.models import DeliveryState
from mailer.providers.events import EventKind

_S = DeliveryState

#: The delivery state an event proves. Opens, clicks and unsubscribe clicks happen in the
#: delivered mail, so they prove delivery even when the ``delivered`` event is late or lost.
EVENT_OUTCOME: dict[EventKind, DeliveryState | None] = {
    EventKind.PROCESSED: _S.SENT,
    EventKind.DEFERRED: _S.SENT,
    EventKind.DELIVERED: _S.DELIVERED,
    EventKind.OPEN: _S.DELIVERED,
    EventKind.CLICK: _S.DELIVERED,
    EventKind.UNSUBSCRIBE: _S.DELIVERED,
    EventKind.GROUP_UNSUBSCRIBE: _S.DELIVERED,
    # A resubscription happens on the provider's preference page, maybe days later: proves nothing.
    EventKind.GROUP_RESUBSCRIBE: None,
    # A block is filed as a bounce; only hard bounces suppress (mailer/provider_events/people.py).
    EventKind.BOUNCE: _S.BOUNCED,
    EventKind.BLOCKED: _S.BOUNCED,
    EventKind.DROPPED: _S.DROPPED,
    EventKind.SPAMREPORT: _S.COMPLAINED,
    EventKind.UNKNOWN: None,
}

_FROM_ANY_OUTCOME = frozenset({_S.SENT, _S.DELIVERED, _S.DROPPED, _S.BOUNCED, _S.COMPLAINED})

#: The order TRANSITIONS climbs; an event never moves a delivery down it.
OUTCOME_ORDER = (_S.SENT, _S.DELIVERED, _S.DROPPED, _S.BOUNCED, _S.COMPLAINED)

#: Where a delivery may move on a provider event.
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
