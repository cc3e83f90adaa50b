"""The raw webhook batches, stored as received before any worker reads them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId, JSONDoc, UTCDateTime, utcnow


class WebhookBatch(Base):
    """One verified provider webhook post, kept whole so a worker can apply it (ids on the queue).

    The body holds e-mail addresses: it never travels in a Dramatiq message, only this row's id.
    """

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The webhook source that verified it (``/webhooks/<provider>``); its parser reads the body.
    provider: Mapped[str] = mapped_column(sa.String(20))
    #: The raw body, exactly as signed (UTF-8 JSON for SendGrid).
    body: Mapped[str] = mapped_column(sa.Text)
    #: The timestamp the provider signed.
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set once its events are applied (duplicates skipped); null while waiting for a worker.
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: What applying it did (counts only) or why it could not be read.
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)

    __table_args__ = (sa.Index("ix_webhook_batches_applied_at_received_at", "applied_at", "received_at"),)
