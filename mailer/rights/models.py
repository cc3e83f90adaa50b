"""The support desk's record of the rights it exercised, keyed by address hash (no address in clear)."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId, UTCDateTime, enum_column, utcnow


class RightKind(enum.StrEnum):
    """Which right a request exercised (NouMa's privacy policy)."""

    ACCESS = "access"
    OPPOSITION = "opposition"
    RECTIFICATION = "rectification"
    ERASURE = "erasure"


class RightsRequest(Base):
    """One request answered by the support desk: what, for whom (a hash), who did it, when.

    It outlives an erasure: the trail shows the request was honoured without saying for whom in
    clear. A rectification keeps the old and the new address's hashes.
    """

    __tablename__ = "rights_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[RightKind] = mapped_column(enum_column(RightKind, "right_kind", length=16))
    subject_hash: Mapped[str] = mapped_column(sa.String(64))
    #: Rectification: the new address's hash.
    new_subject_hash: Mapped[str | None] = mapped_column(sa.String(64))
    recipient_id: Mapped[int | None] = mapped_column(BigId)
    #: Opposition: the purpose, or ``all``.
    scope: Mapped[str | None] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.Text)
    operator: Mapped[str | None] = mapped_column(sa.String(120))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_rights_requests_subject_hash", "subject_hash"),)
