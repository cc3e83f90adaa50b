"""``mailer scheduler`` as the Procfile runs it: the campaign sweep runs there, and it outlives a
database and a broker that do not answer."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from mailer.campaigns import lifecycle
from mailer.campaigns.models import IN_FLIGHT_BATCH_STATES, CampaignBatch, CampaignState
from mailer.db import session_scope, utcnow
from tests.bench.processes import free_port
from tests.campaign_helpers import campaign, new_campaign
from tests.conftest import REDIS_URL, REPO, reset_process_state, truncate_all
from tests.factories import make_recipients

pytestmark = [pytest.mark.slow]

#: Seconds a test waits for the scheduler process before it fails.
WAIT = 60
#: A line the scheduler logs: the time first, then the level, the logger and the message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+: ")


@contextlib.contextmanager
def scheduler(env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's ``scheduler: mailer scheduler``, with these settings; stopped by SIGTERM."""
    with (logs / "out.log").open("wb") as out, (logs / "err.log").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailer.cli", "scheduler"],
            cwd=logs,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until(condition: Callable[[], bool], logs: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {WAIT} s; scheduler said:\n{(logs / 'err.log').read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], logs: Path) -> tuple[int, str, str]:
    os.killpg(process.pid, signal.SIGTERM)
    code = process.wait(timeout=20)
    return code, (logs / "out.log").read_text(), (logs / "err.log").read_text()


@pytest.mark.redis
def test_the_scheduler_process_starts_a_due_campaign_and_queues_its_batches(
    postgresql_url, redis_namespace, tmp_path, monkeypatch
):
    # Given a queued campaign whose send time has come, and no start message for it in the broker
    monkeypatch.setenv("MAILER_DATABASE_URL", postgresql_url)
    reset_process_state()
    truncate_all(postgresql_url)
    make_recipients(5, granted=("nouma_offers",))
    cid = new_campaign(tmp_path / "content", send_at=utcnow() - dt.timedelta(minutes=1))
    with session_scope() as session:
        lifecycle.queue(session, cid)

    # When the scheduler process runs (on PostgreSQL and Redis, batches of two, no worker)
    env = {
        "MAILER_DATABASE_URL": postgresql_url,
        "MAILER_BROKER_URL": REDIS_URL,
        "MAILER_BROKER_NAMESPACE": redis_namespace,
        "MAILER_CAMPAIGN_BATCH_SIZE": "2",
    }
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with scheduler(env, tmp_path) as process:
            wait_until(lambda: client.llen(f"{redis_namespace}:campaigns") == 3, tmp_path, "3 batches queued")
            code, out, err = stop(process, tmp_path)
        queued = [json.loads(m) for m in client.hvals(f"{redis_namespace}:campaigns.msgs")]
    finally:
        client.close()

    # Then its sweep started the campaign and queued one message per batch (their ids, nothing else)
    assert campaign(cid).state == CampaignState.RUNNING
    with session_scope(readonly=True) as session:
        in_flight = set(
            session.scalars(
                sa.select(CampaignBatch.id).where(
                    CampaignBatch.campaign_id == cid, CampaignBatch.state.in_(IN_FLIGHT_BATCH_STATES)
                )
            )
        )
    assert len(in_flight) == 3
    assert {(m["actor_name"], tuple(m["args"])) for m in queued} == {
        ("send_campaign_batch", (batch_id,)) for batch_id in in_flight
    }
    # and it stopped cleanly on SIGTERM, every line it logged saying when
    assert code == 0 and "scheduler stopped" in out
    assert f"campaigns started [{cid}]" in err
    assert all(LOG_LINE.match(line) for line in err.splitlines())
    truncate_all(postgresql_url)


def test_the_scheduler_process_outlives_a_database_and_a_broker_that_do_not_answer(tmp_path):
    # Given settings naming a database and a Redis broker where nothing listens
    env = {
        "MAILER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/gone",
        "MAILER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MAILER_CAMPAIGN_SWEEP_SECONDS": "1",
    }

    # When the scheduler process runs until its campaign sweep has failed three times
    def failures() -> list[str]:
        return [line for line in (tmp_path / "err.log").read_text().splitlines() if " failed: " in line]

    with scheduler(env, tmp_path) as process:
        wait_until(
            lambda: sum("campaign sweep for" in line for line in failures()) >= 3,
            tmp_path,
            "three failed campaign sweeps",
        )
        code, out, err = stop(process, tmp_path)

    # Then it went on after each failure, each one line with the time, the job and the error, and
    # the digest runs it could not queue are named too; no traceback; SIGTERM stopped it cleanly
    lines = failures()
    assert code == 0 and "scheduler stopped" in out
    assert "Traceback" not in err
    assert all(LOG_LINE.match(line) and " ERROR mailer.scheduler: " in line for line in lines)
    digests = [line for line in lines if "digests for" in line]
    assert len(digests) == 2 and all("ConnectionError" in line for line in digests)
    sweeps = [line for line in lines if "campaign sweep for" in line]
    assert all("OperationalError" in line for line in sweeps)
