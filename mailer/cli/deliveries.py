"""``mailer deliveries``: upkeep of the delivery records."""

from __future__ import annotations

from mailer.cli.base import console, mailer


@mailer.group()
def deliveries() -> None:
    """Delivery records: sweeps of sends whose outcome never came."""


@deliveries.command()
def sweep() -> None:
    """Mark sends stuck in flight 'unknown' and queue again pending sends whose message was lost.

    The scheduler runs this regularly; run it by hand after a crash.

    \b
    Example:
      mailer deliveries sweep
    """
    from mailer import actors, delivery
    from mailer.broker import embedded_worker

    result = delivery.sweep()
    with embedded_worker():
        actors.enqueue(result.requeue)
    console.print(f"{result.marked_unknown} sends marked unknown, {len(result.requeue)} batches queued again")
