"""Provider-neutral delivery events: what a webhook source turns a provider's post into.

Each provider's webhook module (``sendgrid_webhook.py``) reads its own JSON into these objects;
``mailer/provider_events`` applies them, whichever provider sent them (in the manner of
django-anymail's ``AnymailTrackingEvent`` and ``EventType``).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any


class EventKind(enum.StrEnum):
    """What a provider event means to us (the value is stored as the event's type)."""

    PROCESSED = "processed"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    #: A permanent bounce: the mailbox does not exist or refuses for good.
    BOUNCE = "bounce"
    #: A temporary refusal (reputation, content): filed as a bounce, never suppresses.
    BLOCKED = "blocked"
    DROPPED = "dropped"
    SPAMREPORT = "spamreport"
    OPEN = "open"
    CLICK = "click"
    #: The person left every mail of ours at the provider (SendGrid's global unsubscribe).
    UNSUBSCRIBE = "unsubscribe"
    #: The person left one of the provider's unsubscribe groups.
    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GROUP_RESUBSCRIBE = "group_resubscribe"
    #: A type we do not know: stored with its name, no effect.
    UNKNOWN = "unknown"


class DropReason(enum.StrEnum):
    """Why the provider dropped a mail, when the reason says something lasting about the address."""

    #: The address bounced before: it is on the provider's bounce list.
    BOUNCED_ADDRESS = "bounced_address"
    #: The address is not one a mail can be sent to.
    INVALID_ADDRESS = "invalid_address"
    #: The person reported mail as spam before: on the provider's spam report list.
    REPORTED_SPAM = "reported_spam"


@dataclass(frozen=True)
class ProviderEvent:
    """One event as the provider reported it, in our words; ``payload`` keeps its JSON whole."""

    #: The provider's id of the event (dedupe key with the provider's name); a hash of the
    #: content when the provider gave none.
    event_id: str
    kind: EventKind
    #: The event name as the provider sent it (unknown types are stored under it).
    name: str
    occurred_at: dt.datetime
    payload: dict[str, Any]
    #: Our delivery id, echoed from the custom args every message carries.
    delivery_id: int | None = None
    email: str | None = None
    #: The provider's id of the request that carried the mail (what the backend's send returned).
    message_id: str | None = None
    #: The provider's unsubscribe group the event names, and the purpose the settings map it to.
    unsubscribe_group: int | None = None
    group_purpose: str | None = None
    #: The provider's own words on why (a bounce's or a drop's reason).
    reason: str | None = None
    drop_reason: DropReason | None = None
    ip: str | None = None
    user_agent: str | None = None


def content_id(item: Any) -> str:
    """An id for an event the provider gave none: the same content is the same event."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def storable(document: Any) -> Any:
    """The document without what databases refuse: NUL characters and lone UTF-16 surrogates.

    Both can only come from JSON escapes (``\\u0000``, ``\\ud800``); they become U+FFFD / "?".
    """
    text = json.dumps(document, ensure_ascii=False)
    cleaned = text.replace("\\u0000", "\\ufffd").encode("utf-8", errors="replace").decode("utf-8")
    return document if cleaned == text else json.loads(cleaned)
