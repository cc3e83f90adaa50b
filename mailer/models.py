"""Tables: recipients, the consent ledger and its derived state, suppressions, deliveries, events."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId, JSONDoc, UTCDateTime, enum_column, one_of, utcnow
from mailer.purposes import ALL_PURPOSES, CONSENT_KEYS, PURPOSE_KEYS


class AccountState(enum.StrEnum):
    """Whether the person behind a recipient still has an account with us."""

    ACTIVE = "active"
    #: Personal data removed on request; the row stays so the audit trail keeps its shape.
    ERASED = "erased"


class ConsentAction(enum.StrEnum):
    """What a consent event does."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class ConsentSource(enum.StrEnum):
    """How a consent event reached us (the proof's "how")."""

    SIGNUP_FORM = "signup_form"
    PREFERENCE_CENTRE = "preference_centre"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    ONE_CLICK = "one_click"
    SUPPORT_REQUEST = "support_request"
    IMPORT = "import"
    SENDGRID_EVENT = "sendgrid_event"
    SITE = "site"


class SuppressionReason(enum.StrEnum):
    """Why an address is on the suppression list."""

    OPPOSITION = "opposition"
    UNSUBSCRIBE = "unsubscribe"
    HARD_BOUNCE = "hard_bounce"
    SPAM_COMPLAINT = "spam_complaint"
    INVALID = "invalid"
    MANUAL = "manual"


class DeliveryState(enum.StrEnum):
    """Where one intended send stands (DESIGN.md invariant 2)."""

    #: Claimed: the send key is ours, the provider has not been called.
    PENDING = "pending"
    #: The provider call is in flight; never re-sent blindly.
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    #: The process died, or the answer never came, while the provider call was in flight.
    UNKNOWN = "unknown"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    COMPLAINED = "complained"


#: States after which the pipeline never touches a delivery again (provider events still may).
TERMINAL_STATES = frozenset(DeliveryState) - {DeliveryState.PENDING, DeliveryState.SENDING}


class Recipient(Base):
    """A person we may e-mail: one normalised address, with the language and zone to write in."""

    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Null once erased.
    address: Mapped[str | None] = mapped_column(sa.String(254), unique=True)
    address_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: The account id on NouMa's site, when the site pushed this recipient.
    external_ref: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    locale: Mapped[str] = mapped_column(sa.String(8), default="fr")
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="Europe/Paris")
    state: Mapped[AccountState] = mapped_column(
        enum_column(AccountState, "account_state"), default=AccountState.ACTIVE
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint("locale IN ('fr', 'en')", name="locale"),)


class ConsentEvent(Base):
    """One grant or withdrawal, with its proof. Append-only: the current state derives from these."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"))
    purpose: Mapped[str] = mapped_column(sa.String(32))
    action: Mapped[ConsentAction] = mapped_column(enum_column(ConsentAction, "consent_action"))
    #: When the person acted (may be earlier than ``recorded_at`` for imports).
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[ConsentSource] = mapped_column(enum_column(ConsentSource, "consent_source"))
    #: Who recorded it when not the person themself: an operator, the site, an import file.
    recorded_by: Mapped[str | None] = mapped_column(sa.String(120))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(500))
    wording_version: Mapped[str | None] = mapped_column(sa.String(64))
    partner_list_version: Mapped[str | None] = mapped_column(sa.String(64))
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint(one_of("purpose", CONSENT_KEYS), name="purpose"),
        sa.Index("ix_consent_events_recipient_purpose_at", "recipient_id", "purpose", "at", "id"),
    )


class Consent(Base):
    """The current consent of one recipient for one purpose: the latest event, kept in step."""

    __tablename__ = "consents"

    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    granted: Mapped[bool] = mapped_column(sa.Boolean)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("consent_events.id"))
    wording_version: Mapped[str | None] = mapped_column(sa.String(64))
    partner_list_version: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.CheckConstraint(one_of("purpose", CONSENT_KEYS), name="purpose"),
        sa.Index("ix_consents_purpose_granted", "purpose", "granted"),
    )


class Suppression(Base):
    """An address that must not be mailed for one purpose or for all. Keyed by the address hash."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    address_hash: Mapped[str] = mapped_column(sa.String(64))
    scope: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[SuppressionReason] = mapped_column(enum_column(SuppressionReason, "suppression_reason"))
    source: Mapped[str] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[str | None] = mapped_column(sa.String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("address_hash", "scope"),
        sa.CheckConstraint(one_of("scope", (ALL_PURPOSES, *PURPOSE_KEYS)), name="scope"),
    )


#: The states the stale-send sweep looks for, and the predicate of the index it uses.
UNSETTLED_STATES = (DeliveryState.PENDING, DeliveryState.SENDING)
UNSETTLED = one_of("state", tuple(s.value for s in UNSETTLED_STATES))


class Delivery(Base):
    """One intended send and its outcome. The send key (purpose, belongs_to, recipient) is unique."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(32))
    #: What the send is: ``campaign:42``, ``digest:daily:2026-11-26``, ``test:<uuid>``...
    belongs_to: Mapped[str] = mapped_column(sa.String(120))
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"))
    #: The e-mail kind (template folder) rendered for it.
    kind: Mapped[str] = mapped_column(sa.String(40))
    state: Mapped[DeliveryState] = mapped_column(
        enum_column(DeliveryState, "delivery_state"), default=DeliveryState.PENDING
    )
    skip_reason: Mapped[str | None] = mapped_column(sa.String(80))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(120))
    error: Mapped[str | None] = mapped_column(sa.Text)
    #: Provider calls made for it (retries counted).
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sending_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Time of the latest provider event applied.
    event_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: When the sweep last handed this pending send to the broker again (its message was lost).
    requeued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.UniqueConstraint("purpose", "belongs_to", "recipient_id", name="uq_deliveries_send_key"),
        sa.CheckConstraint(one_of("purpose", PURPOSE_KEYS), name="purpose"),
        # Only what the sweep looks for, and only sent rows' message ids: each send writes three
        # row versions, and an entry in every index for each (migration 0006).
        sa.Index(
            "ix_deliveries_unsettled",
            "state",
            "created_at",
            postgresql_where=sa.text(UNSETTLED),
            sqlite_where=sa.text(UNSETTLED),
        ),
        sa.Index("ix_deliveries_recipient_id", "recipient_id"),
        sa.Index(
            "ix_deliveries_provider_message_id",
            "provider_message_id",
            postgresql_where=sa.text("provider_message_id IS NOT NULL"),
            sqlite_where=sa.text("provider_message_id IS NOT NULL"),
        ),
    )


class DeliveryEvent(Base):
    """One provider event, stored once (keyed by its provider and the provider's event id) with
    its raw payload."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The webhook source that reported it (``/webhooks/<provider>``): two providers' ids may meet.
    provider: Mapped[str] = mapped_column(sa.String(20))
    provider_event_id: Mapped[str] = mapped_column(sa.String(120))
    delivery_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deliveries.id"))
    type: Mapped[str] = mapped_column(sa.String(40))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc)

    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_event_id"),
        sa.Index("ix_delivery_events_delivery_id", "delivery_id"),
    )
