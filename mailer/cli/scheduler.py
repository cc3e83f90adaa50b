"""``mailer scheduler``: the Procfile's scheduler process."""

from __future__ import annotations

import logging

import click

from mailer.cli.base import console, mailer

#: Each line the scheduler logs says when: an operator reads it after an outage.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@mailer.command()
@click.option("--dry-run", is_flag=True, help="Print the next times of each job and stop.")
def scheduler(dry_run: bool) -> None:
    """Run the scheduler: digests on their cron (Europe/Paris), and every sweep.

    Queues the daily and weekly digest runs for the workers, and runs the sweeps itself: stuck
    deliveries and unapplied webhook batches every MAILER_SWEEP_EVERY_MINUTES, campaigns (start
    when due, lost batches queued again) every MAILER_CAMPAIGN_SWEEP_SECONDS. A job that fails
    (database or broker away) is logged with the time and tried again at its next occurrence;
    two schedulers at once are harmless. On start it queues the current windows again (already
    planned ones are left alone), so a scheduler that was down at 07:00 catches up. Stops on
    Ctrl-C or SIGTERM.

    \b
    Example:
      mailer scheduler
      MAILER_DAILY_DIGEST_CRON="30 6 * * 1-5" mailer scheduler --dry-run
    """
    import signal

    from mailer.broker import embedded_worker
    from mailer.db import utcnow
    from mailer.scheduler import Scheduler, default_jobs

    jobs = default_jobs()
    if dry_run:
        now = utcnow()
        for job in jobs:
            console.print(f"{job.name}: {job.describe()}, next at {job.next_after(now):%Y-%m-%d %H:%M:%S %Z}")
        return
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    runner = Scheduler(jobs)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop.set())
    console.print("scheduler running: " + "; ".join(f"{j.name} {j.describe()}" for j in jobs))
    # Embedded default: the queued work runs in this process's worker threads.
    with embedded_worker():
        runner.run()
    console.print("scheduler stopped")
