"""Digest runs: plan a window once, fan it out in batches, and compose each recipient's digest.

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

Sending goes through the delivery pipeline: gate at send time, then ``DigestComposer``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from babel.dates import format_time
from markupsafe import Markup, escape
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer import emails
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
from mailer.alerts.places import places
from mailer.alerts.windows import (
    DIGEST_KIND,
    PURPOSE,
    belongs_to,
    parse_belongs_to,
    today_in_paris,
    window_of,
    window_start,
)
from mailer.batch import BatchSpec
from mailer.config import get_settings
from mailer.db import get_engine, id_in, in_chunks, session_scope, utcnow
from mailer.emails import Addressed, Composition, RecipientView
from mailer.errors import TemplateProblem
from mailer.message import Envelope, OutgoingMessage
from mailer.models import Delivery, DeliveryState, Recipient
from mailer.purposes import N_
from mailer.rendering import environment, gettext
from mailer.suppression import contacts
from mailer.suppression.tokens import preferences_url, unsubscribe_url

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

#: SendGrid caps the substitutions of one personalization at 10,000 bytes (tags and values);
#: a digest above this margin is sent in a request of its own.
MAX_SUBSTITUTION_BYTES = 9_500
#: Digests per SendGrid request (SendGrid takes up to 1,000): a 200-digest body is ~1 MB, so a
#: worker thread never holds tens of megabytes of request, and one refusal fails fewer sends.
MAX_DIGESTS_PER_MESSAGE = 200
#: Tags the shared content carries; each digest's own parts replace them (SendGrid substitutions).
SUBJECT_TAG = "[%nouma-digest-subject%]"
TEXT_TAG = "[%nouma-digest-text%]"
HTML_TAG = "[%nouma-digest-html%]"
UNSUBSCRIBE_TAG = "[%nouma-unsubscribe%]"
PREFERENCES_TAG = "[%nouma-preferences%]"
TAGS = (SUBJECT_TAG, TEXT_TAG, HTML_TAG, UNSUBSCRIBE_TAG, PREFERENCES_TAG)
#: A subject on one line: its newlines go, French typography's no-break spaces stay.
_ONE_LINE = re.compile(r"[ \t\r\n]+")
#: A deadline with its time of day ("26 novembre 2026 à 12:00").
DEADLINE_AT = N_("%(date)s at %(time)s")


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


def plan(frequency: Frequency, as_of: dt.date | None = None) -> RunPlan:
    """Plan a window once: match every active search, store the digests, claim the deliveries."""
    as_of = as_of or today_in_paris()
    window = window_of(frequency, as_of)
    started = time.perf_counter()
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
        index_started = time.perf_counter()
        index = TenderIndex(
            window_tenders(session, lowest if lowest is not None else high_water, high_water, as_of)
        )
        stats: dict[str, Any] = {
            "tenders_in_window": len(index),
            "index_seconds": round(time.perf_counter() - index_started, 3),
        }
        matching = loading = writing = 0.0
        searches = 0
        last_recipient = 0
        kind_of_send = belongs_to(frequency, window)
        while True:
            load_started = time.perf_counter()
            chunk = search_chunk(session, frequency, last_recipient)
            loading += time.perf_counter() - load_started
            if not chunk:
                break
            last_recipient = chunk[-1].recipient_id
            searches += len(chunk)
            match_started = time.perf_counter()
            by_recipient: dict[int, list[SearchToMatch]] = defaultdict(list)
            for search in chunk:
                by_recipient[search.recipient_id].append(search)
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
            matching += time.perf_counter() - match_started
            write_started = time.perf_counter()
            for rows in in_chunks(digests, WRITE_CHUNK):
                session.execute(sa.insert(Digest), rows)
            for ids in in_chunks([s.id for s in chunk], WRITE_CHUNK):
                session.execute(
                    sa.update(SavedSearch)
                    .where(id_in(session, SavedSearch.id, ids))
                    .values(announced_up_to=high_water)
                    .execution_options(synchronize_session=False)
                )
            _claim_deliveries(session, kind_of_send, list(by_recipient))
            writing += time.perf_counter() - write_started
            result.recipients += len(by_recipient)
            result.digests += len(digests)
        stats.update(
            searches=searches,
            matching_seconds=round(matching, 3),
            load_seconds=round(loading, 3),
            write_seconds=round(writing, 3),
            plan_seconds=round(time.perf_counter() - started, 3),
        )
        result.stats = stats
        session.execute(
            sa.update(DigestRun)
            .where(DigestRun.id == run_id)
            .values(recipients=result.recipients, digests=result.digests, stats=stats)
        )
    _refresh_statistics()
    log.info(
        "planned %s: %d recipients, %d digests, %d searches in %.1f s",
        kind_of_send,
        result.recipients,
        result.digests,
        searches,
        stats["plan_seconds"],
    )
    return result


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


# -- composing the digest mail


def _escaped_safely(value: str) -> bool:
    # A value substituted into both the text and the HTML part must read the same in both.
    return str(escape(value)) == value


@dataclass(frozen=True)
class _Shell:
    """The content shared by every digest of a locale in a batch: the chrome around the tags."""

    text: str
    html: str


class DigestComposer:
    """Builds each recipient's digest; packs those of a locale into one SendGrid request.

    Digests differ per recipient, so there is no shared content to render once. What is shared is
    the chrome (layout, footer, the reason for the mail); each recipient's subject, digest part
    and links travel as SendGrid substitutions of at most 10,000 bytes. Up to a thousand digests
    then cost one HTTP request and one delivery update, instead of one each; a digest too large
    for substitutions goes in a request of its own, rendered in full.
    """

    def compose(self, session: Session, spec: BatchSpec, addressed: Sequence[Addressed]) -> Composition:
        composition = Composition()
        if not addressed:
            return composition
        frequency, window = parse_belongs_to(spec.belongs_to)
        run = session.scalars(
            sa.select(DigestRun).where(DigestRun.frequency == frequency, DigestRun.window == window)
        ).one_or_none()
        if run is None:
            for item in addressed:
                composition.failed[item.delivery_id] = f"no digest run planned for {spec.belongs_to}"
            return composition
        digests = {
            rid: sections
            for rid, sections in session.execute(
                sa.select(Digest.recipient_id, Digest.sections).where(
                    Digest.run_id == run.id,
                    id_in(session, Digest.recipient_id, [a.recipient.id for a in addressed]),
                )
            )
        }
        for item in addressed:
            if item.recipient.id not in digests:
                composition.skipped[item.delivery_id] = "empty_digest"
        present = [a for a in addressed if a.recipient.id in digests]
        if not present:
            return composition
        needed: dict[str, set[int]] = defaultdict(set)
        search_ids: set[int] = set()
        for item in present:
            for search_id, tender_ids, _count in digests[item.recipient.id]:
                search_ids.add(search_id)
                needed[item.recipient.locale].update(tender_ids)
        content = _DigestContent.load(session, needed, search_ids)
        packs: dict[str, list[Envelope]] = defaultdict(list)
        shells: dict[str, _Shell] = {}
        for item in present:
            recipient = item.recipient
            try:
                if recipient.locale not in shells:
                    shells[recipient.locale] = _render_shell(recipient.locale)
                parts = _render_digest(recipient, digests[recipient.id], content, frequency)
            except TemplateProblem as problem:
                composition.failed[item.delivery_id] = f"render_error: {problem}"
                continue
            envelope = _envelope(item, parts)
            if _fits(envelope):
                packs[recipient.locale].append(envelope)
            else:
                composition.messages.append(_alone(shells[recipient.locale], envelope))
        for locale, envelopes in packs.items():
            shell = shells[locale]
            for group in in_chunks(envelopes, MAX_DIGESTS_PER_MESSAGE):
                composition.messages.append(
                    OutgoingMessage(
                        purpose=PURPOSE,
                        kind=DIGEST_KIND,
                        subject=SUBJECT_TAG,
                        text=shell.text,
                        html=shell.html,
                        envelopes=tuple(group),
                    )
                )
        return composition


@dataclass(frozen=True)
class _Parts:
    subject: str
    text: str
    html: str


def _envelope(item: Addressed, parts: _Parts) -> Envelope:
    recipient = item.recipient
    unsubscribe = unsubscribe_url(recipient.id, PURPOSE)
    return Envelope(
        delivery_id=item.delivery_id,
        to_address=recipient.address,
        to_name=recipient.name,
        headers=emails.unsubscribe_headers(unsubscribe),
        substitutions={
            SUBJECT_TAG: parts.subject,
            TEXT_TAG: parts.text,
            HTML_TAG: parts.html,
            UNSUBSCRIBE_TAG: unsubscribe,
            PREFERENCES_TAG: preferences_url(recipient.id),
        },
    )


def _fits(envelope: Envelope) -> bool:
    values = envelope.substitutions
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > MAX_SUBSTITUTION_BYTES:
        return False
    # A value holding a tag would be read differently by SendGrid and by a plain replacement.
    if any(tag in value for value in values.values() for tag in TAGS):
        return False
    return _escaped_safely(values[UNSUBSCRIBE_TAG]) and _escaped_safely(values[PREFERENCES_TAG])


def _alone(shell: _Shell, envelope: Envelope) -> OutgoingMessage:
    """A digest in a request of its own: the shell with its parts written in."""
    values = envelope.substitutions

    def fill(text: str, *, html: bool) -> str:
        for tag in (TEXT_TAG, HTML_TAG):
            text = text.replace(tag, values[tag])
        for tag in (UNSUBSCRIBE_TAG, PREFERENCES_TAG):
            text = text.replace(tag, str(escape(values[tag])) if html else values[tag])
        return text

    return OutgoingMessage(
        purpose=PURPOSE,
        kind=DIGEST_KIND,
        subject=values[SUBJECT_TAG],
        text=fill(shell.text, html=False),
        html=fill(shell.html, html=True),
        envelopes=(
            Envelope(
                delivery_id=envelope.delivery_id,
                to_address=envelope.to_address,
                to_name=envelope.to_name,
                headers=envelope.headers,
            ),
        ),
    )


def _render_shell(locale: str) -> _Shell:
    env = environment(locale)
    context = {
        "purpose": PURPOSE,
        "marketing": False,
        "unsubscribe_url": UNSUBSCRIBE_TAG,
        "preferences_url": PREFERENCES_TAG,
        "digest_text": TEXT_TAG,
        "digest_html": Markup(HTML_TAG),
    }
    try:
        return _Shell(
            text=env.get_template(f"email/{DIGEST_KIND}/body.txt").render(context).strip() + "\n",
            html=env.get_template(f"email/{DIGEST_KIND}/body.html").render(context),
        )
    except Exception as error:
        raise TemplateProblem(f"email/{DIGEST_KIND}: {error!r}") from error


def _render_digest(
    recipient: RecipientView, sections: list[Any], content: _DigestContent, frequency: Frequency
) -> _Parts:
    locale = recipient.locale
    env = environment(locale)
    shown = []
    for search_id, tender_ids, count in sections:
        search = content.searches.get(search_id)
        tenders = [view for view in (content.view(t, locale) for t in tender_ids) if view is not None]
        if search is None or not tenders:
            continue
        shown.append({"name": search, "count": count, "more": count - len(tenders), "tenders": tenders})
    if not shown:
        raise TemplateProblem("the digest's searches or tenders are gone")
    context = {
        "recipient": recipient,
        "sections": shown,
        "total": sum(s["count"] for s in shown),
        "weekly": frequency == Frequency.WEEKLY,
        "alerts_url": get_settings().alerts_url,
    }
    try:
        subject = env.get_template(f"email/{DIGEST_KIND}/subject.txt").render(context)
        text = env.get_template(f"email/{DIGEST_KIND}/content.txt").render(context)
        html = env.get_template(f"email/{DIGEST_KIND}/content.html").render(context)
    except Exception as error:
        raise TemplateProblem(f"email/{DIGEST_KIND}: {error!r}") from error
    return _Parts(subject=_ONE_LINE.sub(" ", subject).strip(), text=text.strip(), html=html.strip())


class _ViewCache:
    """Tenders as rendered for a locale, shared by the batches a worker process handles.

    A window's tenders appear in every batch: rendering each once per process, not once per
    batch, halves a batch's work. The key holds what changes the rendering: the tender's last
    update and whether its contact is hidden (decided per batch, at send time).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Any, view: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = view
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Rendered tenders kept per process: two locales of a 5,000-tender window, about 15 MB.
TENDER_VIEW_CACHE_SIZE = 10_000
_TENDER_VIEWS = _ViewCache(TENDER_VIEW_CACHE_SIZE)


@dataclass
class _DigestContent:
    """The tenders and searches a batch's digests show, loaded in a few queries.

    A tender already rendered by this process (same last update, same contact visibility) is
    not read again: only its id and last update are, and its view comes from the cache.
    """

    views: dict[tuple[int, str], dict[str, Any]]
    searches: dict[int, str]

    @classmethod
    def load(cls, session: Session, needed: dict[str, set[int]], search_ids: set[int]) -> _DigestContent:
        """``needed``: the tender ids shown in each locale; ``search_ids``: the searches named."""
        tender_ids = sorted(set().union(*needed.values())) if needed else []
        stamps: dict[int, Any] = {}
        for chunk in in_chunks(tender_ids, WRITE_CHUNK):
            stamps.update(
                (int(i), at)
                for i, at in session.execute(
                    sa.select(Tender.id, Tender.updated_at).where(id_in(session, Tender.id, chunk))
                )
            )
        # Checked at send time, like the gate: an opposition recorded after planning still wins.
        hidden = contacts.hidden_tenders(session, list(stamps))
        views: dict[tuple[int, str], dict[str, Any]] = {}
        missing: dict[int, list[str]] = defaultdict(list)
        for locale, ids in needed.items():
            for tender_id in ids:
                if tender_id not in stamps:
                    continue
                cached = _TENDER_VIEWS.get((tender_id, stamps[tender_id], locale, tender_id in hidden))
                if cached is None:
                    missing[tender_id].append(locale)
                else:
                    views[tender_id, locale] = cached
        for chunk in in_chunks(sorted(missing), WRITE_CHUNK):
            for row in session.execute(sa.select(*_TENDER_SHOWN).where(id_in(session, Tender.id, chunk))):
                for locale in missing[row.id]:
                    views[row.id, locale] = _render_tender(row, locale, hidden=row.id in hidden)
        searches: dict[int, str] = {}
        for chunk in in_chunks(sorted(search_ids), WRITE_CHUNK):
            searches.update(
                (int(i), str(n))
                for i, n in session.execute(
                    sa.select(SavedSearch.id, SavedSearch.name).where(id_in(session, SavedSearch.id, chunk))
                )
            )
        return cls(views=views, searches=searches)

    def view(self, tender_id: int, locale: str) -> dict[str, Any] | None:
        """A tender as a digest shows it in a locale; None when it is gone."""
        return self.views.get((tender_id, locale))


#: What a digest shows of a tender.
_TENDER_SHOWN = (
    Tender.id,
    Tender.title,
    Tender.buyer_name,
    Tender.buyer_town,
    Tender.contact_name,
    Tender.contact_email,
    Tender.contact_phone,
    Tender.departments,
    Tender.regions,
    Tender.deadline_on,
    Tender.deadline_time,
    Tender.value_cents,
    Tender.value_currency,
    Tender.url,
    Tender.updated_at,
)


def _render_tender(row: Any, locale: str, *, hidden: bool) -> dict[str, Any]:
    """A tender formatted and rendered for a locale, once per process (the same for every reader)."""
    filters = environment(locale).filters
    reference = places()
    where = [reference.department_label(d) for d in row.departments or []] or [
        reference.region_label(r) for r in row.regions or []
    ]
    deadline = filters["date"](row.deadline_on) if row.deadline_on else None
    if deadline and row.deadline_time is not None:
        at = format_time(row.deadline_time, format="short", locale=locale)
        deadline = gettext(locale, DEADLINE_AT) % {"date": deadline, "time": at}
    value = None
    if row.value_cents is not None:
        value = filters["money"](Decimal(row.value_cents) / 100, row.value_currency or "EUR")
    contact = None
    if not hidden and (row.contact_name or row.contact_email or row.contact_phone):
        contact = {"name": row.contact_name, "email": row.contact_email, "phone": row.contact_phone}
    fields = {
        "title": row.title,
        "url": row.url,
        "buyer": row.buyer_name,
        "town": row.buyer_town,
        "places": ", ".join(where),
        "deadline": deadline,
        "value": value,
        "contact": contact,
    }
    env = environment(locale)
    view = {
        "html": Markup(env.get_template(f"email/{DIGEST_KIND}/_tender.html").render(tender=fields).strip()),
        "text": "\n" + env.get_template(f"email/{DIGEST_KIND}/_tender.txt").render(tender=fields).strip("\n"),
    }
    _TENDER_VIEWS.put((row.id, row.updated_at, locale, hidden), view)
    return view


emails.register(DIGEST_KIND, DigestComposer())
