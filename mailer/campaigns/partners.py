"""Partner lists: the partners named on the consent form, by version, never changed once recorded.

A partner_offers consent covers a campaign when the list version it was given for names the
campaign's partner (CNIL guidance: people consent to the partners shown to them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.campaigns.models import PartnerList
from mailer.errors import InvalidInput


def add_partner_list(
    session: Session, version: str, partners: Sequence[str], *, created_by: str
) -> PartnerList:
    """Record the partners named on the consent form under a list version (once per version)."""
    version = version.strip()
    names = [p.strip() for p in partners if p.strip()]
    if not version or not names:
        raise InvalidInput("a partner list needs a version and at least one partner")
    if session.get(PartnerList, version) is not None:
        raise InvalidInput(f"partner list {version!r} already exists; a version never changes")
    entry = PartnerList(version=version, partners=names, created_by=created_by)
    session.add(entry)
    session.flush()
    return entry


def partner_lists(session: Session) -> list[PartnerList]:
    return list(session.scalars(sa.select(PartnerList).order_by(PartnerList.created_at, PartnerList.version)))


def covering_versions(session: Session, partner: str) -> tuple[str, ...]:
    """The partner list versions that name a partner: a consent given for one of them covers it.

    A person consents to the partners shown to them: a consent given before a partner was added,
    or for a later list that dropped it, does not cover that partner's offers.
    """
    wanted = partner.strip().casefold()
    return tuple(
        sorted(p.version for p in partner_lists(session) if wanted in {n.casefold() for n in p.partners})
    )
