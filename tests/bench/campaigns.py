"""Benchmark: a campaign to a million recipients on PostgreSQL + Redis, 2 worker processes.

Prints recipients per second from ``queue`` to the last recorded delivery, the peak memory of each
worker process, and, in the same run, the throughput of the naive design (one Dramatiq message and
one SendGrid request per recipient) on a sample, with the ratio between the two. The fake SendGrid
runs standalone (``python -m tests.fakes.sendgrid --no-validate``) and is asked for /stats.

    .venv/bin/python -m tests.bench.campaigns                      # the full run (1,000,000)
    .venv/bin/python -m tests.bench.campaigns --recipients 5000 --naive-sample 500   # tiny
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.bench.processes import cpu_seconds, free_port

REPO = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MAILER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "SG.bench-key"

#: The targets, on a 2-core machine.
TARGET_RATE = 10_000
TARGET_MEMORY_MB = 150
TARGET_RATIO = 5.0

CONTENT = {
    "subject.txt": "{{ greeting }} nos offres de saison",
    "body.html": "<h1>{{ greeting }}</h1>\n<p>Découvrez nos nouvelles offres, {{ first_name }}.</p>\n"
    + "<p>Une veille des appels d'offres plus précise, pour toute votre équipe.</p>\n" * 20
    + '<p><a href="{{ preferences_url }}">Vos préférences</a></p>\n',
    "body.txt": "{{ greeting }}\n\nDécouvrez nos nouvelles offres, {{ first_name }}.\n"
    + "Une veille des appels d'offres plus précise, pour toute votre équipe.\n" * 20,
}


@dataclass
class Result:
    recipients: int
    processes: int
    threads: int
    load_seconds: float = 0.0
    campaign_seconds: float = 0.0
    campaign_rate: float = 0.0
    requests: int = 0
    naive_recipients: int = 0
    naive_seconds: float = 0.0
    naive_rate: float = 0.0
    ratio: float = 0.0
    peak_worker_mb: list[float] = field(default_factory=list)
    #: CPU spent during the campaign per 1000 recipients, by process kind (load-independent).
    cpu_ms_per_1000: dict[str, float] = field(default_factory=dict)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)


@contextlib.contextmanager
def database() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"mailer_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from mailer.db import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def redis_namespace(namespace: str) -> Iterator[None]:
    """Every key of the run's namespace deleted at the end, however it ends."""
    import redis

    try:
        yield
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


class MemoryWatch:
    """Samples the resident memory of a worker command's child processes (the workers proper)."""

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        parent = psutil.Process(self.parent_pid)
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in parent.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss = child.memory_info().rss / 2**20
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss)
            self._stop.wait(0.25)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def last_recorded(belongs_to: str) -> tuple[int, float | None]:
    """(settled deliveries, time of the last one recorded) of a campaign."""
    import sqlalchemy as sa

    from mailer.db import session_scope
    from mailer.models import TERMINAL_STATES, Delivery

    with session_scope(readonly=True) as session:
        row = session.execute(
            sa.select(sa.func.count(), sa.func.max(Delivery.finished_at)).where(
                Delivery.belongs_to == belongs_to, Delivery.state.in_(list(TERMINAL_STATES))
            )
        ).one()
    return int(row[0]), (row[1].timestamp() if row[1] is not None else None)


def accepted(port: int) -> int:
    """Personalizations the fake SendGrid accepted so far (its /stats: no load on the database)."""
    import httpx

    return int(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()["personalizations"])


def wait_settled(belongs_to: str, expected: int, timeout: float, *, port: int, target: int) -> float:
    """Wait for SendGrid to get ``target`` personalizations and every send recorded; the last one's time."""
    deadline = time.monotonic() + timeout
    # Polling a count over a million growing rows would load the database being measured.
    while accepted(port) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{belongs_to}: SendGrid got {accepted(port)} of {target} in {timeout} s")
        time.sleep(0.2)
    while time.monotonic() < deadline:
        done, last = last_recorded(belongs_to)
        if done >= expected and last is not None:
            return last
        time.sleep(0.2)
    raise RuntimeError(
        f"{belongs_to}: only {last_recorded(belongs_to)[0]} of {expected} recorded in {timeout} s"
    )


def run(args: argparse.Namespace) -> Result:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    result = Result(args.recipients, args.processes, args.threads)
    namespace = f"mailer-bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    with database() as url, redis_namespace(namespace):
        env = {
            **os.environ,
            "MAILER_DATABASE_URL": url,
            "MAILER_BROKER_URL": REDIS_URL,
            "MAILER_BROKER_NAMESPACE": namespace,
            "MAILER_EMAIL_BACKEND": "sendgrid",
            "SENDGRID_API_KEY": API_KEY,
            "MAILER_SENDGRID_API_URL": f"http://127.0.0.1:{port}",
            "MAILER_SECRET_KEY": "bench-signing-key",
            "MAILER_BASE_URL": "https://mailer.example.com",
            # As the Procfile runs campaign workers: fewer malloc arenas for 8 threads.
            "MALLOC_ARENA_MAX": "2",
            # Paced through Redis like production, at a rate above what this machine can reach.
            "MAILER_CAMPAIGN_RATE_PER_SECOND": str(args.rate),
        }
        # This process: the operator. Same database; it enqueues to Redis itself.
        os.environ.update({k: v for k, v in env.items() if k != "MAILER_BROKER_URL"})
        os.environ.pop("MAILER_BROKER_URL", None)
        from mailer import migrations
        from mailer.config import reset_settings

        reset_settings()
        migrations.upgrade(url)
        from tests import bulk

        started = time.monotonic()
        ids = bulk.load(url, args.recipients, locales=("fr", "fr", "fr", "en"))
        result.load_seconds = time.monotonic() - started
        print(f"loaded {len(ids):,} recipients with COPY in {result.load_seconds:.1f} s", flush=True)

        from mailer.campaigns import content, fanout, lifecycle
        from mailer.db import session_scope

        folder = workdir / "content"
        for locale in ("fr", "en"):
            (folder / locale).mkdir(parents=True)
            for name, text in CONTENT.items():
                (folder / locale / name).write_text(text, encoding="utf-8")
        contents = content.read_content_dir(folder)
        with session_scope() as session:
            main_id = lifecycle.create(session, name="bench", purpose="nouma_offers", contents=contents).id
            naive_id = lifecycle.create(
                session, name="bench naive", purpose="nouma_offers", contents=contents
            ).id

        broker = RedisBroker(url=REDIS_URL, namespace=namespace)
        fake_cmd = [
            sys.executable,
            "-m",
            "tests.fakes.sendgrid",
            "--no-validate",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ]
        worker_cmd = [
            sys.executable,
            "-m",
            "dramatiq",
            "worker",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
            "--queues",
            "campaigns",
            "deliveries",
        ]
        with (
            process(fake_cmd, env, workdir / "sendgrid.log") as fake,
            process(worker_cmd, env, workdir / "workers.log") as workers,
            MemoryWatch(workers.pid) as memory,
        ):
            wait_for_port(port)
            time.sleep(args.warmup)  # the workers import the code and connect

            # The campaign: from `queue` to the last recorded delivery.
            pids = {"workers": workers.pid, "sendgrid": fake.pid}
            database_name = url.rsplit("/", 1)[1]
            cpu_before = cpu_seconds(database_name, pids)
            t0 = time.time()
            with session_scope() as session:
                lifecycle.queue(session, main_id)
            for batch_id in fanout.start(main_id):
                broker.enqueue(_message("campaigns", "send_campaign_batch", (batch_id,)))
            last = wait_settled(
                f"campaign:{main_id}", args.recipients, args.timeout, port=port, target=args.recipients
            )
            result.campaign_seconds = last - t0
            result.campaign_rate = args.recipients / result.campaign_seconds
            cpu_after = cpu_seconds(database_name, pids)
            result.cpu_ms_per_1000 = {
                kind: round(
                    1000 * (cpu_after[kind] - cpu_before.get(kind, 0.0)) / (args.recipients / 1000), 1
                )
                for kind in cpu_after
            }
            print(
                f"campaign: {args.recipients:,} in {result.campaign_seconds:.1f} s = "
                f"{result.campaign_rate:,.0f} recipients/s",
                flush=True,
            )

            # The naive design on a sample: one message and one request per recipient.
            sample = ids[: args.naive_sample]
            t0 = time.time()
            messages = [
                _message(
                    "deliveries",
                    "deliver",
                    ("campaign", "nouma_offers", f"campaign:{naive_id}", [rid], naive_id),
                )
                for rid in sample
            ]
            for message in messages:
                broker.enqueue(message)
            last = wait_settled(
                f"campaign:{naive_id}",
                len(sample),
                args.timeout,
                port=port,
                target=args.recipients + len(sample),
            )
            result.naive_recipients = len(sample)
            result.naive_seconds = last - t0
            result.naive_rate = len(sample) / result.naive_seconds
            result.ratio = result.campaign_rate / result.naive_rate
            print(
                f"naive: {len(sample):,} in {result.naive_seconds:.1f} s = "
                f"{result.naive_rate:,.0f} recipients/s",
                flush=True,
            )
            import httpx

            stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
            result.requests = int(stats["requests"])
        result.peak_worker_mb = sorted(memory.peaks.values(), reverse=True)[: args.processes]
        result.load_average = os.getloadavg()
        broker.close()
        with session_scope(readonly=True) as session:
            import sqlalchemy as sa

            from mailer.models import Delivery

            states = dict(
                session.execute(
                    sa.select(Delivery.state, sa.func.count())
                    .where(Delivery.belongs_to == f"campaign:{main_id}")
                    .group_by(Delivery.state)
                ).all()
            )
            print(f"campaign deliveries by state: { {str(k): v for k, v in states.items()} }", flush=True)
    del dramatiq
    return result


def _message(queue: str, actor: str, args: tuple[object, ...]) -> object:
    import dramatiq

    return dramatiq.Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})


def report(result: Result) -> str:
    mem = ", ".join(f"{m:.0f} MB" for m in result.peak_worker_mb)
    lines = [
        f"recipients: {result.recipients:,} ({result.processes} worker processes x {result.threads} threads)",
        f"campaign, queue to last recorded delivery: {result.campaign_seconds:.1f} s = "
        f"{result.campaign_rate:,.0f} recipients/s (target >= {TARGET_RATE:,})",
        f"peak worker memory: {mem} (target < {TARGET_MEMORY_MB} MB each)",
        f"naive design (one message, one request per recipient) on {result.naive_recipients:,}: "
        f"{result.naive_rate:,.0f} recipients/s",
        f"ratio to the naive design: {result.ratio:.1f}x (target >= {TARGET_RATIO:.0f}x)",
        "CPU per 1000 recipients: " + ", ".join(f"{k} {v:.0f} ms" for k, v in result.cpu_ms_per_1000.items()),
        f"SendGrid requests: {result.requests:,}; bulk load (COPY): {result.load_seconds:.1f} s; "
        f"load average at the end: {', '.join(f'{x:.2f}' for x in result.load_average)}",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """The run points this process at its own database; put the environment back afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from mailer.config import reset_settings

        reset_settings()


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="as the Procfile's campaigns process")
    parser.add_argument("--rate", type=int, default=1_000_000, help="MAILER_CAMPAIGN_RATE_PER_SECOND")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds for the workers to start")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        # Started in the background, SIGINT may be ignored: SIGTERM cleans up (workers, database).
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with restored_environment():
            result = run(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    return result


if __name__ == "__main__":
    main()
