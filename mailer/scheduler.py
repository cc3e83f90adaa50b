"""The ``scheduler`` process: queues digest runs on their cron (Europe/Paris) and regular sweeps.

It only enqueues; the workers do the work. Running two schedulers (a deploy overlapping the old
one, a second machine) is harmless: a digest window is planned once whoever asks (the run row is
unique), its sends are keyed by (purpose, window, recipient), and a sweep run twice finds
nothing the second time. On start it also queues the current daily and weekly windows, so a
scheduler that was down at 07:00 catches up (and one that was not changes nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter

from mailer.alerts.models import Frequency
from mailer.config import get_settings
from mailer.db import utcnow

log = logging.getLogger(__name__)

#: The scheduler's clock: cron lines are read in Paris time, daylight saving included.
SCHEDULE_TIME_ZONE = ZoneInfo("Europe/Paris")
#: Longest sleep between two looks at the clock (s): a stop request is seen this fast.
MAX_SLEEP_SECONDS = 30.0


@dataclass
class Job:
    """Something queued on a schedule: ``fire`` gets the scheduled time (aware, Paris)."""

    name: str
    cron: str
    fire: Callable[[dt.datetime], None]
    #: Queue the latest past occurrence at start (digest windows: idempotent and worth catching up).
    catch_up: bool = False

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(SCHEDULE_TIME_ZONE)
        return croniter(self.cron, local).get_next(dt.datetime).astimezone(SCHEDULE_TIME_ZONE)

    def previous_before(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(SCHEDULE_TIME_ZONE)
        return croniter(self.cron, local).get_prev(dt.datetime).astimezone(SCHEDULE_TIME_ZONE)


def enqueue_digest(frequency: Frequency) -> Callable[[dt.datetime], None]:
    def fire(at: dt.datetime) -> None:
        from mailer import actors

        actors.run_digest.send(frequency.value, at.astimezone(SCHEDULE_TIME_ZONE).date().isoformat())

    return fire


def enqueue_sweep(at: dt.datetime) -> None:
    """The regular upkeep: sends stuck in flight or lost with the broker, and stored webhook
    batches no worker applied."""
    from mailer import actors

    actors.sweep_deliveries.send()
    actors.sweep_provider_events.send()


def default_jobs() -> list[Job]:
    """Daily digests, weekly digests, and the sweeps of stuck deliveries and webhook batches."""
    settings = get_settings()
    every = settings.sweep_every_minutes
    return [
        Job("daily digests", settings.daily_digest_cron, enqueue_digest(Frequency.DAILY), catch_up=True),
        Job("weekly digests", settings.weekly_digest_cron, enqueue_digest(Frequency.WEEKLY), catch_up=True),
        Job(
            "delivery sweep",
            f"*/{every} * * * *" if every < 60 else f"0 */{every // 60} * * *",
            enqueue_sweep,
        ),
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
        """Catch up on the latest occurrence of catch-up jobs; plan every job's next time."""
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
        now = self.clock()
        fired = []
        for job in self.jobs:
            due = self.next_at[job.name]
            if due <= now:
                self._fire(job, due)
                fired.append((job.name, due))
                # A scheduler that slept through several occurrences fires the latest one once.
                self.next_at[job.name] = job.next_after(max(due, now))
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
            log.info("queued %s for %s", job.name, at.isoformat())
        except Exception:
            # The broker may be briefly away; the next occurrence (or the sweep) makes up for it.
            log.exception("could not queue %s for %s", job.name, at.isoformat())
