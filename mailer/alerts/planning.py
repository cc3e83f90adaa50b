"""Digest runs: who gets a digest. A window is planned once, then fanned out in batches.

A run is one window of one frequency: ``digest:daily:2026-11-26`` or ``digest:weekly:2026-11-23``
(the Monday of the week), which is the deliveries' ``belongs_to``: the send key (purpose, window,
recipient) is unique, so running a window twice, or two schedulers at once, sends nothing twice.

Planning happens once per window, in one transaction:

1. the run row is inserted (unique per frequency and window; whoever comes second finds it);
2. it takes the highest tender id committed (imports commit ids in order, see tenders.py) as
   its high-water mark, indexes the tenders above the lowest search high-water mark, and matches
   every active search of the frequency against the index;
3. each recipient's digest (tender ids per search) is stored, every matched search's high-water
   mark moves to the run's, and a pending delivery is claimed for every recipient.

So a crash while planning leaves nothing; a crash while sending leaves pending deliveries that a
re-run (or the sweep) queues again, and their digest is the one planned: no tender is announced
twice or skipped across consecutive windows. A search that never announced anything starts at
the window's start (tenders received since the previous run time).

Sending goes through the delivery pipeline: gate at send time, then the digest mail
(``digest_mail.py``) says what each digest holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.alerts.matching import (
    Criteria,
    Near,
    SearchToMatch,
    TenderFacts,
    TenderIndex,
    digest_sections,
    tender_text,
)
from mailer.alerts.models import Digest, DigestRun, Frequency, Geolocation, SavedSearch, Tender
from mailer.alerts.windows import (
    DIGEST_KIND,
    PURPOSE,
    belongs_to,
    today_in_paris,
    window_of,
    window_start,
)
from mailer.batch import BatchSpec
from mailer.db import get_engine, id_in, in_chunks, session_scope, utcnow
from mailer.models import Delivery, DeliveryState, Recipient

log = logging.getLogger(__name__)

#: Recipients whose searches are matched and written per step of the planning.
PLAN_CHUNK = 5000
#: Recipients per Dramatiq message. Each digest is rendered on its own, so a batch's memory grows
#: with its size; at 250 a worker thread holds a few megabytes, and the per-batch queries (gate,
#: digests, tenders, contacts) are still shared by 250 sends.
DIGEST_BATCH_SIZE = 250
#: Rows per bulk statement (SQLite's bound-parameter limit is 32,766).
WRITE_CHUNK = 5000
#: Runs whose digests are kept; older digests are deleted when a new run is planned (the
#: delivery records stay: they are the audit trail).
DIGEST_RETENTION_DAYS = 35


@dataclass
class RunPlan:
    """What planning a window did (counts and timings only)."""

    run_id: int
    frequency: Frequency
    window: str
    #: False when the window had already been planned (by another scheduler, or an earlier run).
    planned_now: bool
    recipients: int = 0
    digests: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def belongs_to(self) -> str:
        return belongs_to(self.frequency, self.window)


class _Stopwatch:
    """Seconds spent in each step of a planning, summed over its chunks: the run's stats."""

    def __init__(self, *steps: str) -> None:
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(steps, 0.0)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def figures(self) -> dict[str, float]:
        """``<step>_seconds`` for each step, and ``plan_seconds`` since the stopwatch started."""
        figures = {f"{name}_seconds": round(seconds, 3) for name, seconds in self.seconds.items()}
        figures["plan_seconds"] = round(time.perf_counter() - self.started, 3)
        return figures


def plan(frequency: Frequency, as_of: dt.date | None = None) -> RunPlan:
    """Plan a window once: match every active search, store the digests, claim the deliveries."""
    as_of = as_of or today_in_paris()
    window = window_of(frequency, as_of)
    stopwatch = _Stopwatch("index", "load", "matching", "write")
    with session_scope() as session:
        high_water = session.scalar(sa.select(sa.func.max(Tender.id))) or 0
        run_id = _insert_run(session, frequency, window, high_water)
        if run_id is None:
            run = session.scalars(
                sa.select(DigestRun).where(DigestRun.frequency == frequency, DigestRun.window == window)
            ).one()
            return RunPlan(run.id, frequency, window, False, run.recipients, run.digests, dict(run.stats))
        result = RunPlan(run_id, frequency, window, True)
        _prune(session, as_of)
        floor = (
            session.scalar(
                sa.select(sa.func.max(Tender.id)).where(Tender.received_at < window_start(frequency, window))
            )
            or 0
        )
        lowest = session.scalar(
            sa.select(sa.func.min(sa.func.coalesce(SavedSearch.announced_up_to, floor))).where(
                SavedSearch.frequency == frequency, SavedSearch.active.is_(True)
            )
        )
        with stopwatch.step("index"):
            index = TenderIndex(
                window_tenders(session, lowest if lowest is not None else high_water, high_water, as_of)
            )
        searches = 0
        last_recipient = 0
        while True:
            with stopwatch.step("load"):
                chunk = search_chunk(session, frequency, last_recipient)
            if not chunk:
                break
            last_recipient = chunk[-1].recipient_id
            searches += len(chunk)
            with stopwatch.step("matching"):
                by_recipient: dict[int, list[SearchToMatch]] = defaultdict(list)
                for search in chunk:
                    by_recipient[search.recipient_id].append(search)
                digests = _digests(run_id, index, by_recipient, floor)
            with stopwatch.step("write"):
                _write_chunk(session, result.belongs_to, high_water, chunk, list(by_recipient), digests)
            result.recipients += len(by_recipient)
            result.digests += len(digests)
        result.stats = {"tenders_in_window": len(index), "searches": searches, **stopwatch.figures()}
        session.execute(
            sa.update(DigestRun)
            .where(DigestRun.id == run_id)
            .values(recipients=result.recipients, digests=result.digests, stats=result.stats)
        )
    _refresh_statistics()
    log.info(
        "planned %s: %d recipients, %d digests, %d searches in %.1f s",
        result.belongs_to,
        result.recipients,
        result.digests,
        searches,
        result.stats["plan_seconds"],
    )
    return result


def _digests(
    run_id: int, index: TenderIndex, by_recipient: dict[int, list[SearchToMatch]], floor: int
) -> list[dict[str, Any]]:
    """The digest rows of recipients with something new: tender ids per search."""
    digests = []
    for recipient_id, own in by_recipient.items():
        sections = digest_sections(index, own, window_floor=floor)
        if sections:
            digests.append(
                {
                    "run_id": run_id,
                    "recipient_id": recipient_id,
                    "sections": [list(s) for s in sections],
                    "tender_count": sum(s[2] for s in sections),
                }
            )
    return digests


def _write_chunk(
    session: Session,
    kind_of_send: str,
    high_water: int,
    chunk: list[SearchToMatch],
    recipient_ids: list[int],
    digests: list[dict[str, Any]],
) -> None:
    """A chunk's digests stored, its searches' high-water marks moved, its deliveries claimed."""
    for rows in in_chunks(digests, WRITE_CHUNK):
        session.execute(sa.insert(Digest), rows)
    for ids in in_chunks([s.id for s in chunk], WRITE_CHUNK):
        session.execute(
            sa.update(SavedSearch)
            .where(id_in(session, SavedSearch.id, ids))
            .values(announced_up_to=high_water)
            .execution_options(synchronize_session=False)
        )
    _claim_deliveries(session, kind_of_send, recipient_ids)


#: Tables a window's planning fills by the hundred thousand, just before the sends read them.
PLANNED_TABLES = ("deliveries", "digests", "saved_searches")


def _refresh_statistics() -> None:
    """Let PostgreSQL see what planning just wrote before the first batch reads it.

    Autovacuum analyzes a table a while after it grew; until then the planner believes the
    window holds no deliveries, and reads each batch's 250 send keys by walking all 100,000 of
    the window (40 ms a batch instead of 0.1 ms).
    """
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql(f"ANALYZE {', '.join(PLANNED_TABLES)}")
        connection.commit()


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _insert_run(session: Session, frequency: Frequency, window: str, high_water: int) -> int | None:
    inserted = session.execute(
        _insert(session)(DigestRun)
        .values(
            frequency=frequency,
            window=window,
            tender_high_water=high_water,
            planned_at=utcnow(),
            recipients=0,
            digests=0,
            stats={},
        )
        .on_conflict_do_nothing(index_elements=["frequency", "window"])
        .returning(DigestRun.id)
    ).scalar_one_or_none()
    return int(inserted) if inserted is not None else None


def _prune(session: Session, as_of: dt.date) -> None:
    cutoff = dt.datetime.combine(as_of - dt.timedelta(days=DIGEST_RETENTION_DAYS), dt.time(), tzinfo=dt.UTC)
    old_runs = sa.select(DigestRun.id).where(DigestRun.planned_at < cutoff)
    session.execute(sa.delete(Digest).where(Digest.run_id.in_(old_runs)))


def window_tenders(session: Session, lowest: int, high_water: int, as_of: dt.date) -> list[TenderFacts]:
    """Tenders above the lowest high-water mark, up to the run's, still open on ``as_of``."""
    rows = session.execute(
        sa.select(
            Tender.id,
            Tender.title,
            Tender.description,
            Tender.buyer_name,
            Tender.cpv_codes,
            Tender.departments,
            Tender.regions,
            Tender.value_cents,
            Tender.latitude,
            Tender.longitude,
        ).where(
            Tender.id > lowest,
            Tender.id <= high_water,
            sa.or_(Tender.deadline_on.is_(None), Tender.deadline_on >= as_of),
        )
    )
    return [
        TenderFacts(
            id=r.id,
            text=tender_text(r.title, r.description, r.buyer_name),
            cpv_codes=tuple(r.cpv_codes or ()),
            departments=tuple(r.departments or ()),
            regions=tuple(r.regions or ()),
            value_cents=r.value_cents,
            latitude=r.latitude,
            longitude=r.longitude,
        )
        for r in rows
    ]


def search_chunk(session: Session, frequency: Frequency, after_recipient: int) -> list[SearchToMatch]:
    """The active searches of the next PLAN_CHUNK recipients, in each recipient's order."""
    recipients = list(
        session.scalars(
            sa.select(SavedSearch.recipient_id)
            .where(
                SavedSearch.frequency == frequency,
                SavedSearch.active.is_(True),
                SavedSearch.recipient_id > after_recipient,
            )
            .group_by(SavedSearch.recipient_id)
            .order_by(SavedSearch.recipient_id)
            .limit(PLAN_CHUNK)
        )
    )
    if not recipients:
        return []
    rows = session.execute(
        sa.select(
            SavedSearch.id,
            SavedSearch.recipient_id,
            SavedSearch.keywords,
            # As text: most searches repeat a few lists ("[\"38\"]"), parsed once each below.
            sa.cast(SavedSearch.cpv_prefixes, sa.Text),
            sa.cast(SavedSearch.departments, sa.Text),
            sa.cast(SavedSearch.regions, sa.Text),
            SavedSearch.min_value,
            SavedSearch.max_value,
            SavedSearch.radius_km,
            SavedSearch.announced_up_to,
            Geolocation.latitude,
            Geolocation.longitude,
        )
        .outerjoin(
            Geolocation,
            # The location is read only while its express consent is granted.
            (Geolocation.recipient_id == SavedSearch.recipient_id)
            & Geolocation.consent_granted.is_(True)
            & SavedSearch.radius_km.is_not(None),
        )
        .where(
            SavedSearch.frequency == frequency,
            SavedSearch.active.is_(True),
            SavedSearch.recipient_id >= recipients[0],
            SavedSearch.recipient_id <= recipients[-1],
        )
        .order_by(SavedSearch.recipient_id, SavedSearch.position, SavedSearch.id)
    )
    # Equal criteria become one object: the index computes each distinct search once.
    interned: dict[tuple[Any, ...], Criteria] = {}
    lists: dict[str | None, tuple[str, ...]] = {}
    found = []
    for search_id, recipient_id, *given, high_water in (
        (r[0], r[1], *r[2:9], r[10], r[11], r[9]) for r in rows
    ):
        key = tuple(given)
        criteria = interned.get(key)
        if criteria is None:
            keywords, cpv, departments, regions, minimum, maximum, radius, latitude, longitude = given
            criteria = interned[key] = Criteria(
                keywords=keywords or "",
                cpv_prefixes=_json_list(lists, cpv),
                departments=_json_list(lists, departments),
                regions=_json_list(lists, regions),
                min_value=minimum,
                max_value=maximum,
                wants_radius=radius is not None,
                near=Near(latitude, longitude, radius) if latitude is not None else None,
            )
        found.append(SearchToMatch(search_id, recipient_id, criteria, high_water))
    return found


def _json_list(parsed: dict[str | None, tuple[str, ...]], text: str | None) -> tuple[str, ...]:
    found = parsed.get(text)
    if found is None:
        found = parsed[text] = tuple(json.loads(text)) if text else ()
    return found


def _claim_deliveries(session: Session, kind_of_send: str, recipient_ids: list[int]) -> None:
    """Pending deliveries for the run's recipients, in the planning transaction (never twice)."""
    now = utcnow()
    for ids in in_chunks(recipient_ids, WRITE_CHUNK):
        source = sa.select(
            sa.literal(PURPOSE),
            sa.literal(kind_of_send),
            Recipient.id,
            sa.literal(DIGEST_KIND),
            sa.literal(DeliveryState.PENDING.value),
            sa.literal(0),
            sa.literal(now, type_=Delivery.__table__.c.created_at.type),
        ).where(id_in(session, Recipient.id, ids))
        session.execute(
            _insert(session)(Delivery)
            .from_select(
                ["purpose", "belongs_to", "recipient_id", "kind", "state", "attempts", "created_at"], source
            )
            .on_conflict_do_nothing(index_elements=["purpose", "belongs_to", "recipient_id"])
        )


def pending_batches(frequency: Frequency, window: str) -> list[BatchSpec]:
    """The window's sends still pending, in batches: what a run (or a re-run) queues."""
    kind_of_send = belongs_to(frequency, window)
    with session_scope(readonly=True) as session:
        ids = list(
            session.scalars(
                sa.select(Delivery.recipient_id)
                .where(
                    Delivery.purpose == PURPOSE,
                    Delivery.belongs_to == kind_of_send,
                    Delivery.state == DeliveryState.PENDING,
                )
                .order_by(Delivery.recipient_id)
            )
        )
    return [
        BatchSpec(DIGEST_KIND, PURPOSE, kind_of_send, tuple(chunk))
        for chunk in in_chunks(ids, DIGEST_BATCH_SIZE)
    ]
