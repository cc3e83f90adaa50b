"""Digest windows: the day or week a digest covers, and the send key its deliveries share.

A window is one frequency's day (``digest:daily:2026-11-26``) or week, named by its Monday
(``digest:weekly:2026-11-23``); that name is the deliveries' ``belongs_to``, so the send key
(purpose, window, recipient) is unique per window. A window runs from one morning run (07:00,
Europe/Paris) to the next.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from mailer.alerts.models import Frequency
from mailer.db import utcnow
from mailer.errors import InvalidInput
from mailer.purposes import TENDER_ALERTS

DIGEST_KIND = "tender_digest"
PURPOSE = TENDER_ALERTS.key
#: The digests' clock: NouMa's users read them in France.
DIGEST_TIME_ZONE = ZoneInfo("Europe/Paris")
#: Local time of the morning run; a window runs from one run time to the next.
DIGEST_RUN_TIME = dt.time(7, 0)


def window_of(frequency: Frequency, as_of: dt.date) -> str:
    """The window a date falls in: the day, or the Monday of its week."""
    if frequency == Frequency.WEEKLY:
        return (as_of - dt.timedelta(days=as_of.weekday())).isoformat()
    return as_of.isoformat()


def window_start(frequency: Frequency, window: str) -> dt.datetime:
    """When the window's tenders start arriving: the previous run time (UTC)."""
    day = dt.date.fromisoformat(window)
    # Wall-clock arithmetic in Paris: the previous run is at 07:00 local across a DST change too.
    run_at = dt.datetime.combine(day, DIGEST_RUN_TIME, tzinfo=DIGEST_TIME_ZONE)
    days = 7 if frequency == Frequency.WEEKLY else 1
    return (run_at - dt.timedelta(days=days)).astimezone(dt.UTC)


def belongs_to(frequency: Frequency, window: str) -> str:
    """The deliveries' ``belongs_to`` of a window: part of the send key."""
    return f"digest:{frequency.value}:{window}"


def parse_belongs_to(value: str) -> tuple[Frequency, str]:
    prefix, frequency, window = value.split(":")
    if prefix != "digest":
        raise ValueError(f"not a digest window: {value!r}")
    return Frequency(frequency), window


def today_in_paris(now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(DIGEST_TIME_ZONE).date()


def parse_frequency(value: str) -> Frequency:
    try:
        return Frequency(value)
    except ValueError:
        raise InvalidInput(f"unknown frequency {value!r}; expected daily or weekly") from None
