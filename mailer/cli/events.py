"""``mailer events``: the SendGrid webhook batches the web process stored."""

from __future__ import annotations

from mailer.cli.base import console, mailer


@mailer.group()
def events() -> None:
    """Provider events: webhook batches stored by the web process, applied by the workers."""


@events.command()
def sweep() -> None:
    """Queue again stored batches no worker applied, and prune applied ones past their retention.

    The scheduler runs this regularly (actor sweep_provider_events); run it by hand after an outage.

    \b
    Example:
      mailer events sweep
    """
    from mailer import actors
    from mailer.broker import embedded_worker
    from mailer.provider_events import batches

    waiting = batches.unapplied_batches()
    with embedded_worker():
        for batch_id in waiting:
            actors.apply_provider_events.send(batch_id)
    pruned = batches.prune_batches()
    console.print(f"{len(waiting)} batches queued again, {pruned} applied batches pruned")
