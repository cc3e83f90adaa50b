"""Campaigns with real worker processes on Redis and PostgreSQL: killed workers, a flushed broker.

The workers are ``dramatiq worker`` subprocesses, as in the Procfile; the test process plays the
operator and the scheduler's sweeps (on its own Redis namespace, twice a second). "Redis flushed" deletes every key of this test's namespace (the server
is shared, so FLUSHALL is not ours to run): queued messages, delayed ones and acks are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker

from mailer import delivery
from mailer.campaigns import fanout, lifecycle, operations
from mailer.campaigns.models import CampaignState
from mailer.db import session_scope
from mailer.models import TERMINAL_STATES, Delivery, DeliveryState, Recipient
from tests import bulk
from tests.campaign_helpers import campaign, new_campaign, queue_and_start
from tests.conftest import REDIS_URL, REPO, reset_process_state
from tests.fakes.sendgrid import FakeSendGrid, Hold

pytestmark = [pytest.mark.slow, pytest.mark.redis]

#: Seconds a whole scenario may take before the test gives up.
SCENARIO_TIMEOUT = 90


@pytest.fixture
def fake(sendgrid_server: FakeSendGrid) -> Iterator[FakeSendGrid]:
    """The session's fake SendGrid, fresh; the workers this test starts are pointed at it."""
    sendgrid_server.reset()
    yield sendgrid_server
    assert sendgrid_server.violations == []


@pytest.fixture
def cluster(postgresql_url, redis_namespace, fake, tmp_path, monkeypatch):
    """PostgreSQL + Redis settings shared by this process and the workers it starts."""
    from tests.conftest import truncate_all

    env = {
        "MAILER_DATABASE_URL": postgresql_url,
        "MAILER_BROKER_URL": REDIS_URL,
        "MAILER_BROKER_NAMESPACE": redis_namespace,
        "MAILER_EMAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": fake.api_key,
        "MAILER_SENDGRID_API_URL": fake.url,
        "MAILER_SENDGRID_TIMEOUT": "30",
        "MAILER_CAMPAIGN_BATCH_SIZE": "10",
        "MAILER_CAMPAIGN_BATCH_LEASE_SECONDS": "3",
        "MAILER_STALE_SEND_SECONDS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # This process keeps the in-process broker for its own imports; it talks to Redis directly.
    monkeypatch.delenv("MAILER_BROKER_URL")
    reset_process_state()
    truncate_all(postgresql_url)
    state = Cluster(env, tmp_path, redis_namespace)
    try:
        yield state
    finally:
        state.stop_all()
        truncate_all(postgresql_url)


class Cluster:
    def __init__(self, env: dict[str, str], tmp_path: Path, namespace: str) -> None:
        self.env = {**os.environ, **env}
        self.tmp_path = tmp_path
        self.namespace = namespace
        self.workers: list[subprocess.Popen[bytes]] = []
        self.broker = RedisBroker(url=REDIS_URL, namespace=namespace)

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        with (self.tmp_path / f"worker-{len(self.workers)}.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dramatiq",
                    "worker",
                    "--processes",
                    "1",
                    "--threads",
                    "2",
                    "--queues",
                    "campaigns",
                    "maintenance",
                ],
                cwd=REPO,
                env={**self.env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its forked children: no cleanup, like a machine dying."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        self.broker.close()

    def enqueue(self, batch_ids: list[int]) -> None:
        for batch_id in batch_ids:
            self.broker.enqueue(
                dramatiq.Message(
                    queue_name="campaigns",
                    actor_name="send_campaign_batch",
                    args=(batch_id,),
                    kwargs={},
                    options={},
                )
            )

    def flush(self) -> int:
        """Every key of this namespace deleted: what a Redis restart without persistence does."""
        client = self.broker.client
        keys = list(client.scan_iter(match=f"{self.namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)

    def sweep_until_settled(self, campaign_id: int) -> None:
        """Run the delivery and campaign sweeps (as the Procfile's scheduler does) until every send
        has its outcome."""
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        while time.monotonic() < deadline:
            delivery.sweep()
            self.enqueue(fanout.sweep().requeue)
            if campaign(campaign_id).state == CampaignState.COMPLETED and not unsettled(campaign_id):
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp_path.glob("worker-*.log"))
        pytest.fail(f"campaign {campaign_id} did not settle: {campaign(campaign_id).state}\n{logs}")


def unsettled(campaign_id: int) -> int:
    with session_scope(readonly=True) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(
                    Delivery.belongs_to == f"campaign:{campaign_id}", Delivery.state.not_in(TERMINAL_STATES)
                )
            )
            or 0
        )


def assert_everyone_once(campaign_id: int, ids: list[int], fake: FakeSendGrid) -> Counter[str]:
    """One delivery record each, and no address in two accepted requests."""
    with session_scope(readonly=True) as session:
        rows = session.execute(
            sa.select(Delivery.recipient_id, Delivery.state, Recipient.address)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .where(Delivery.belongs_to == f"campaign:{campaign_id}")
        ).all()
    assert Counter(r.recipient_id for r in rows) == dict.fromkeys(ids, 1)
    received = Counter(fake.recipients())
    assert max(received.values()) == 1, [a for a, n in received.items() if n > 1]
    for row in rows:
        # A sent mail was received exactly once; an unknown one at most once (the request was cut).
        assert received[row.address] == (1 if row.state == DeliveryState.SENT else received[row.address])
        assert row.state in (DeliveryState.SENT, DeliveryState.UNKNOWN)
    return Counter(str(r.state) for r in rows)


def test_a_worker_killed_mid_batch_the_campaign_still_completes_once(cluster, fake, tmp_path):
    # Given 40 recipients in batches of 10 and a worker whose second request hangs in flight
    ids = bulk.load(os.environ["MAILER_DATABASE_URL"], 40, locales=("fr",))
    cid = new_campaign(tmp_path / "content")
    fake.script(Hold())
    first = cluster.start_worker()
    cluster.enqueue(queue_and_start(cid))
    assert fake.arrived.wait(timeout=60), "no request reached SendGrid"

    # When the worker is killed while SendGrid holds its request (which SendGrid then accepts)
    cluster.kill(first)
    fake.release()

    # Then another worker and the sweep finish the campaign, nobody gets it twice, all recorded
    cluster.start_worker()
    cluster.sweep_until_settled(cid)
    states = assert_everyone_once(cid, ids, fake)
    # The batches in flight (the held one, maybe the other thread's too) are unknown: settled by
    # provider events, never re-sent.
    assert states["unknown"] in (10, 20)
    assert states["sent"] + states["unknown"] == 40


def test_redis_flushed_mid_campaign_the_sweep_finishes_it_once(cluster, fake, tmp_path, monkeypatch):
    # Given 60 recipients in 6 batches, two in flight at a time, paced at 10 mails a second
    ids = bulk.load(os.environ["MAILER_DATABASE_URL"], 60, locales=("fr", "en"))
    cid = new_campaign(tmp_path / "content")
    pace = {"MAILER_CAMPAIGN_RATE_PER_SECOND": "10", "MAILER_CAMPAIGN_BATCHES_IN_FLIGHT": "2"}
    for key, value in pace.items():
        monkeypatch.setenv(key, value)
    reset_process_state()
    cluster.start_worker(**pace)
    cluster.enqueue(queue_and_start(cid))
    deadline = time.monotonic() + SCENARIO_TIMEOUT
    while len(fake.recipients()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)

    # When Redis loses everything mid-campaign
    assert cluster.flush() > 0
    received_then = len(fake.recipients())
    assert received_then < 60

    # And the operator pauses and resumes on the way
    with session_scope() as session:
        lifecycle.pause_by_operator(session, cid, operator="test")
    time.sleep(1.5)
    paused_at = len(fake.recipients())
    time.sleep(1.5)
    assert len(fake.recipients()) == paused_at  # no batch starts while paused
    cluster.enqueue(operations.resume(cid).batches)

    # Then the sweep finds the lost batches and the campaign completes, everyone once
    cluster.sweep_until_settled(cid)
    states = assert_everyone_once(cid, ids, fake)
    assert states == {"sent": 60}
    assert campaign(cid).state == CampaignState.COMPLETED
