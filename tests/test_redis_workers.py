"""Real Dramatiq worker processes on Redis: duplicates, races and a killed worker never send twice."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from mailer.delivery import sweep
from mailer.models import TERMINAL_STATES, DeliveryState
from tests.conftest import REDIS_URL, REPO
from tests.factories import all_deliveries, make_recipients
from tests.fakes.sendgrid import Hold

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Seconds a test waits for the workers to finish before it fails.
WAIT = 60


@contextlib.contextmanager
def workers(
    db: str, namespace: str, fake, log: Path, *, processes: int = 2, threads: int = 8
) -> Iterator[subprocess.Popen]:
    """``dramatiq worker`` as the Procfile runs it, against this test's database, Redis namespace, fake."""
    env = {
        **os.environ,
        "MAILER_BROKER_URL": REDIS_URL,
        "MAILER_BROKER_NAMESPACE": namespace,
        "MAILER_DATABASE_URL": db,
        "MAILER_EMAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": fake.api_key,
        "MAILER_SENDGRID_API_URL": fake.url,
        "MAILER_SENDGRID_TIMEOUT": "30",
    }
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def redis_broker(namespace: str) -> RedisBroker:
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    broker.declare_queue("deliveries")
    return broker


def deliver_message(belongs_to: str, ids: list[int], message_id: str | None = None) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name="deliveries",
        actor_name="deliver",
        args=("test_message", "tender_alerts", belongs_to, ids),
        kwargs={},
        options={},
        message_id=message_id or str(uuid.uuid4()),
    )


def wait_until(condition, timeout: float = WAIT, what: str = "workers") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not finish within {timeout} s")
        time.sleep(0.2)


def test_the_same_message_delivered_twice_sends_once(db, fake_sendgrid, redis_namespace, tmp_path):
    # Given 20 recipients and one batch message, enqueued twice with the same id and once more with
    # another id (a redelivery and a duplicate enqueue)
    ids = make_recipients(20)
    broker = redis_broker(redis_namespace)
    message = deliver_message("test:twice", ids)
    broker.enqueue(message)
    broker.enqueue(message)
    broker.enqueue(deliver_message("test:twice", ids))
    # When two worker processes of eight threads take them
    with workers(db, redis_namespace, fake_sendgrid, tmp_path / "workers.log"):
        wait_until(
            lambda: len(all_deliveries()) == 20 and all(d.state in TERMINAL_STATES for d in all_deliveries())
        )
        time.sleep(1)  # any late duplicate would reach the fake now
    # Then each recipient got one mail and has one record
    assert Counter(fake_sendgrid.recipients()) == Counter({f"person{i}@example.com": 1 for i in range(20)})
    assert [d.state for d in all_deliveries()] == [DeliveryState.SENT] * 20


def test_two_worker_processes_racing_on_the_same_send_keys(db, fake_sendgrid, redis_namespace, tmp_path):
    # Given 30 messages that all name the same 40 recipients for the same intent
    ids = make_recipients(40)
    broker = redis_broker(redis_namespace)
    for n in range(30):
        broker.enqueue(deliver_message("test:race", ids[n % 5 :] + ids[: n % 5]))
    # When 2 processes x 8 threads race on them
    with workers(db, redis_namespace, fake_sendgrid, tmp_path / "workers.log"):
        wait_until(
            lambda: len(all_deliveries()) == 40 and all(d.state in TERMINAL_STATES for d in all_deliveries())
        )
        wait_until(lambda: not broker.client.llen(f"{redis_namespace}:deliveries"), what="the queue")
        time.sleep(1)
    # Then every recipient was sent exactly once
    assert Counter(fake_sendgrid.recipients()) == Counter({f"person{i}@example.com": 1 for i in range(40)})
    assert Counter(d.state for d in all_deliveries()) == Counter({DeliveryState.SENT: 40})


def test_a_worker_killed_during_the_provider_call_never_sends_twice(
    db, fake_sendgrid, redis_namespace, tmp_path
):
    # Given SendGrid holding its answer to the first request
    ids = make_recipients(1)
    fake_sendgrid.script(Hold())
    broker = redis_broker(redis_namespace)
    message = deliver_message("test:killed", ids)
    broker.enqueue(message)
    log = tmp_path / "workers.log"
    # When the worker is killed while the provider call is in flight
    with workers(db, redis_namespace, fake_sendgrid, log, processes=1, threads=1) as process:
        assert fake_sendgrid.arrived.wait(WAIT), log.read_text()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    fake_sendgrid.release()
    (record,) = all_deliveries()
    assert record.state == DeliveryState.SENDING
    # and the message comes back (as Redis redelivers a dead worker's messages) to a new worker
    broker.enqueue(deliver_message("test:killed", ids))
    with workers(db, redis_namespace, fake_sendgrid, log, processes=1, threads=2):
        wait_until(lambda: not broker.client.llen(f"{redis_namespace}:deliveries"), what="the queue")
        time.sleep(2)
    # Then nothing was sent again, and the sweep records the outcome as unknown
    assert fake_sendgrid.request_count == 1
    assert all_deliveries()[0].state == DeliveryState.SENDING
    result = sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert result.marked_unknown == 1 and result.requeue == []
    (record,) = all_deliveries()
    assert record.state == DeliveryState.UNKNOWN and "in flight" in record.error
