"""The complaint circuit breaker: too many spam complaints or hard bounces pause a purpose's campaigns.

Over the last ``MAILER_BREAKER_WINDOW`` deliveries of a marketing purpose that left us, the share
now ``complained`` or ``bounced`` is compared with the configured rates (Gmail and Yahoo require
bulk senders to stay under 0.1% complaints). Past either, every running campaign of that purpose
pauses with the figures as its reason; tender alerts are never touched. The code applying SendGrid
events calls ``check`` after moving deliveries to those states; campaign batches call it as they
finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.campaigns.composer import TEST_PREFIX
from mailer.campaigns.models import Campaign, CampaignState, PauseCause
from mailer.config import get_settings
from mailer.db import utcnow
from mailer.models import Delivery, DeliveryState
from mailer.purposes import get_purpose

#: Deliveries that left us: the denominator of the rates.
LEFT_US = (
    DeliveryState.SENT,
    DeliveryState.UNKNOWN,
    DeliveryState.DELIVERED,
    DeliveryState.BOUNCED,
    DeliveryState.DROPPED,
    DeliveryState.COMPLAINED,
)


@dataclass(frozen=True)
class Rates:
    """Complaints and bounces over the last deliveries of a purpose."""

    deliveries: int
    complaints: int
    bounces: int

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.deliveries if self.deliveries else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.deliveries if self.deliveries else 0.0

    def verdict(self) -> str | None:
        """Why the breaker trips on these figures, or None."""
        settings = get_settings()
        if self.deliveries < settings.breaker_min_deliveries:
            return None
        if self.complaint_rate > settings.breaker_complaint_rate:
            return (
                f"spam complaints at {self.complaint_rate:.2%} of the last {self.deliveries:,} deliveries "
                f"(limit {settings.breaker_complaint_rate:.2%})"
            )
        if self.bounce_rate > settings.breaker_bounce_rate:
            return (
                f"bounces (hard bounces and blocks) at {self.bounce_rate:.2%} of the last "
                f"{self.deliveries:,} deliveries (limit {settings.breaker_bounce_rate:.2%})"
            )
        return None


#: Deliveries read per step when walking back from the newest: the window's size first (during a
#: campaign the newest rows are nearly all of its purpose), then twice as many each step, up to this.
PAGE_SIZE = 5000
#: Walk back at most this many deliveries per window slot (a purpose rarely sent among many others).
MAX_SCAN_FACTOR = 50


def rates(session: Session, purpose: str, *, after_delivery_id: int = 0) -> Rates:
    """Complaints and bounces among the last deliveries of a purpose that left us.

    Walks the primary key back from the newest delivery, page by page: the only plan that stays
    cheap on a table growing by a million rows during a campaign, whatever its statistics say.
    """
    window = get_settings().breaker_window
    deliveries = complaints = bounces = scanned = 0
    before: int | None = None
    page = min(PAGE_SIZE, window)
    while deliveries < window and scanned < window * MAX_SCAN_FACTOR:
        query = (
            sa.select(Delivery.id, Delivery.purpose, Delivery.state, Delivery.belongs_to)
            .where(Delivery.id > after_delivery_id)
            .order_by(Delivery.id.desc())
            .limit(page)
        )
        page = min(PAGE_SIZE, 2 * page)
        if before is not None:
            query = query.where(Delivery.id < before)
        rows = session.execute(query).all()
        if not rows:
            break
        for row in rows:
            if row.purpose != purpose or row.state not in LEFT_US or row.belongs_to.startswith(TEST_PREFIX):
                continue  # test sends go to the team's own seed addresses: not the audience's verdict
            deliveries += 1
            complaints += row.state == DeliveryState.COMPLAINED
            bounces += row.state == DeliveryState.BOUNCED
            if deliveries == window:
                break
        scanned += len(rows)
        before = rows[-1].id
    return Rates(deliveries, complaints, bounces)


def check(session: Session, purpose: str) -> list[int]:
    """Pause the running campaigns of a marketing purpose if its rates are past the limits.

    Returns the ids of the campaigns paused now (none for a purpose that is not marketing).
    """
    if not get_purpose(purpose).marketing:
        return []
    running = session.execute(
        sa.select(Campaign.id, Campaign.breaker_after_delivery_id).where(
            Campaign.purpose == purpose, Campaign.state == CampaignState.RUNNING
        )
    ).all()
    paused: list[int] = []
    verdicts: dict[int, str | None] = {}
    for campaign_id, after in running:
        if after not in verdicts:
            verdicts[after] = rates(session, purpose, after_delivery_id=after).verdict()
        reason = verdicts[after]
        if reason is None:
            continue
        changed = session.execute(
            sa.update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.state == CampaignState.RUNNING)
            .values(
                state=CampaignState.PAUSED,
                paused_at=utcnow(),
                paused_by=PauseCause.COMPLAINT_BREAKER,
                pause_reason=f"complaint breaker: {reason}",
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if changed:
            paused.append(campaign_id)
    return paused
