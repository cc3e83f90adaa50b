"""The scheduler: cron in Europe/Paris, catch-up at start, each occurrence fired once; help and catalogs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from zoneinfo import ZoneInfo

import click
import pytest

from mailer.cli import main
from mailer.cli.base import mailer
from mailer.scheduler import Job, Scheduler, default_jobs
from tests.bench.processes import free_port

PARIS = ZoneInfo("Europe/Paris")


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def recording_jobs() -> tuple[list[Job], list[tuple[str, dt.datetime]]]:
    """The default jobs, each recording when it fires instead of doing its work."""
    fired: list[tuple[str, dt.datetime]] = []
    jobs = [
        dataclasses.replace(job, fire=lambda at, name=job.name: fired.append((name, at)))
        for job in default_jobs()
    ]
    return jobs, fired


def paris(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


def test_daily_and_weekly_runs_are_at_seven_paris_time_across_daylight_saving():
    jobs = {job.name: job for job in default_jobs()}
    daily, weekly = jobs["daily digests"], jobs["weekly digests"]
    # The night the clocks go forward (29 March 2026) and back (25 October 2026)
    assert daily.next_after(paris(2026, 3, 29, 1, 0)) == paris(2026, 3, 29, 7, 0)
    assert daily.next_after(paris(2026, 3, 29, 1, 0)).utcoffset() == dt.timedelta(hours=2)
    assert daily.next_after(paris(2026, 10, 25, 1, 0)).astimezone(dt.UTC).hour == 6
    assert daily.next_after(paris(2026, 11, 26, 7, 0)) == paris(2026, 11, 27, 7, 0)
    # Weekly: Mondays
    assert weekly.next_after(paris(2026, 11, 26, 12, 0)) == paris(2026, 11, 30, 7, 0)
    assert weekly.next_after(paris(2026, 11, 30, 7, 0)) == paris(2026, 12, 7, 7, 0)


def test_start_catches_up_the_current_windows_then_each_occurrence_fires_once():
    # Given a scheduler started on Thursday 26 November at 09:00 Paris
    jobs, fired = recording_jobs()
    clock = Clock(paris(2026, 11, 26, 9, 0))
    scheduler = Scheduler(jobs, clock=clock)

    # When it starts: today's daily window and this week's weekly one are queued (idempotent),
    # and the campaigns are swept at once
    scheduler.start()
    assert fired == [
        ("daily digests", paris(2026, 11, 26, 7, 0)),
        ("weekly digests", paris(2026, 11, 23, 7, 0)),
        ("campaign sweep", paris(2026, 11, 26, 9, 0)),
    ]

    # Then nothing is due until the next sweeps, each of which fires once however often it ticks
    fired.clear()
    assert scheduler.tick() == []
    clock.at = paris(2026, 11, 26, 9, 0, 30)
    assert scheduler.tick() == [("campaign sweep", paris(2026, 11, 26, 9, 0, 30))]
    clock.at = paris(2026, 11, 26, 9, 5)
    fired.clear()
    scheduler.tick()
    scheduler.tick()
    assert fired == [
        ("delivery sweep", paris(2026, 11, 26, 9, 5)),
        ("provider events sweep", paris(2026, 11, 26, 9, 5)),
        ("campaign sweep", paris(2026, 11, 26, 9, 1)),
    ]
    # The campaign sweep, late, goes on every 30 seconds from when it ran
    assert scheduler.next_at["campaign sweep"] == paris(2026, 11, 26, 9, 5, 30)

    # A scheduler asleep through the night fires the next morning's run once, when it wakes
    fired.clear()
    clock.at = paris(2026, 11, 27, 7, 3)
    scheduler.tick()
    assert ("daily digests", paris(2026, 11, 27, 7, 0)) in fired
    assert [name for name, _ in fired].count("daily digests") == 1
    assert scheduler.seconds_to_next() <= 30


def test_a_scheduler_whose_database_is_away_logs_one_line_per_job_and_goes_on(sqlite_db, monkeypatch, caplog):
    from tests.conftest import reset_process_state

    # Given the scheduler's sweeps, and a database that does not answer (nothing listens there)
    monkeypatch.setenv("MAILER_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    reset_process_state()
    sweeps = [job for job in default_jobs() if job.name.endswith("sweep")]
    clock = Clock(paris(2026, 11, 26, 9, 0))
    scheduler = Scheduler(sweeps, clock=clock)

    # When it starts and its sweeps come due
    with caplog.at_level(logging.INFO, logger="mailer.scheduler"):
        scheduler.start()
        clock.at = paris(2026, 11, 26, 9, 5)
        scheduler.tick()
    failed = [r for r in caplog.records if r.name == "mailer.scheduler" and r.levelno == logging.ERROR]

    # Then each failure is one line naming the job and its time, without a traceback
    assert [r.getMessage().split(" failed: ")[0] for r in failed] == [
        "campaign sweep for 2026-11-26T09:00:00+01:00",
        "delivery sweep for 2026-11-26T09:05:00+01:00",
        "provider events sweep for 2026-11-26T09:05:00+01:00",
        "campaign sweep for 2026-11-26T09:00:30+01:00",
    ]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failed)
    assert all("OperationalError" in r.getMessage() for r in failed)

    # When the database is back, the next occurrences do their work
    monkeypatch.setenv("MAILER_DATABASE_URL", sqlite_db)
    reset_process_state()
    caplog.clear()
    clock.at = paris(2026, 11, 26, 9, 10)
    with caplog.at_level(logging.INFO, logger="mailer.scheduler"):
        assert len(scheduler.tick()) == 3
    assert [r.levelno for r in caplog.records if r.name == "mailer.scheduler"] == [logging.INFO] * 3


def test_the_scheduler_queues_run_digest_with_the_paris_day(stub_worker, monkeypatch):
    from mailer import actors
    from mailer.alerts.models import Frequency
    from mailer.scheduler import enqueue_digest

    sent = []
    monkeypatch.setattr(actors.run_digest, "send", lambda *args: sent.append(args))
    # 23:30 UTC on the 25th is already the 26th in Paris
    enqueue_digest(Frequency.DAILY)(dt.datetime(2026, 11, 25, 23, 30, tzinfo=dt.UTC))
    assert sent == [("daily", "2026-11-26")]


def test_the_scheduler_dry_run_prints_the_next_times(capsys):
    assert main(["scheduler", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "daily digests: '0 7 * * *' (Europe/Paris), next at" in out
    assert "weekly digests: '0 7 * * mon'" in out
    assert "delivery sweep: '*/5 * * * *'" in out and "provider events sweep: '*/5 * * * *'" in out
    assert "campaign sweep: every 30 s, next at" in out


def test_a_bad_cron_setting_is_named(monkeypatch, capsys):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("MAILER_DAILY_DIGEST_CRON", "every morning")
    reset_process_state()
    assert main(["scheduler", "--dry-run"]) == 1
    assert "MAILER_DAILY_DIGEST_CRON: not a cron line: 'every morning'" in capsys.readouterr().err


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(
    "path", ["tenders import", "searches import", "digest run", "scheduler", "suppress add-name"]
)
def test_every_alerts_command_has_help_with_an_example(path):
    commands = dict(_commands(mailer))
    assert "Example:" in (commands[path].help or "")


def test_every_message_has_a_french_translation():
    from babel.messages.pofile import read_po

    from mailer.rendering import LOCALE_DIR

    with (LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = [
        message.id
        for message in catalog
        if message.id
        and (
            "fuzzy" in message.flags
            or not (all(message.string) if isinstance(message.string, tuple) else message.string)
        )
    ]
    assert missing == []
    assert catalog.plural_expr == "(n > 1)"
