"""Benchmark of tender alert digests: matching at scale and digests sent per second, end to end.

Builds, in a PostgreSQL database of its own: N recipients (default 100,000) with tender alerts
granted and S saved searches each (default 3), and a window of T tenders (default 5,000)
synthesised from the 758 real TED notices (their titles, descriptions, CPV codes, buyers and
contacts; departments, values and deadlines drawn anew). Then it

1. plans the daily window (``mailer.alerts.planning.plan``: index, match every search, store the
   digests, claim the deliveries) and prints the matching time;
2. measures the naive loop (every sampled search against every tender, ``naive_match``) on a
   sample of searches, extrapolates it to all of them, prints the ratio, and checks that both
   find the same tenders on the sample;
3. starts the fake SendGrid (``python -m tests.fakes.sendgrid --no-validate``) and a Dramatiq
   worker (``--processes 2``) on Redis, queues the window's batches and times until every
   delivery is recorded; prints digests sent per second (from the fake's /stats too) and the
   peak memory of each worker process.

Run: ``make bench-digests`` (full scale) or ``python -m tests.bench.bench_digests --recipients 500
--tenders 200`` (a tiny run; the test suite runs one as a smoke test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.processes import cpu_seconds, free_port

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
TED_NOTICES = SHARED_DATA / "tenders" / "ted_fr_notices.jsonl"
DEFAULT_POSTGRES = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEFAULT_REDIS = os.environ.get("MAILER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "SG.bench-key"
#: The window's day: the tenders' deadlines are after it.
AS_OF = dt.date(2026, 11, 26)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--searches-per-recipient", type=int, default=3)
    parser.add_argument("--tenders", type=int, default=5_000)
    parser.add_argument("--naive-sample", type=int, default=300, help="searches timed with the naive loop")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="an existing database to connect to")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the sends")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-send", action="store_true", help="stop after matching (profiling)")
    return parser.parse_args(argv)


# -- synthetic data ------------------------------------------------------------------------------


def synthesise_tenders(count: int, rng: random.Random) -> list[Any]:
    """``count`` tenders from the real notices: real text, codes and contacts; places, values and
    deadlines drawn anew so the window spreads over France."""
    from mailer.alerts.formats.ted import from_ted
    from mailer.alerts.places import places
    from mailer.alerts.tenders import TenderRecord

    base = [
        TenderRecord.model_validate(from_ted(json.loads(line)))
        for line in TED_NOTICES.read_text().splitlines()
    ]
    # Departments of a region: the overseas collectivities (no region) are left out of the draw.
    departments = sorted(code for code, d in places().departments.items() if d.region_code)
    values = [None, None, 40_000, 90_000, 150_000, 400_000, 1_250_000, 3_000_000, 12_000_000]
    tenders = []
    for i in range(count):
        fields = base[i % len(base)].model_dump(exclude_none=True)
        department = rng.choice(departments)
        value = rng.choice(values)
        fields.update(
            reference=f"bench:{i}",
            # Every synthesised tender is a call for competition, as the digests announce.
            notice_kind="competition",
            departments=[department],
            regions=[places().departments[department].region_code],
            published_on=AS_OF,
            deadline=dt.datetime.combine(AS_OF + dt.timedelta(days=rng.randint(10, 45)), dt.time(12)),
        )
        fields.pop("value", None)
        if value:
            fields["value"] = {"amount": value, "currency": "EUR"}
        tenders.append(TenderRecord.model_validate(fields))
    return tenders


@dataclass
class SearchPool:
    """What people search for, drawn from the notices themselves."""

    words: list[str]
    phrases: list[str]
    cpv: list[str]
    departments: list[str]
    regions: list[str]

    @classmethod
    def from_tenders(cls, tenders: list[Any]) -> SearchPool:
        from collections import Counter

        from mailer.alerts.places import places
        from mailer.alerts.text import words

        counts: Counter[str] = Counter()
        pairs: Counter[str] = Counter()
        for t in tenders[:758]:
            found = words(t.title)
            counts.update(w for w in set(found) if len(w) > 5)
            pairs.update(f"{a} {b}" for a, b in itertools.pairwise(found) if len(a) > 4 and len(b) > 4)
        cpv = Counter(c[:n] for t in tenders[:758] for c in t.cpv[:1] for n in (2, 3, 4))
        reference = places()
        return cls(
            words=[w for w, _ in counts.most_common(300)],
            phrases=[p for p, _ in pairs.most_common(60)],
            cpv=[c for c, _ in cpv.most_common(120)],
            departments=sorted(reference.departments),
            regions=sorted(reference.regions),
        )

    def search(self, rng: random.Random) -> dict[str, Any]:
        """One saved search: a few criteria, as people set them on the site.

        5,000 tenders a day is several times what France publishes, so searches are as narrow as
        people's trades and territories are: a digest lists a handful of tenders, a few dozen
        at most.
        """
        kind = rng.random()
        search: dict[str, Any] = {"keywords": "", "cpv": [], "departments": [], "regions": []}
        if kind < 0.35:
            search["departments"] = rng.sample(self.departments, rng.randint(1, 2))
            search["cpv"] = [rng.choice([c for c in self.cpv if len(c) == 3])]
        elif kind < 0.6:
            search["keywords"] = " ".join(rng.sample(self.words[30:], rng.randint(1, 2)))
            search["departments"] = [rng.choice(self.departments)]
        elif kind < 0.8:
            search["cpv"] = [rng.choice([c for c in self.cpv if len(c) == 4])]
            search["departments"] = rng.sample(self.departments, rng.randint(1, 3))
        elif kind < 0.9:
            search["keywords"] = (
                f'"{rng.choice(self.phrases)}" {rng.choice(self.words)} -{rng.choice(self.words)}'
            )
            search["departments"] = rng.sample(self.departments, rng.randint(2, 6))
        else:
            search["keywords"] = rng.choice(self.words[150:])
            search["cpv"] = [rng.choice([c for c in self.cpv if len(c) == 2])]
            search["regions"] = [rng.choice(self.regions)]
        search["min_value"] = rng.choice([None, None, None, 50_000, 100_000, 500_000])
        return search


def copy_rows(connection: Any, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """PostgreSQL COPY: the fastest way in (DESIGN.md: 10k rows in 0.1 s)."""
    driver = connection.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def populate(url: str, args: argparse.Namespace, rng: random.Random) -> dict[str, float]:
    """Recipients with consent, their searches, and the window's tenders."""
    import sqlalchemy as sa

    from mailer.addresses import address_hash
    from mailer.alerts.tenders import import_tenders
    from mailer.db import get_engine, session_scope, utcnow

    timings: dict[str, float] = {}
    started = time.perf_counter()
    engine = get_engine(url)
    now = utcnow()
    with engine.begin() as connection:
        copy_rows(
            connection,
            "recipients",
            ["address", "address_hash", "name", "locale", "time_zone", "state", "created_at", "updated_at"],
            (
                (
                    f"reader{i}@example.com",
                    address_hash(f"reader{i}@example.com"),
                    f"Lecteur {i}",
                    "en" if i % 10 == 0 else "fr",
                    "Europe/Paris",
                    "active",
                    now,
                    now,
                )
                for i in range(args.recipients)
            ),
        )
        connection.execute(
            sa.text(
                "INSERT INTO consent_events (recipient_id, purpose, action, at, recorded_at, source, wording_version)"
                " SELECT id, 'tender_alerts', 'granted', :now, :now, 'signup_form', 'alerts-2026-01' FROM recipients"
            ),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO consents (recipient_id, purpose, granted, at, event_id, wording_version)"
                " SELECT recipient_id, purpose, true, at, id, wording_version FROM consent_events"
            )
        )
        ids = [row[0] for row in connection.execute(sa.text("SELECT id FROM recipients ORDER BY id"))]
    timings["recipients_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    tenders = synthesise_tenders(args.tenders, rng)
    pool = SearchPool.from_tenders(tenders)
    with engine.begin() as connection:
        copy_rows(
            connection,
            "saved_searches",
            [
                "recipient_id",
                "external_ref",
                "name",
                "position",
                "frequency",
                "active",
                "keywords",
                "cpv_prefixes",
                "departments",
                "regions",
                "min_value",
                "created_at",
                "updated_at",
            ],
            (
                (
                    rid,
                    f"bench-{rid}-{n}",
                    f"Recherche {n + 1}",
                    n,
                    "daily",
                    True,
                    s["keywords"],
                    json.dumps(s["cpv"]),
                    json.dumps(s["departments"]),
                    json.dumps(s["regions"]),
                    s["min_value"],
                    now,
                    now,
                )
                for rid in ids
                for n in range(args.searches_per_recipient)
                for s in (pool.search(rng),)
            ),
        )
    timings["searches_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    with session_scope(url) as session:
        import_tenders(session, tenders)
    timings["tenders_seconds"] = time.perf_counter() - started
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    return timings


# -- the naive baseline --------------------------------------------------------------------------


def naive_baseline(url: str, sample: int, rng: random.Random, as_of: dt.date) -> dict[str, Any]:
    """Every sampled search against every tender, one pair at a time; the index on the same sample."""
    import sqlalchemy as sa

    from mailer.alerts import planning
    from mailer.alerts.matching import TenderIndex, naive_match
    from mailer.alerts.models import Frequency, SavedSearch, Tender
    from mailer.db import session_scope

    with session_scope(url, readonly=True) as session:
        high_water = session.scalar(sa.select(sa.func.max(Tender.id))) or 0
        tenders = planning.window_tenders(session, 0, high_water, as_of)
        last = session.scalar(sa.select(sa.func.max(SavedSearch.recipient_id))) or 0
        searches = []
        while len(searches) < sample:
            searches.extend(
                planning.search_chunk(session, Frequency.DAILY, rng.randint(0, max(last - 1, 0)))[:3]
            )
        searches = searches[:sample]
    started = time.perf_counter()
    tenders.sort(key=lambda t: t.id)
    naive = [[t.id for t in tenders if naive_match(s.criteria, t)] for s in searches]
    naive_seconds = time.perf_counter() - started
    index = TenderIndex(tenders)
    indexed = [index.match(s.criteria) for s in searches]
    return {
        "naive_sample_searches": len(searches),
        "naive_sample_seconds": naive_seconds,
        "naive_per_search_ms": naive_seconds / len(searches) * 1000,
        "sample_agrees": naive == indexed,
    }


# -- end to end ----------------------------------------------------------------------------------


@dataclass
class MemoryWatch:
    """Samples the resident memory of a process tree's children until stopped."""

    root_pid: int
    peaks: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.root_pid)
        while not self.stop.is_set():
            try:
                for child in root.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            except psutil.Error:
                pass
            self.stop.wait(0.2)


def wait_for_line(path: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"timed out waiting for {text!r} in {path}:\n{path.read_text(errors='replace')[-3000:]}"
    )


def end_to_end(
    url: str, env: dict[str, str], args: argparse.Namespace, planned: Any, workdir: Path
) -> dict[str, Any]:
    import httpx
    import sqlalchemy as sa

    from mailer import actors
    from mailer.alerts import planning
    from mailer.db import session_scope
    from mailer.models import Delivery, DeliveryState

    port = free_port()
    fake_log = workdir / "fake_sendgrid.log"
    worker_log = workdir / "worker.log"
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.sendgrid",
            "--no-validate",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        cwd=REPO,
        stdout=fake_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    worker_env = {**env, "MAILER_SENDGRID_API_URL": f"http://127.0.0.1:{port}"}
    dramatiq = Path(sys.executable).with_name("dramatiq")
    worker = subprocess.Popen(
        [
            str(dramatiq),
            "worker",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
            "--queues",
            "deliveries",
        ],
        cwd=REPO,
        env=worker_env,
        stdout=worker_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    watch = MemoryWatch(worker.pid)
    watcher = threading.Thread(target=watch.run, daemon=True)
    try:
        wait_for_line(fake_log, "fake SendGrid on", 1, 30)
        wait_for_line(worker_log, "is ready for action", args.processes, 60)
        watcher.start()
        batches = planning.pending_batches(planned.frequency, planned.window)
        total = sum(len(b.recipient_ids) for b in batches)
        database_name = url.rsplit("/", 1)[-1]
        pids = {"workers": worker.pid, "fake SendGrid": fake.pid}
        cpu_before = cpu_seconds(database_name, pids)
        started = time.perf_counter()
        actors.enqueue(batches)
        settled = 0
        deadline = time.monotonic() + args.timeout
        while settled < total and time.monotonic() < deadline:
            # Counting over the table costs the database being measured: once a second is enough.
            time.sleep(1.0)
            with session_scope(url, readonly=True) as session:
                settled = (
                    session.scalar(
                        sa.select(sa.func.count())
                        .select_from(Delivery)
                        .where(
                            Delivery.belongs_to == planned.belongs_to,
                            Delivery.state.not_in([DeliveryState.PENDING, DeliveryState.SENDING]),
                        )
                    )
                    or 0
                )
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(database_name, pids)
        watch.stop.set()
        with session_scope(url, readonly=True) as session:
            outcomes = {
                f"{state.value}{':' + reason if reason else ''}": n
                for state, reason, n in session.execute(
                    sa.select(Delivery.state, Delivery.skip_reason, sa.func.count())
                    .where(Delivery.belongs_to == planned.belongs_to)
                    .group_by(Delivery.state, Delivery.skip_reason)
                )
            }
        stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()
    finally:
        watch.stop.set()
        for process in (worker, fake):
            process.send_signal(signal.SIGTERM)
        for process in (worker, fake):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    sent = outcomes.get("sent", 0)
    return {
        "send_seconds": elapsed,
        "queued_sends": total,
        "settled_sends": settled,
        "outcomes": outcomes,
        "digests_per_second": sent / elapsed if elapsed else 0.0,
        "sendgrid_requests": stats["requests"],
        "sendgrid_personalizations": stats["personalizations"],
        "cpu_ms_per_1000_digests": {
            kind: round(1000 * (cpu_after[kind] - cpu_before.get(kind, 0.0)) / max(sent / 1000, 1e-9), 1)
            for kind in cpu_after
        },
        "worker_peak_rss_mb": sorted(round(rss / 2**20, 1) for rss in watch.peaks.values()),
    }


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import redis
    import sqlalchemy as sa

    rng = random.Random(args.seed)
    name = f"mailer_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = args.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    namespace = f"mailer-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": url,
        "MAILER_BROKER_URL": args.redis_url,
        "MAILER_BROKER_NAMESPACE": namespace,
        "MAILER_EMAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "MAILER_SECRET_KEY": "bench-signing-key",
        "MAILER_BASE_URL": "https://mailer.example.com",
        "PYTHONPATH": str(REPO),
        # As the Procfile runs workers: two malloc arenas for eight threads (about 15 MB less each).
        "MALLOC_ARENA_MAX": "2",
    }
    # This process queues on Redis like the scheduler does: settings are read on first import.
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MAILER_", "SENDGRID_"))})
    import tempfile

    from mailer import migrations
    from mailer.alerts import planning
    from mailer.alerts.models import Frequency
    from mailer.db import dispose_engines

    figures: dict[str, Any] = {
        "recipients": args.recipients,
        "searches": args.recipients * args.searches_per_recipient,
        "tenders": args.tenders,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        migrations.upgrade(url)
        figures.update(populate(url, args, rng))
        planned = planning.plan(Frequency.DAILY, AS_OF)
        figures.update(planned.stats)
        figures["digests_planned"] = planned.digests
        figures["matching_seconds_total"] = planned.stats["index_seconds"] + planned.stats["matching_seconds"]
        figures.update(naive_baseline(url, min(args.naive_sample, figures["searches"]), rng, AS_OF))
        naive_total = figures["naive_per_search_ms"] / 1000 * figures["searches"]
        figures["naive_extrapolated_seconds"] = naive_total
        figures["index_speedup"] = naive_total / max(figures["matching_seconds_total"], 1e-9)
        if args.no_send:
            print(json.dumps(figures, indent=1, default=str))
            return figures
        with tempfile.TemporaryDirectory() as workdir:
            figures.update(end_to_end(url, env, args, planned, Path(workdir)))
        figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


def report(f: dict[str, Any]) -> None:
    out = io.StringIO()
    print(
        f"recipients {f['recipients']:,}, searches {f['searches']:,}, tenders in the window {f['tenders_in_window']:,}",
        file=out,
    )
    print(
        f"load average at start {f['load_average_at_start']}, at end {f.get('load_average_at_end')}", file=out
    )
    print(
        f"data: recipients {f['recipients_seconds']:.1f} s, searches {f['searches_seconds']:.1f} s, "
        f"tenders {f['tenders_seconds']:.1f} s",
        file=out,
    )
    print(
        f"matching: index {f['index_seconds']:.2f} s + {f['searches']:,} searches {f['matching_seconds']:.2f} s "
        f"= {f['matching_seconds_total']:.2f} s (target < 10 s); whole planning with writes "
        f"{f['plan_seconds']:.1f} s; {f['digests_planned']:,} digests",
        file=out,
    )
    print(
        f"naive users x tenders loop: {f['naive_per_search_ms']:.2f} ms a search on a sample of "
        f"{f['naive_sample_searches']} -> {f['naive_extrapolated_seconds']:.0f} s for all; "
        f"index x{f['index_speedup']:.0f} faster; same tenders on the sample: {f['sample_agrees']}",
        file=out,
    )
    print(
        f"end to end: {f['settled_sends']:,}/{f['queued_sends']:,} sends settled in {f['send_seconds']:.1f} s "
        f"-> {f['digests_per_second']:.0f} digests sent/s (target >= 1,000); outcomes {f['outcomes']}",
        file=out,
    )
    print(
        f"fake SendGrid: {f['sendgrid_requests']:,} requests, {f['sendgrid_personalizations']:,} personalizations",
        file=out,
    )
    if f.get("cpu_ms_per_1000_digests"):
        cpu = ", ".join(f"{kind} {ms:.0f} ms" for kind, ms in f["cpu_ms_per_1000_digests"].items())
        print(f"CPU per 1000 digests sent: {cpu} (2 cores give 2000 ms a second)", file=out)
    print(f"peak memory per worker process (MB): {f['worker_peak_rss_mb']} (target < 200)", file=out)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
