"""A campaign's life: create, queue, pause, resume, cancel, and where it stands (status).

Every transition is a conditional UPDATE on the campaign's state, so two operators, two workers
or a worker and the sweep never both act on it. The batches a campaign is sent in (start,
release, sweep) are its fan-out (``fanout.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.campaigns import audience, breaker
from mailer.campaigns.content import LocaleContent, check_content
from mailer.campaigns.models import (
    FINISHED_BATCH_STATES,
    FINISHED_CAMPAIGN_STATES,
    BatchState,
    Campaign,
    CampaignBatch,
    CampaignContent,
    CampaignState,
    PartnerList,
    PauseCause,
)
from mailer.campaigns.partners import covering_versions, partner_lists
from mailer.db import utcnow
from mailer.errors import InvalidInput, NotFound, WrongCampaignState
from mailer.models import Delivery
from mailer.purposes import get_purpose

# -- create and queue


def create(
    session: Session,
    *,
    name: str,
    purpose: str,
    contents: Mapping[str, LocaleContent],
    partner: str | None = None,
    partner_list_version: str | None = None,
    audience_expression: str | None = None,
    send_at: dt.datetime | None = None,
    created_by: str | None = None,
) -> Campaign:
    """Record a campaign after checking everything that could fail later (content, audience, partner)."""
    kind = get_purpose(purpose)
    if not kind.marketing:
        raise InvalidInput(
            f"campaigns are marketing mail: purpose must be nouma_offers or partner_offers, not {purpose}"
        )
    if not name.strip():
        raise InvalidInput("a campaign needs a name")
    if kind.needs_partner_list:
        if not partner or not partner.strip():
            raise InvalidInput("a partner_offers campaign must name its partner (--partner)")
        partner = partner.strip()
        versions = covering_versions(session, partner)
        if partner_list_version is None:
            if not versions:
                raise InvalidInput(
                    f"no partner list names {partner!r}: record the list shown at consent first "
                    "(mailer campaign partner-list add)"
                )
            latest = max(
                (p for p in partner_lists(session) if p.version in versions),
                key=lambda p: (p.created_at, p.version),
            )
            partner_list_version = latest.version
        elif partner_list_version not in versions:
            raise InvalidInput(
                f"partner list {partner_list_version!r} does not exist or does not name {partner!r}"
            )
        # The partner as the consent form spells it.
        named = session.get(PartnerList, partner_list_version)
        assert named is not None
        partner = next(n for n in named.partners if n.strip().casefold() == partner.casefold())
    elif partner or partner_list_version:
        raise InvalidInput("--partner is for partner_offers campaigns only")
    if audience_expression is not None:
        audience_expression = audience_expression.strip() or None
    if audience_expression:
        audience.parse(audience_expression)
    if send_at is not None and send_at.tzinfo is None:
        raise InvalidInput("--send-at needs a time zone")
    check_content(contents, purpose=purpose, partner=partner, campaign_name=name.strip())
    campaign = Campaign(
        name=name.strip(),
        purpose=purpose,
        partner=partner,
        partner_list_version=partner_list_version,
        audience=audience_expression,
        send_at=send_at,
        created_by=created_by,
        state=CampaignState.DRAFT,
    )
    session.add(campaign)
    session.flush()
    for content in contents.values():
        session.add(
            CampaignContent(
                campaign_id=campaign.id,
                locale=content.locale,
                subject=content.subject,
                body_html=content.body_html,
                body_text=content.body_text,
            )
        )
    session.flush()
    return campaign


def get(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def _transition(
    session: Session, campaign_id: int, from_states: Sequence[CampaignState], **values: object
) -> bool:
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state.in_(list(from_states)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def queue(session: Session, campaign_id: int, *, now: dt.datetime | None = None) -> Campaign:
    """Queue a draft: it starts at its send time (now when it has none); see ``start``."""
    now = now or utcnow()
    campaign = get(session, campaign_id)
    if not _transition(
        session, campaign_id, [CampaignState.DRAFT], state=CampaignState.SCHEDULED, queued_at=now
    ):
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: only a draft can be queued"
        )
    session.refresh(campaign)
    return campaign


def is_due(campaign: Campaign, now: dt.datetime | None = None) -> bool:
    return campaign.send_at is None or campaign.send_at <= (now or utcnow())


# -- pause, resume, cancel


def pause(
    session: Session,
    campaign_id: int,
    *,
    reason: str,
    by: PauseCause = PauseCause.OPERATOR,
    now: dt.datetime | None = None,
) -> bool:
    """Stop new batches from starting (those running finish); False when it was not running."""
    return _transition(
        session,
        campaign_id,
        [CampaignState.RUNNING, CampaignState.SCHEDULED],
        state=CampaignState.PAUSED,
        paused_at=now or utcnow(),
        paused_by=by,
        pause_reason=reason,
    )


def pause_by_operator(session: Session, campaign_id: int, *, operator: str) -> None:
    campaign = get(session, campaign_id)
    if not pause(session, campaign_id, reason=f"paused by {operator}"):
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: "
            "only a scheduled or running campaign can be paused"
        )


def resume(session: Session, campaign_id: int, *, force: bool = False) -> bool:
    """Take a paused campaign out of its pause: True when it runs again (its batches go on from
    where they stopped), False when it had not started and waits for its send time again.

    If the complaint breaker would pause it again at once, refuse unless ``force`` (the breaker
    then judges only deliveries made from now on).
    """
    campaign = get(session, campaign_id)
    if campaign.state != CampaignState.PAUSED:
        raise WrongCampaignState(
            f"campaign {campaign_id} is {campaign.state.value}: only a paused campaign resumes"
        )
    values: dict[str, object] = {
        "paused_at": None,
        "paused_by": None,
        "pause_reason": None,
        "consecutive_failures": 0,
    }
    verdict = breaker.rates(
        session, campaign.purpose, after_delivery_id=campaign.breaker_after_delivery_id
    ).verdict()
    if verdict is not None:
        if not force:
            raise WrongCampaignState(
                f"the complaint breaker still trips ({verdict}); resume --force to send anyway"
            )
        values["breaker_after_delivery_id"] = session.scalar(
            sa.select(sa.func.coalesce(sa.func.max(Delivery.id), 0))
        )
    started = campaign.started_at is not None
    values["state"] = CampaignState.RUNNING if started else CampaignState.SCHEDULED
    if not _transition(session, campaign_id, [CampaignState.PAUSED], **values):
        raise WrongCampaignState(f"campaign {campaign_id} changed state meanwhile; try again")
    return started


def cancel(session: Session, campaign_id: int, *, operator: str) -> None:
    """Stop a campaign for good (its open batches are closed by ``fanout.close_cancelled_batches``)."""
    campaign = get(session, campaign_id)
    if not _transition(
        session,
        campaign_id,
        [CampaignState.DRAFT, CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.PAUSED],
        state=CampaignState.CANCELLED,
        finished_at=utcnow(),
        pause_reason=f"cancelled by {operator}",
    ):
        raise WrongCampaignState(f"campaign {campaign_id} is {campaign.state.value}: it cannot be cancelled")


# -- status


@dataclass
class Status:
    """Where a campaign stands, for ``mailer campaign status``."""

    campaign: Campaign
    deliveries: dict[tuple[str, str | None], int]
    batches: dict[str, int]
    recipients_done: int
    rate_per_second: float
    seconds_left: float | None

    @property
    def recorded(self) -> int:
        return sum(self.deliveries.values())


#: Seconds over which the current rate is measured.
RATE_WINDOW_SECONDS = 60


def status(session: Session, campaign_id: int, *, now: dt.datetime | None = None) -> Status:
    now = now or utcnow()
    campaign = get(session, campaign_id)
    deliveries = {
        (str(state), reason): int(n)
        for state, reason, n in session.execute(
            sa.select(Delivery.state, Delivery.skip_reason, sa.func.count())
            .where(Delivery.purpose == campaign.purpose, Delivery.belongs_to == campaign.belongs_to)
            .group_by(Delivery.state, Delivery.skip_reason)
        )
    }
    batches = {
        str(state): int(n)
        for state, n in session.execute(
            sa.select(CampaignBatch.state, sa.func.count())
            .where(CampaignBatch.campaign_id == campaign_id)
            .group_by(CampaignBatch.state)
        )
    }
    done = int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CampaignBatch.size), 0)).where(
                CampaignBatch.campaign_id == campaign_id, CampaignBatch.state.in_(FINISHED_BATCH_STATES)
            )
        )
        or 0
    )
    since = now - dt.timedelta(seconds=RATE_WINDOW_SECONDS)
    recent = int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CampaignBatch.size), 0)).where(
                CampaignBatch.campaign_id == campaign_id,
                CampaignBatch.state == BatchState.DONE,
                CampaignBatch.finished_at >= since,
            )
        )
        or 0
    )
    elapsed = float(RATE_WINDOW_SECONDS)
    if campaign.started_at is not None:
        elapsed = max(1.0, min(RATE_WINDOW_SECONDS, (now - campaign.started_at).total_seconds()))
    rate = recent / elapsed if campaign.state == CampaignState.RUNNING else 0.0
    left = campaign.recipients_total - done
    seconds_left = left / rate if rate > 0 else None
    return Status(campaign, deliveries, batches, done, rate, seconds_left)


def listing(session: Session, *, limit: int = 50) -> list[Campaign]:
    return list(session.scalars(sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def finished(campaign: Campaign) -> bool:
    return campaign.state in FINISHED_CAMPAIGN_STATES
