"""Tables: campaigns, their per-locale content, their batches, and the partner lists people consent to."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId, JSONDoc, UTCDateTime, enum_column, one_of, utcnow
from mailer.purposes import MARKETING_PURPOSE_KEYS


class CampaignState(enum.StrEnum):
    """Where a campaign stands."""

    #: Created, content compiled; nothing queued.
    DRAFT = "draft"
    #: Queued with a send time still to come; the audience is resolved when it starts.
    SCHEDULED = "scheduled"
    #: Audience resolved into batches; batches are going out.
    RUNNING = "running"
    #: No new batch starts (an operator, the error budget or the complaint breaker said so).
    PAUSED = "paused"
    COMPLETED = "completed"
    #: Stopped for good; every recipient not yet sent to is recorded skipped ``campaign_cancelled``.
    CANCELLED = "cancelled"


#: States a campaign never leaves.
FINISHED_CAMPAIGN_STATES = frozenset({CampaignState.COMPLETED, CampaignState.CANCELLED})


class BatchState(enum.StrEnum):
    """Where one campaign batch stands."""

    #: Recorded; no message for it in the broker (not yet released, or its campaign is paused).
    PENDING = "pending"
    #: A message for it is in the broker (or should be: see ``lease_until``).
    QUEUED = "queued"
    #: A worker has it.
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


#: Batches that have a message somewhere, or a worker on them.
IN_FLIGHT_BATCH_STATES = (BatchState.QUEUED, BatchState.RUNNING)
#: Batches with nothing left to do.
FINISHED_BATCH_STATES = (BatchState.DONE, BatchState.CANCELLED)


class PauseCause(enum.StrEnum):
    """Who paused a campaign."""

    OPERATOR = "operator"
    ERROR_BUDGET = "error_budget"
    COMPLAINT_BREAKER = "complaint_breaker"


class PartnerList(Base):
    """One version of the list of partners shown to people when they consent to partner offers."""

    __tablename__ = "partner_lists"

    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    #: The partners' names as shown on the consent form.
    partners: Mapped[list[str]] = mapped_column(JSONDoc)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(120))


class Campaign(Base):
    """A marketing mail written by the marketing team, sent to an audience under one purpose."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    purpose: Mapped[str] = mapped_column(sa.String(32))
    #: Partner offers only: the partner the mail is about, and the list version naming it.
    partner: Mapped[str | None] = mapped_column(sa.String(200))
    partner_list_version: Mapped[str | None] = mapped_column(sa.ForeignKey("partner_lists.version"))
    #: Audience expression over recipient attributes (mailer/campaigns/audience.py); null: everyone.
    audience: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[CampaignState] = mapped_column(
        enum_column(CampaignState, "campaign_state"), default=CampaignState.DRAFT
    )
    send_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(120))
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: When the audience was resolved into batches.
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recipients_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    batches_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    paused_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[PauseCause | None] = mapped_column(enum_column(PauseCause, "pause_cause"))
    pause_reason: Mapped[str | None] = mapped_column(sa.Text)
    #: Recipients whose send failed since the last success (the error budget).
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: SendGrid answered 429: no batch of this campaign starts before this time.
    held_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rate_limited: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The complaint breaker looks only at deliveries after this id (moved on a forced resume).
    breaker_after_delivery_id: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    __table_args__ = (
        sa.CheckConstraint(one_of("purpose", MARKETING_PURPOSE_KEYS), name="purpose"),
        sa.CheckConstraint(
            "(purpose = 'partner_offers') = (partner IS NOT NULL AND partner_list_version IS NOT NULL)",
            name="partner",
        ),
        sa.Index("ix_campaigns_state", "state"),
    )

    @property
    def belongs_to(self) -> str:
        """The send key part of this campaign's deliveries."""
        return belongs_to(self.id)


def belongs_to(campaign_id: int) -> str:
    """``campaign:<id>``: what a campaign's deliveries are."""
    return f"campaign:{campaign_id}"


class CampaignContent(Base):
    """One locale of a campaign: subject, HTML and text as written (Jinja2, rendered in a sandbox)."""

    __tablename__ = "campaign_contents"

    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"), primary_key=True)
    locale: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    subject: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)


class CampaignBatch(Base):
    """Up to 1000 recipients of a campaign, fixed when it starts; one Dramatiq message sends them."""

    __tablename__ = "campaign_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"))
    number: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[BatchState] = mapped_column(
        enum_column(BatchState, "campaign_batch_state"), default=BatchState.PENDING
    )
    recipient_ids: Mapped[list[int]] = mapped_column(JSONDoc)
    size: Mapped[int] = mapped_column(sa.Integer)
    #: A queued or running batch not finished by then was lost (broker flushed, worker killed).
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "number"),
        sa.Index("ix_campaign_batches_campaign_id_state", "campaign_id", "state"),
    )
