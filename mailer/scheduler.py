"""The ``scheduler`` process: the digest runs on their cron (Europe/Paris), and every sweep.

The digest runs are queued: a worker plans each window. The sweeps run here, in this process: the
delivery sweep (sends stuck in flight; pending sends whose message was lost), the provider events
sweep (stored webhook batches no worker applied) and the campaign sweep (campaigns whose time
came; batches lost with the broker). A sweep recovers what the broker lost, so it is not itself a
broker message that a flushed Redis could lose; it queues only what it found.

Nothing but a signal stops it: a job that fails (the database or the broker away) is logged on
one line with the time and the job, and its next occurrence tries again. Running two schedulers
(a deploy overlapping the old one, a second machine) is harmless: a digest window is planned once
whoever asks (the run row is unique), its sends are keyed by (purpose, window, recipient), and
every sweep takes what it moves by a conditional UPDATE, so a sweep run twice finds nothing the
second time. On start it queues the current daily and weekly windows, so a scheduler that was down
at 07:00 catches up (and one that was not changes nothing), and runs the campaign sweep at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter

from mailer import actors
from mailer.alerts.models import Frequency
from mailer.config import get_settings
from mailer.db import utcnow

log = logging.getLogger(__name__)

#: The scheduler's clock: cron lines are read in Paris time, daylight saving included.
SCHEDULE_TIME_ZONE = ZoneInfo("Europe/Paris")
#: Longest sleep between two looks at the clock (s): a stop request is seen this fast.
MAX_SLEEP_SECONDS = 30.0
#: Longest error text a failed job logs: the first line of the error, never a traceback (a row's
#: values, which may hold an address, come on the lines after).
MAX_LOGGED_ERROR = 300


@dataclass
class Job:
    """Something done on a schedule: ``fire`` gets the scheduled time (aware, Paris).

    Either a cron line read in Paris time, or ``every``: then the job runs at start and every
    ``every`` after that.
    """

    name: str
    cron: str | None
    fire: Callable[[dt.datetime], None]
    #: Run the latest past occurrence at start (digest windows: idempotent and worth catching up).
    catch_up: bool = False
    every: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"job {self.name!r}: give a cron line or an interval, not both")

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(SCHEDULE_TIME_ZONE)
        if self.every is not None:
            return local + self.every
        return croniter(self.cron, local).get_next(dt.datetime).astimezone(SCHEDULE_TIME_ZONE)

    def previous_before(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(SCHEDULE_TIME_ZONE)
        if self.every is not None:
            return local
        return croniter(self.cron, local).get_prev(dt.datetime).astimezone(SCHEDULE_TIME_ZONE)

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every.total_seconds():g} s"
        return f"{self.cron!r} (Europe/Paris)"


def enqueue_digest(frequency: Frequency) -> Callable[[dt.datetime], None]:
    """Queue the planning of the window the scheduled time falls in (its Paris day)."""

    def fire(at: dt.datetime) -> None:
        actors.run_digest.send(frequency.value, at.astimezone(SCHEDULE_TIME_ZONE).date().isoformat())

    return fire


# An actor called directly runs its function in this process; what it finds is queued.


def sweep_deliveries(at: dt.datetime) -> None:
    """Sends stuck in flight become unknown; pending sends whose message was lost are queued again."""
    actors.sweep_deliveries()


def sweep_provider_events(at: dt.datetime) -> None:
    """Stored webhook batches no worker applied are queued again; old applied ones are pruned."""
    actors.sweep_provider_events()


def sweep_campaigns(at: dt.datetime) -> None:
    """Due campaigns start, lost batches are queued again, cancelled ones closed, stuck ones paused."""
    actors.sweep_campaigns()


def default_jobs() -> list[Job]:
    """Daily and weekly digests, and the sweeps of deliveries, webhook batches and campaigns."""
    settings = get_settings()
    minutes = settings.sweep_every_minutes
    sweep_cron = f"*/{minutes} * * * *" if minutes < 60 else f"0 */{minutes // 60} * * *"
    campaign_every = dt.timedelta(seconds=settings.campaign_sweep_seconds)
    return [
        Job("daily digests", settings.daily_digest_cron, enqueue_digest(Frequency.DAILY), catch_up=True),
        Job("weekly digests", settings.weekly_digest_cron, enqueue_digest(Frequency.WEEKLY), catch_up=True),
        Job("delivery sweep", sweep_cron, sweep_deliveries),
        Job("provider events sweep", sweep_cron, sweep_provider_events),
        Job("campaign sweep", None, sweep_campaigns, catch_up=True, every=campaign_every),
    ]


class Scheduler:
    """Fires jobs at their times; the clock and the sleep are injectable for tests."""

    def __init__(
        self,
        jobs: list[Job],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        stop: threading.Event | None = None,
    ) -> None:
        self.jobs = jobs
        self.clock = clock
        self.stop = stop or threading.Event()
        self.next_at: dict[str, dt.datetime] = {}

    def start(self) -> list[tuple[str, dt.datetime]]:
        """Run the latest occurrence of catch-up jobs; plan every job's next time."""
        now = self.clock()
        fired = []
        for job in self.jobs:
            if job.catch_up:
                latest = job.previous_before(now)
                self._fire(job, latest)
                fired.append((job.name, latest))
            self.next_at[job.name] = job.next_after(now)
        return fired

    def tick(self) -> list[tuple[str, dt.datetime]]:
        """Fire every job whose time has come (once, however late); returns what was fired."""
        fired = []
        for job in self.jobs:
            due = self.next_at[job.name]
            if due <= self.clock():
                self._fire(job, due)
                fired.append((job.name, due))
                # A scheduler that slept through several occurrences (or a job that ran long)
                # fires the latest one once.
                self.next_at[job.name] = job.next_after(max(due, self.clock()))
        return fired

    def seconds_to_next(self) -> float:
        soonest = min(self.next_at.values())
        return max(0.0, min(MAX_SLEEP_SECONDS, (soonest - self.clock()).total_seconds()))

    def run(self) -> None:
        """Until stopped: sleep to the next job, fire what is due."""
        self.start()
        while not self.stop.is_set():
            self.tick()
            self.stop.wait(self.seconds_to_next())

    def _fire(self, job: Job, at: dt.datetime) -> None:
        try:
            job.fire(at)
        except Exception as error:
            # The database or the broker may be away for a while: say so on one line, go on; the
            # next occurrence does the same work.
            log.error("%s for %s failed: %s", job.name, at.isoformat(timespec="seconds"), one_line(error))
        else:
            log.info("%s for %s done", job.name, at.isoformat(timespec="seconds"))


def one_line(error: BaseException) -> str:
    """An error as one short line: its type and the first line of its text."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:MAX_LOGGED_ERROR]
