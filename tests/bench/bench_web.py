"""Benchmark of the web process: one-click unsubscribe and webhook ingest, and applying events.

Each figure is printed with the baseline measured in the same run:
- a one-click POST (verify token, withdraw, commit) against GET /healthz (one SELECT 1), both
  through the same in-process ASGI stack;
- a signed webhook post (verify ECDSA, store the batch, queue its id) against the same;
- applying events (dedupe, correlate, advance deliveries) against a plain Core INSERT of as
  many rows into the same table.

    python tests/bench/bench_web.py                       # SQLite in a temporary directory
    python tests/bench/bench_web.py --postgres-url postgresql://postgres@127.0.0.1/test
                                      # a fresh database on that server, dropped afterwards

``make bench-web`` runs both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "2000"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", help="a PostgreSQL server (any database on it) to create one on")
    args = parser.parse_args()
    if args.postgres_url is None:
        run(f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-web-')) / 'bench.sqlite'}")
        return
    import sqlalchemy as sa

    name = f"mailer_bench_web_{os.getpid()}"
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        run(args.postgres_url.rsplit("/", 1)[0] + f"/{name}")
    finally:
        from mailer.db import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    os.environ["MAILER_DATABASE_URL"] = url
    os.environ.setdefault("MAILER_SECRET_KEY", "bench-key")
    os.environ.setdefault("MAILER_BASE_URL", "https://mailer.example.com")
    os.environ["MAILER_OUTBOX_DIR"] = str(workdir / "outbox")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

    import sqlalchemy as sa

    from mailer import migrations
    from mailer.broker import broker
    from mailer.db import session_scope
    from mailer.models import Delivery, DeliveryEvent, DeliveryState
    from mailer.provider_events import batches
    from mailer.suppression import tokens
    from tests.factories import make_recipient
    from tests.web_support import WebhookSigner, sendgrid_body, web_client

    migrations.upgrade()
    signer = WebhookSigner()
    os.environ["MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
    from mailer.config import reset_settings

    reset_settings()
    with session_scope() as session:
        ids = [
            make_recipient(session, f"bench{i}@example.com", granted=("nouma_offers",)).id
            for i in range(ROUNDS)
        ]
    client = web_client()
    headers = {"content-type": "application/x-www-form-urlencoded"}

    def timed(call, count):
        samples = []
        for i in range(count):
            started = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000, sorted(samples)[int(0.95 * (count - 1))] * 1000

    health = timed(lambda i: client.get("/healthz"), ROUNDS)
    one_click = timed(
        lambda i: client.post(
            f"/u/{tokens.unsubscribe_token(ids[i], 'nouma_offers')}",
            content=b"List-Unsubscribe=One-Click",
            headers=headers,
        ),
        ROUNDS,
    )
    body = sendgrid_body(
        [
            {"event": "delivered", "email": "bench@example.com", "sg_event_id": f"w{i}", "delivery_id": "1"}
            for i in range(50)
        ]
    )
    webhook = timed(
        lambda i: client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body)), ROUNDS
    )
    broker.flush_all()

    # Applying events: EVENTS deliveries, one delivered event each, in batches of 500.
    with session_scope() as session:
        rid = ids[0]
        rows = [
            {
                "purpose": "nouma_offers",
                "belongs_to": f"bench:{i}",
                "recipient_id": rid,
                "kind": "test_message",
                "state": DeliveryState.SENT.value,
                "attempts": 1,
            }
            for i in range(EVENTS)
        ]
        delivery_ids = list(session.scalars(sa.insert(Delivery).returning(Delivery.id), rows))
    events = [
        {
            "event": "delivered",
            "email": "bench0@example.com",
            "sg_event_id": f"e{d}",
            "timestamp": 1_700_000_000,
            "delivery_id": str(d),
        }
        for d in delivery_ids
    ]
    started = time.perf_counter()
    for start in range(0, EVENTS, 500):
        batch_id = batches.store_batch(
            "sendgrid", json.dumps(events[start : start + 500]).encode(), signed_at=1
        )
        batches.apply_batch(batch_id)
    apply_seconds = time.perf_counter() - started
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with session_scope() as session:
        session.execute(
            sa.insert(DeliveryEvent),
            [
                {
                    "provider": "sendgrid",
                    "provider_event_id": f"raw{d}",
                    "delivery_id": d,
                    "type": "delivered",
                    "occurred_at": now,
                    "payload": {},
                }
                for d in delivery_ids
            ],
        )
    insert_seconds = time.perf_counter() - started

    load = os.getloadavg()
    database = os.environ["MAILER_DATABASE_URL"].split(":")[0]
    print(f"database: {database}   load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"GET /healthz (baseline)        median {health[0]:.2f} ms  p95 {health[1]:.2f} ms")
    for label, (median, p95) in (
        ("one-click POST, to effect", one_click),
        ("webhook post, 50 events", webhook),
    ):
        ratio = median / health[0]
        print(f"{label:<30} median {median:.2f} ms  p95 {p95:.2f} ms  ratio {ratio:.1f}x baseline")
    print(f"apply {EVENTS} events: {apply_seconds:.2f} s ({EVENTS / apply_seconds:,.0f} events/s)")
    ratio = apply_seconds / insert_seconds
    print(f"plain INSERT of {EVENTS} rows (baseline): {insert_seconds:.2f} s  ratio {ratio:.1f}x baseline")


if __name__ == "__main__":
    main()
