"""The digest benchmark's matching stage in memory: index the window, match every search.

The same data as ``tests.bench.bench_digests`` (5,000 tenders from the TED notices, readers of
3 searches drawn from its SearchPool, seeded) without the database, so that the figure is the
matching code's alone: the process CPU seconds of building the index (each notice's words to
their forms, then the bit sets) and of every reader's ``digest_sections``. On a shared machine
CPU seconds move less than wall-clock ones.

Run ``.venv/bin/python -m tests.bench.matching_speed``; for an A/B against another checkout,
alternate with ``PYTHONPATH=/path/to/checkout .venv/bin/python tests/bench/matching_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from mailer.alerts.matching import (
    Criteria,
    SearchToMatch,
    TenderFacts,
    TenderIndex,
    digest_sections,
    tender_text,
)
from tests.bench.bench_digests import SearchPool, synthesise_tenders


def facts_of(position: int, record: Any) -> TenderFacts:
    return TenderFacts(
        id=position + 1,
        text=tender_text(record.title, record.description, record.buyer.name if record.buyer else None),
        cpv_codes=tuple(record.cpv),
        departments=tuple(record.departments or ()),
        regions=tuple(record.regions),
        value_cents=int(record.value.amount * 100) if record.value else None,
    )


def criteria_of(search: dict[str, Any]) -> Criteria:
    return Criteria(
        keywords=search["keywords"],
        cpv_prefixes=tuple(search["cpv"]),
        departments=tuple(search["departments"]),
        regions=tuple(search["regions"]),
        min_value=search["min_value"],
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--searches-per-recipient", type=int, default=3)
    parser.add_argument("--tenders", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    records = synthesise_tenders(args.tenders, rng)
    pool = SearchPool.from_tenders(records)
    readers = [
        [criteria_of(pool.search(rng)) for _ in range(args.searches_per_recipient)]
        for _ in range(args.recipients)
    ]

    cpu, wall = time.process_time(), time.perf_counter()
    index = TenderIndex([facts_of(position, record) for position, record in enumerate(records)])
    index_cpu, index_wall = time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = time.process_time(), time.perf_counter()
    listed = 0
    for reader, own in enumerate(readers):
        searches = [SearchToMatch(reader * 10 + n, reader, c, None) for n, c in enumerate(own)]
        listed += sum(count for _, _, count in digest_sections(index, searches, window_floor=0))
    matching_cpu, matching_wall = time.process_time() - cpu, time.perf_counter() - wall

    figures = {
        "searches": args.recipients * args.searches_per_recipient,
        "tenders": len(index),
        "index_cpu_seconds": round(index_cpu, 3),
        "matching_cpu_seconds": round(matching_cpu, 3),
        "total_cpu_seconds": round(index_cpu + matching_cpu, 3),
        "total_wall_seconds": round(index_wall + matching_wall, 3),
        "tenders_listed": listed,
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
