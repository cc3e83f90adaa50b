"""Tables of article 5: the spellings tender contacts are known by, and those of opposed people.

Both hold hashes only (SHA-256, like the suppression list's addresses): no name is stored in
clear. A tender contact is hidden when one of its keys is an opposed person's key (or the hash of
an opposed address).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId


class TenderContactKey(Base):
    """A key under which a tender's contact may be opposed: its address hash or a name spelling's."""

    __tablename__ = "tender_contact_keys"

    tender_id: Mapped[int] = mapped_column(sa.ForeignKey("tenders.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)

    __table_args__ = (sa.Index("ix_tender_contact_keys_key", "key"),)


class OpposedNameKey(Base):
    """One spelling of the name of a person who opposed (a suppression entry recorded by name)."""

    __tablename__ = "opposed_name_keys"

    suppression_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("suppressions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)

    __table_args__ = (sa.Index("ix_opposed_name_keys_key", "key"),)
