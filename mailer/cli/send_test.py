"""``mailer send-test``: one message through the whole pipeline."""

from __future__ import annotations

import time
import uuid

import click
import sqlalchemy as sa

from mailer import recipients
from mailer.batch import BatchSpec
from mailer.cli.base import PURPOSE, console, mailer
from mailer.config import get_settings
from mailer.db import session_scope
from mailer.models import TERMINAL_STATES, Delivery, DeliveryState

#: Seconds between two looks at the delivery record while a remote worker handles the message.
POLL_INTERVAL = 0.5


@mailer.command(name="send-test")
@click.argument("address")
@click.option("--purpose", type=PURPOSE, required=True, help="The purpose the message is sent under.")
@click.option(
    "--timeout",
    type=click.IntRange(1, 3600),
    default=60,
    show_default=True,
    help="Seconds to wait for the outcome when the workers run elsewhere (Redis).",
)
def send_test(address: str, purpose: str, timeout: int) -> None:
    """Send one test message to ADDRESS under PURPOSE, through the gate, and show the outcome.

    ADDRESS must be a known recipient; without consent for PURPOSE the message is not sent
    and the record says why.

    \b
    Example:
      mailer send-test marie@example.com --purpose tender_alerts
    """
    from mailer import actors
    from mailer.broker import embedded_worker

    with session_scope(readonly=True) as session:
        recipient_id = recipients.get(session, address).id
    spec = BatchSpec("test_message", purpose, f"test:{uuid.uuid4().hex[:16]}", (recipient_id,))
    with embedded_worker():
        actors.enqueue([spec])
    record = _wait(spec, timeout)
    if record is None or record.state not in TERMINAL_STATES:
        state = record.state.value if record else "not yet claimed"
        raise click.ClickException(f"no outcome after {timeout} s (state: {state}); is a worker running?")
    console.print(f"delivery {record.id}: {record.state.value}", end="")
    if record.state == DeliveryState.SKIPPED:
        console.print(f" ({record.skip_reason})")
    elif record.error:
        console.print(f" ({record.error})")
    else:
        console.print(f" (provider id {record.provider_message_id})")
    if record.state == DeliveryState.SENT and get_settings().email_backend == "outbox":
        from mailer.providers.outbox import OutboxBackend

        console.print(f"written to {OutboxBackend(get_settings().outbox_dir).path_for(record.id)}")


def _wait(spec: BatchSpec, timeout: int) -> Delivery | None:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            record = session.scalars(
                sa.select(Delivery).where(
                    Delivery.purpose == spec.purpose, Delivery.belongs_to == spec.belongs_to
                )
            ).one_or_none()
        if (record is not None and record.state in TERMINAL_STATES) or time.monotonic() > deadline:
            return record
        time.sleep(POLL_INTERVAL)
