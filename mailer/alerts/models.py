"""Tables of tender alerts: tenders, saved searches, geolocation consent, digest runs and contents."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.alerts.notice_kinds import NoticeKind
from mailer.db import Base, BigId, JSONDoc, UTCDateTime, enum_column, utcnow

#: Rows stored before a list column existed hold an empty list.
EMPTY_LIST = sa.text("'[]'")


class Frequency(enum.StrEnum):
    """How often a saved search's digest goes out."""

    DAILY = "daily"
    WEEKLY = "weekly"


class Tender(Base):
    """A public tender (appel d'offres). Its id orders arrivals: the digests' high-water marks use it."""

    __tablename__ = "tenders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The publisher's reference, prefixed by its source for outside feeds (``ted:129979-2016``).
    reference: Mapped[str] = mapped_column(sa.String(120), unique=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    title: Mapped[str] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)
    buyer_name: Mapped[str | None] = mapped_column(sa.String(1000))
    buyer_town: Mapped[str | None] = mapped_column(sa.String(120))
    #: The buyer's contact person: personal data (policy article 5), hidden when they opposed.
    contact_name: Mapped[str | None] = mapped_column(sa.String(500))
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(40))
    #: CPV codes, 8 digits without the check digit, main code first.
    cpv_codes: Mapped[list[str]] = mapped_column(JSONDoc)
    departments: Mapped[list[str]] = mapped_column(JSONDoc)
    regions: Mapped[list[str]] = mapped_column(JSONDoc)
    latitude: Mapped[float | None] = mapped_column(sa.Float)
    longitude: Mapped[float | None] = mapped_column(sa.Float)
    published_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    deadline_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: Local time of day (Europe/Paris) of the deadline, when the notice gives one.
    deadline_time: Mapped[dt.time | None] = mapped_column(sa.Time)
    #: Estimated total value in cents (integers: exact on SQLite too).
    value_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    value_currency: Mapped[str | None] = mapped_column(sa.String(3))
    url: Mapped[str | None] = mapped_column(sa.String(1000))
    #: What the notice is (``mailer/alerts/notice_kinds.py`` says which kinds are announced):
    #: ``competition``, ``planning``, ``change``, ``cancellation``.
    notice_kind: Mapped[NoticeKind] = mapped_column(
        enum_column(NoticeKind, "notice_kind", length=16), server_default=NoticeKind.COMPETITION.value
    )
    #: The publisher's notice type: eForms ``cn-standard``, TED ``ted:3``, BOAMP ``boamp:APPEL_OFFRE``.
    notice_type: Mapped[str | None] = mapped_column(sa.String(40))
    #: eForms: the notice (BT-701) and its version (BT-757), its procedure (BT-04), and for a
    #: change notice the notice it changes, as eForms writes it (BT-758, ``<notice id>-<version>``).
    notice_id: Mapped[str | None] = mapped_column(sa.String(64))
    notice_version: Mapped[str | None] = mapped_column(sa.String(8))
    procedure_id: Mapped[str | None] = mapped_column(sa.String(64))
    changes_notice_id: Mapped[str | None] = mapped_column(sa.String(80))
    #: ``[{"id": "LOT-0001", "title": ..., "cpv": [...]}, ...]``
    lots: Mapped[list[Any]] = mapped_column(JSONDoc, default=list, server_default=EMPTY_LIST)
    #: The publisher's keywords (BOAMP's descriptors).
    descriptors: Mapped[list[str]] = mapped_column(JSONDoc, default=list, server_default=EMPTY_LIST)
    #: A text still holds U+FFFD after repair: a character was lost before the notice reached us.
    text_damaged: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.Index("ix_tenders_received_at", "received_at"),
        sa.Index("ix_tenders_notice_id", "notice_id"),
        sa.Index("ix_tenders_procedure_id", "procedure_id"),
    )


class SavedSearch(Base):
    """One saved search of a recipient, with its own high-water mark."""

    __tablename__ = "saved_searches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"))
    #: The search's id on NouMa's site: imports update by it.
    external_ref: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: Shown to the recipient ("Voirie Isère").
    name: Mapped[str] = mapped_column(sa.String(120))
    #: Order among the recipient's searches: a tender matching several is shown under the first.
    position: Mapped[int] = mapped_column(sa.Integer, default=0)
    frequency: Mapped[Frequency] = mapped_column(enum_column(Frequency, "search_frequency", length=16))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    #: The query as typed: words, "phrases", -exclusions.
    keywords: Mapped[str] = mapped_column(sa.Text, default="")
    cpv_prefixes: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    departments: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    regions: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    #: Value bounds in whole euros (a tender of unknown value passes them).
    min_value: Mapped[int | None] = mapped_column(sa.BigInteger)
    max_value: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: Around the recipient's stored location; used only while their geolocation consent is granted.
    radius_km: Mapped[float | None] = mapped_column(sa.Float)
    #: Highest tender id already announced by this search (null: none yet; the window start applies).
    announced_up_to: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.Index("ix_saved_searches_frequency_recipient", "frequency", "recipient_id", "position", "id"),
        sa.Index("ix_saved_searches_recipient_id", "recipient_id"),
    )


class Geolocation(Base):
    """A recipient's stored location and the express consent needed to use it (NouMa's policy)."""

    __tablename__ = "recipient_geolocations"

    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"), primary_key=True)
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    consent_granted: Mapped[bool] = mapped_column(sa.Boolean)
    consent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    consent_source: Mapped[str] = mapped_column(sa.String(40))
    wording_version: Mapped[str | None] = mapped_column(sa.String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DigestRun(Base):
    """One digest window of one frequency: planned once, whatever runs it again."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frequency: Mapped[Frequency] = mapped_column(enum_column(Frequency, "digest_frequency", length=16))
    #: ``2026-11-26`` (daily) or the Monday of the week (weekly).
    window: Mapped[str] = mapped_column(sa.String(10))
    #: Highest tender id the run could see: every search announces up to it.
    tender_high_water: Mapped[int] = mapped_column(sa.BigInteger)
    planned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    recipients: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Recipients with something to announce (the others are recorded ``empty_digest``).
    digests: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Timings and counts of the planning (seconds, no personal data).
    stats: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)

    __table_args__ = (sa.UniqueConstraint("frequency", "window"),)


class Digest(Base):
    """What one recipient's digest of a run announces, fixed at planning so a re-run sends the same."""

    __tablename__ = "digests"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("digest_runs.id", ondelete="CASCADE"), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"), primary_key=True)
    #: ``[[search_id, [tender_id, ...], matched_count], ...]`` in the recipient's search order.
    sections: Mapped[list[Any]] = mapped_column(JSONDoc)
    tender_count: Mapped[int] = mapped_column(sa.Integer)
