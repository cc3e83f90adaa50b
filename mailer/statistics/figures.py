"""The figures behind the anonymised statistics: what each send and unsubscribe counts for.

A send counts in the cell of its purpose, what it belonged to (a campaign's name, or the tender
alert digests of a frequency), the ISO week it was made (Europe/Paris) and the recipient's
department (the first department of their first saved search; ``unknown`` without one). An
unsubscribe made through the product counts in the cell of the last mail of that purpose the
person was sent before it. Test sends are never counted. Only counts leave this module: no
address, name or id.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.alerts.models import SavedSearch
from mailer.campaigns.models import Campaign
from mailer.models import ConsentAction, ConsentEvent, Delivery, DeliveryState
from mailer.preferences import PRODUCT_RECORDERS, UNSUBSCRIBE_SOURCES
from mailer.statistics.disclosure import ALL, Cell

#: Weeks are French weeks.
STATISTICS_TIME_ZONE = ZoneInfo("Europe/Paris")
#: The figures of a cell, in the order they are published.
FIGURES = ("sends", "delivered", "bounces", "complaints", "unsubscribes")
#: Rows read per round trip.
STREAM_CHUNK = 10_000
UNKNOWN_DEPARTMENT = "unknown"
NO_MAIL = "(no mail in the period)"

_S = DeliveryState
#: What each delivery state counts for (a complaint was delivered first).
_COUNTS: dict[DeliveryState, tuple[str, ...]] = {
    _S.SENT: ("sends",),
    _S.DELIVERED: ("sends", "delivered"),
    _S.COMPLAINED: ("sends", "delivered", "complaints"),
    _S.BOUNCED: ("sends", "bounces"),
    _S.DROPPED: ("sends",),
}


@dataclass(frozen=True)
class _Mail:
    purpose: str
    belongs_to: str
    at: dt.datetime
    state: DeliveryState


def week_of(moment: dt.datetime) -> str:
    """``2026-W48``: the ISO week of a moment, in France."""
    year, week, _ = moment.astimezone(STATISTICS_TIME_ZONE).isocalendar()
    return f"{year}-W{week:02d}"


def cells(session: Session, since: dt.datetime, until: dt.datetime) -> list[Cell]:
    """Every cell of the tree for sends made and unsubscribes recorded in ``[since, until)``."""
    labels = _labels(session)
    departments = _departments(session)
    unsubscribes = _unsubscribes(session, since, until)
    members: dict[tuple[str, ...], int] = defaultdict(int)
    totals: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    for recipient_id, mails in _mails_by_recipient(session, since, until):
        department = departments.get(recipient_id, UNKNOWN_DEPARTMENT)
        touched: set[tuple[str, ...]] = set()
        for mail in mails:
            counted = _COUNTS.get(mail.state)
            if not counted:
                continue
            leaf = (mail.purpose, labels(mail.belongs_to), week_of(mail.at), department)
            for key in _path(leaf):
                touched.add(key)
                for figure in counted:
                    totals[key][figure] += 1
        for purpose, at in unsubscribes.pop(recipient_id, []):
            leaf = _unsubscribe_leaf(mails, purpose, at, department, labels)
            for key in _path(leaf):
                touched.add(key)
                totals[key]["unsubscribes"] += 1
        for key in touched:
            members[key] += 1
    for recipient_id, withdrawals in unsubscribes.items():
        department = departments.get(recipient_id, UNKNOWN_DEPARTMENT)
        touched = set()
        for purpose, at in withdrawals:
            for key in _path((purpose, NO_MAIL, week_of(at), department)):
                touched.add(key)
                totals[key]["unsubscribes"] += 1
        for key in touched:
            members[key] += 1
    return [Cell(key, members[key], dict(totals[key])) for key in sorted(totals)]


def _path(leaf: tuple[str, str, str, str]) -> list[tuple[str, ...]]:
    """The leaf and each of its ancestors: (p, c, w, d), (p, c, w, *), (p, c, *, *), (p, *, *, *)."""
    return [(*leaf[: size + 1], *[ALL] * (3 - size)) for size in range(4)]


def _unsubscribe_leaf(
    mails: list[_Mail], purpose: str, at: dt.datetime, department: str, labels: _Labels
) -> tuple[str, str, str, str]:
    before = [m for m in mails if m.purpose == purpose and m.at <= at and m.state in _COUNTS]
    if not before:
        return (purpose, NO_MAIL, week_of(at), department)
    last = max(before, key=lambda m: m.at)
    return (purpose, labels(last.belongs_to), week_of(last.at), department)


def _mails_by_recipient(
    session: Session, since: dt.datetime, until: dt.datetime
) -> Iterator[tuple[int, list[_Mail]]]:
    rows = session.execute(
        sa.select(
            Delivery.recipient_id, Delivery.purpose, Delivery.belongs_to, Delivery.created_at, Delivery.state
        )
        .where(
            Delivery.created_at >= since,
            Delivery.created_at < until,
            sa.or_(Delivery.belongs_to.startswith("campaign:"), Delivery.belongs_to.startswith("digest:")),
        )
        .order_by(Delivery.recipient_id)
        .execution_options(yield_per=STREAM_CHUNK)
    )
    current: int | None = None
    mails: list[_Mail] = []
    for row in rows:
        if row.recipient_id != current:
            if current is not None:
                yield current, mails
            current, mails = row.recipient_id, []
        mails.append(_Mail(row.purpose, row.belongs_to, row.created_at, row.state))
    if current is not None:
        yield current, mails


def _unsubscribes(
    session: Session, since: dt.datetime, until: dt.datetime
) -> dict[int, list[tuple[str, dt.datetime]]]:
    found: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    rows = session.execute(
        sa.select(ConsentEvent.recipient_id, ConsentEvent.purpose, ConsentEvent.at).where(
            ConsentEvent.action == ConsentAction.WITHDRAWN,
            ConsentEvent.source.in_(UNSUBSCRIBE_SOURCES),
            sa.or_(ConsentEvent.recorded_by.in_(PRODUCT_RECORDERS), ConsentEvent.recorded_by.is_(None)),
            ConsentEvent.at >= since,
            ConsentEvent.at < until,
        )
    )
    for recipient_id, purpose, at in rows:
        found[recipient_id].append((purpose, at))
    return found


def _departments(session: Session) -> dict[int, str]:
    """Each recipient's department: the first one of their first saved search."""
    ranked = sa.select(
        SavedSearch.recipient_id,
        SavedSearch.departments[0].as_string().label("department"),
        sa.func.row_number()
        .over(partition_by=SavedSearch.recipient_id, order_by=(SavedSearch.position, SavedSearch.id))
        .label("rank"),
    ).subquery()
    rows = session.execute(
        sa.select(ranked.c.recipient_id, ranked.c.department).where(
            ranked.c.rank == 1, ranked.c.department.is_not(None)
        )
    )
    return {recipient_id: department for recipient_id, department in rows}


class _Labels:
    """What a send belonged to, as a statistic names it: a campaign's name, or the digests."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def __call__(self, belongs_to: str) -> str:
        if belongs_to.startswith("digest:"):
            return f"tender alert digests ({belongs_to.split(':')[1]})"
        return self.names.get(belongs_to, belongs_to)


def _labels(session: Session) -> _Labels:
    names = {f"campaign:{cid}": name for cid, name in session.execute(sa.select(Campaign.id, Campaign.name))}
    return _Labels(names)
