"""The delivery pipeline: claim the send key, gate, render, send, record; and the stale-send sweep.

Each intended send is one ``deliveries`` row, created before the provider is called:

    pending --gate refuses--> skipped(reason)
    pending --render fails--> failed(render_error)
    pending --taken into flight (gate re-checked in the same statement)--> sending
    sending --provider accepts--> sent --provider events--> delivered, bounced, ...
    sending --provider refuses for good--> failed(provider's text)
    sending --provider busy, retries left--> pending (the message is retried)
    sending --no answer, or the process died--> unknown (never re-sent; settled by events)

Only one worker can move a row from pending to sending (a conditional UPDATE), so a message
delivered twice, two workers, or a resumed batch never send the same key twice. Campaign batches
on PostgreSQL skip the ``pending`` version: ids are reserved at claim and each row is inserted
when first decided, ``sending`` by a gated INSERT on the unique send key (mailer/claims.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import claims, gate
from mailer.batch import BatchSpec, split
from mailer.config import get_settings
from mailer.db import id_in, id_text_rows, in_chunks, session_scope, state_is, utcnow
from mailer.emails import Addressed, RecipientView, composer_for, kinds_requeued_by_their_owner
from mailer.message import OutgoingMessage, split_by_tracking
from mailer.models import UNSETTLED_STATES, Delivery, DeliveryState
from mailer.providers import (
    AmbiguousSendError,
    Backend,
    PermanentSendError,
    RateLimited,
    TransientSendError,
    get_backend,
)
from mailer.purposes import get_purpose

log = logging.getLogger(__name__)

#: Provider outcomes are written together after this many requests, or after this many seconds.
RECORD_EVERY_MESSAGES = 50
RECORD_EVERY_SECONDS = 1.0

#: Sends recorded sent per statement.
OUTCOME_CHUNK = 5000

#: Requests of a batch are taken into flight (the gate re-checked) in waves expected to go out
#: within this many seconds.
TAKE_AHEAD_SECONDS = 1.0

#: A send someone waits for (a test send) is tried this many times, waiting at most this long
#: between tries, before it is recorded failed.
INTERACTIVE_ATTEMPTS = 3
INTERACTIVE_MAX_WAIT_SECONDS = 10.0

#: Recipients per batch the sweep queues again: the smallest batch a kind uses (digests: 250), so
#: a worker's memory stays what that kind was measured with.
REQUEUE_BATCH_SIZE = 250

#: Error of a send whose request was interrupted (time limit, shutdown) while it was in flight.
INTERRUPTED = "interrupted while the request was in flight: the provider may have it"

#: Longest error text kept on a delivery; provider bodies can be long.
MAX_ERROR_LENGTH = 2000


@dataclass
class BatchOutcome:
    """What one pass over a batch did (counts only: this is logged)."""

    claimed: int = 0
    already_done: int = 0
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    unknown: int = 0
    #: Some sends were put back to pending after a transient error: retry the message.
    retry: bool = False
    #: Delay SendGrid asked for (429), if any.
    retry_after_ms: int | None = None
    last_error: str | None = None


def deliver_batch(
    spec: BatchSpec,
    *,
    final_attempt: bool = False,
    backend: Backend | None = None,
    reserve_ids: bool = False,
) -> BatchOutcome:
    """Run one batch through claim, gate, render, send and record. Safe to run twice.

    ``reserve_ids``: the caller runs the batch again until it is done (campaign batches): its
    missing keys may get their rows when first decided (mailer/claims.py).
    """
    get_purpose(spec.purpose)
    composer = composer_for(spec.kind)
    outcome = BatchOutcome()

    with session_scope() as session:
        claim = claims.claim(session, spec, reserve=reserve_ids)
    pending = claim.pending
    outcome.claimed = len(pending)
    outcome.already_done = claim.already_done
    if not pending:
        return outcome

    with session_scope(readonly=True) as session:
        gated = gate.check(
            session,
            spec.purpose,
            list(pending.values()),
            partner_list_versions=spec.partner_list_versions,
        )
        verdicts = gated.reasons
        allowed = {d: r for d, r in pending.items() if verdicts[r] is None}
        views = _recipient_views(gated.allowed.values())
        composition = composer.compose(
            session, spec, [Addressed(d, views[r]) for d, r in allowed.items() if r in views]
        )
    refused = {d: verdicts[r] or gate.UNKNOWN_RECIPIENT for d, r in pending.items() if d not in allowed}
    with session_scope() as session:
        _skip(session, spec, {**refused, **composition.skipped}, outcome, claim)
        _fail_pending(session, spec, composition.failed, outcome, claim)

    tracked = {d for d, r in allowed.items() if r in views and views[r].tracked}
    messages = [part for m in composition.messages if m.envelopes for part in split_by_tracking(m, tracked)]
    backend = backend or get_backend()
    outcomes = _Outcomes(outcome)
    waves = _Waves()
    start = 0
    while start < len(messages):
        wave = messages[start : start + waves.next_size()]
        start += len(wave)
        # Requests are taken into flight a wave at a time, just before they are sent, the gate
        # re-checked in the same statement: a withdrawal recorded while earlier requests of the
        # batch were going out wins for every request that starts about TAKE_AHEAD_SECONDS later.
        # The outcomes of the requests before it are written in the same transaction.
        with session_scope() as session:
            outcomes.write_due(session)
            wanted = [d for m in wave for d in m.delivery_ids]
            in_flight = _take_into_flight(session, spec, wanted, claim)
            missed = [d for d in wanted if d not in in_flight]
            if missed:
                _regate(session, spec, missed, outcome, claim)
        if not _send_wave(backend, [_only(m, in_flight) for m in wave], outcomes, waves, final_attempt):
            break
    outcomes.flush()
    if claim.unrecorded and not outcome.retry:
        # Keys the composer neither sent, skipped nor failed: recorded, never lost without a trace.
        log.warning("%d sends of %s were not decided; left pending", len(claim.unrecorded), spec.belongs_to)
        with session_scope() as session:
            claims.insert(session, spec, claim.take_unrecorded(list(claim.unrecorded)), DeliveryState.PENDING)
    return outcome


def deliver_now(spec: BatchSpec, *, backend: Backend | None = None) -> BatchOutcome:
    """Deliver a batch in this process while someone waits (test sends): brief retries, then
    whatever could not be sent is recorded failed; nothing is left pending."""
    outcome = BatchOutcome()
    for attempt in range(1, INTERACTIVE_ATTEMPTS + 1):
        outcome = deliver_batch(spec, final_attempt=attempt == INTERACTIVE_ATTEMPTS, backend=backend)
        if not outcome.retry:
            return outcome
        if attempt < INTERACTIVE_ATTEMPTS:
            time.sleep(min((outcome.retry_after_ms or 1000) / 1000, INTERACTIVE_MAX_WAIT_SECONDS))
    fail_remaining(spec, f"not sent after {INTERACTIVE_ATTEMPTS} attempts: {outcome.last_error}")
    return outcome


def fail_remaining(spec: BatchSpec, error: str) -> int:
    """Record the sends of a batch still to make as failed (its last retry raised), those without
    a row included; returns how many."""
    outcome = BatchOutcome()
    with session_scope() as session:
        claim = claims.claim(session, spec)
        _fail_pending(session, spec, dict.fromkeys(claim.pending, error), outcome, claim)
    return outcome.failed


def _recipient_views(rows: Iterable[Any]) -> dict[int, RecipientView]:
    """What rendering may know of the recipients the gate allowed (active, with an address)."""
    default_locale = get_settings().default_locale
    return {
        r.id: RecipientView(r.id, r.address, r.name, r.locale or default_locale, r.time_zone, bool(r.tracked))
        for r in rows
        if r.address
    }


def _skip(
    session: Session, spec: BatchSpec, reasons: dict[int, str], outcome: BatchOutcome, claim: claims.Claim
) -> None:
    outcome.skipped.update(_decide(session, spec, claim, reasons, DeliveryState.SKIPPED, "skip_reason"))


def _fail_pending(
    session: Session, spec: BatchSpec, errors: dict[int, str], outcome: BatchOutcome, claim: claims.Claim
) -> None:
    truncated = {d: error[:MAX_ERROR_LENGTH] for d, error in errors.items()}
    outcome.failed += sum(_decide(session, spec, claim, truncated, DeliveryState.FAILED, "error").values())


def _decide(
    session: Session,
    spec: BatchSpec,
    claim: claims.Claim,
    texts: dict[int, str],
    state: DeliveryState,
    column: str,
) -> Counter[str]:
    """Record pending sends in a final ``state`` with their own text in ``column`` (a skip reason,
    an error): rows of unrecorded keys inserted, the others updated. Returns how many per text."""
    now = utcnow()
    counts: Counter[str] = Counter()
    for text, group in groupby(sorted(texts.items(), key=lambda item: item[1]), key=lambda item: item[1]):
        ids = [delivery_id for delivery_id, _ in group]
        unrecorded = claim.take_unrecorded(ids)
        values: dict[str, Any] = {column: text, "finished_at": now}
        counts[text] += len(claims.insert(session, spec, unrecorded, state, **values))
        recorded = [d for d in ids if d not in unrecorded]
        counts[text] += _update_where(session, recorded, DeliveryState.PENDING, state=state, **values)
    return counts


def _take_into_flight(
    session: Session, spec: BatchSpec, delivery_ids: list[int], claim: claims.Claim
) -> set[int]:
    """Move pending sends that still pass the gate to ``sending``, atomically; return the ones won.

    Sends without a row yet get it here, inserted ``sending`` by the same gated statement.
    """
    won: set[int] = set()
    now = utcnow()
    unrecorded = claim.unrecorded_among(delivery_ids)
    inserted = claims.insert(session, spec, unrecorded, DeliveryState.SENDING, gated=True, sending_at=now)
    claim.take_unrecorded(inserted)
    won.update(inserted)
    recorded = [d for d in delivery_ids if d not in unrecorded]
    for chunk in in_chunks(recorded, gate.GATE_CHUNK):
        won.update(
            session.scalars(
                sa.update(Delivery)
                .where(
                    id_in(session, Delivery.id, chunk),
                    state_is(Delivery.state, DeliveryState.PENDING),
                    gate.allowed_now(
                        Delivery.recipient_id,
                        Delivery.purpose,
                        partner_list_versions=spec.partner_list_versions,
                    ),
                )
                .values(state=DeliveryState.SENDING, sending_at=now)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )
    return won


def _regate(
    session: Session, spec: BatchSpec, delivery_ids: list[int], outcome: BatchOutcome, claim: claims.Claim
) -> None:
    """Sends that could not be taken into flight: refused by the gate just now, or taken by another."""
    recipients = claim.unrecorded_among(delivery_ids)
    recorded = [d for d in delivery_ids if d not in recipients]
    if recorded:
        rows = session.execute(
            sa.select(Delivery.id, Delivery.recipient_id).where(
                id_in(session, Delivery.id, recorded), state_is(Delivery.state, DeliveryState.PENDING)
            )
        ).all()
        recipients.update({r.id: r.recipient_id for r in rows})
    verdicts = gate.check(
        session,
        spec.purpose,
        list(recipients.values()),
        partner_list_versions=spec.partner_list_versions,
    ).reasons
    reasons = {d: verdicts[r] for d, r in recipients.items()}
    _skip(session, spec, {d: reason for d, reason in reasons.items() if reason}, outcome, claim)
    # A send the gate allows again (consent re-granted within the same instant) stays pending for
    # the sweep to queue again, rather than being recorded with a reason that no longer holds.
    # Without a row yet, it gets one, pending (unless the key was taken by another worker).
    again = claim.take_unrecorded([d for d, reason in reasons.items() if not reason])
    claims.insert(session, spec, again, DeliveryState.PENDING)


def _send_wave(
    backend: Backend, wave: list[OutgoingMessage], outcomes: _Outcomes, waves: _Waves, final_attempt: bool
) -> bool:
    """Send a wave taken into flight; False when the batch must stop here and be retried.

    When it stops, the requests of the wave not yet tried go back to pending untouched.
    """
    outcome = outcomes.outcome
    for index, message in enumerate(wave):
        if not message.envelopes:
            continue
        started = time.monotonic()
        try:
            provider_id = backend.send(message)
        except RateLimited as error:
            # SendGrid asks us to slow down: not a failure, whatever the attempt.
            outcome.last_error = error.detail
            _release(message.delivery_ids, error.detail, outcomes, untried=_after(wave, index))
            outcome.retry = True
            outcome.retry_after_ms = error.retry_after_ms
            return False
        except TransientSendError as error:
            outcome.last_error = error.detail
            if final_attempt:
                outcomes.add(message.delivery_ids, DeliveryState.FAILED, error=error.detail)
                continue
            # Put this request back to pending (the later ones were never tried); the retry resumes.
            _release(message.delivery_ids, error.detail, outcomes, untried=_after(wave, index))
            outcome.retry = True
            return False
        except PermanentSendError as error:
            outcome.last_error = error.detail
            outcomes.add(message.delivery_ids, DeliveryState.FAILED, error=error.detail)
        except AmbiguousSendError as error:
            outcome.last_error = error.detail
            outcomes.add(message.delivery_ids, DeliveryState.UNKNOWN, error=error.detail)
        except Exception:
            # Not a provider answer (a bug, a malformed message): nothing was sent; leave nothing
            # in flight for the sweep to mistake for a lost answer.
            _release(message.delivery_ids, None, outcomes, untried=_after(wave, index))
            raise
        except BaseException:
            # Interrupted (a time limit, shutdown) while the request may have reached SendGrid:
            # never sent again blindly. The requests after it were not tried.
            outcomes.add(message.delivery_ids, DeliveryState.UNKNOWN, error=INTERRUPTED)
            _release([], None, outcomes, untried=_after(wave, index))
            raise
        else:
            outcomes.add(message.delivery_ids, DeliveryState.SENT, provider_id=provider_id)
        waves.observe(time.monotonic() - started)
    return True


def _after(wave: list[OutgoingMessage], index: int) -> list[int]:
    """The sends of the wave's requests after ``index``: taken into flight, never tried."""
    return [d for later in wave[index + 1 :] for d in later.delivery_ids]


class _Waves:
    """How many requests to take into flight at once: as many as go out in TAKE_AHEAD_SECONDS.

    One transaction per request cost a third of the digest throughput; one per batch let a
    withdrawal wait for the whole batch. The first wave is one request; then the mean request
    time so far sizes the next wave, at most RECORD_EVERY_MESSAGES requests.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.requests += 1
        self.seconds += seconds

    def next_size(self) -> int:
        if not self.requests:
            return 1
        mean = self.seconds / self.requests
        fits = int(TAKE_AHEAD_SECONDS / mean) if mean > 0 else RECORD_EVERY_MESSAGES
        return max(1, min(fits, RECORD_EVERY_MESSAGES))


def _only(message: OutgoingMessage, delivery_ids: set[int]) -> OutgoingMessage:
    return replace(message, envelopes=tuple(e for e in message.envelopes if e.delivery_id in delivery_ids))


class _Outcomes:
    """Provider outcomes of a batch, written with the next wave's take-into-flight.

    A batch of per-reader digests is hundreds of requests; a transaction each for the outcomes
    was a quarter of a worker's time. Outcomes wait at most RECORD_EVERY_MESSAGES requests or
    RECORD_EVERY_SECONDS: if the process dies before writing them, those sends stay ``sending``
    and the sweep records them ``unknown`` (never re-sent; provider events settle them). The sends
    recorded sent are one UPDATE, each row joined to its request's message id; a failed or unknown
    request (rare) is one UPDATE by primary keys.
    """

    def __init__(self, outcome: BatchOutcome) -> None:
        self.outcome = outcome
        self.pending: list[tuple[list[int], DeliveryState, str | None, str | None]] = []
        self.since = time.monotonic()

    def add(
        self,
        delivery_ids: list[int],
        state: DeliveryState,
        *,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> None:
        self.pending.append((delivery_ids, state, provider_id, error[:MAX_ERROR_LENGTH] if error else None))

    def write_due(self, session: Session) -> None:
        """Write the outcomes if enough have waited, in the caller's transaction."""
        if (
            len(self.pending) >= RECORD_EVERY_MESSAGES
            or time.monotonic() - self.since >= RECORD_EVERY_SECONDS
        ):
            self.write(session)

    def flush(self) -> None:
        """Write every outcome still waiting, in a transaction of its own."""
        if self.pending:
            with session_scope() as session:
                self.write(session)

    def write(self, session: Session) -> None:
        now = utcnow()
        sent = [
            (d, provider_id)
            for ids, state, provider_id, _ in self.pending
            if state == DeliveryState.SENT
            for d in ids
        ]
        # Every request's sends recorded sent in one statement, each with its request's message id.
        for chunk in in_chunks(sent, OUTCOME_CHUNK):
            answered = id_text_rows(session, chunk, "answered")
            self.outcome.sent += session.execute(
                sa.update(Delivery)
                .where(Delivery.id == answered.c.id, state_is(Delivery.state, DeliveryState.SENDING))
                .values(
                    state=DeliveryState.SENT,
                    finished_at=now,
                    attempts=Delivery.attempts + 1,
                    error=None,
                    provider_message_id=sa.func.coalesce(answered.c.value, Delivery.provider_message_id),
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        for delivery_ids, state, _, error in self.pending:
            if state == DeliveryState.SENT:
                continue
            values: dict[str, Any] = {
                "state": state,
                "finished_at": now,
                "attempts": Delivery.attempts + 1,
                "error": error,
            }
            count = _update_where(session, delivery_ids, DeliveryState.SENDING, **values)
            if state == DeliveryState.FAILED:
                self.outcome.failed += count
            else:
                self.outcome.unknown += count
        self.pending = []
        self.since = time.monotonic()


def _release(
    attempted: list[int], error: str | None, outcomes: _Outcomes, *, untried: Sequence[int] = ()
) -> None:
    """Back to pending: the provider did not take these; the retried message will send them.

    ``attempted`` were in the request that failed (``error`` counts as an attempt); ``untried``
    were taken into flight with it but never sent. The outcomes still waiting are written in the
    same transaction.
    """
    with session_scope() as session:
        outcomes.write(session)
        values: dict[str, Any] = {"state": DeliveryState.PENDING}
        if error is not None:
            values.update(attempts=Delivery.attempts + 1, error=error[:MAX_ERROR_LENGTH])
        _update_where(session, attempted, DeliveryState.SENDING, **values)
        if untried:
            _update_where(session, untried, DeliveryState.SENDING, state=DeliveryState.PENDING)


def _update_where(session: Session, ids: Sequence[int], from_state: DeliveryState, **values: Any) -> int:
    count = 0
    for chunk in in_chunks(list(ids), gate.GATE_CHUNK):
        result = session.execute(
            sa.update(Delivery)
            .where(id_in(session, Delivery.id, chunk), state_is(Delivery.state, from_state))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        count += result.rowcount  # type: ignore[attr-defined]
    return count


def unsettled(state: DeliveryState) -> sa.ColumnElement[bool]:
    """``state = 'pending'`` or ``'sending'``, written so that the partial index holding only those
    rows (migration 0006) serves the query: values as literals (PostgreSQL's planner must see them),
    and the index's own condition repeated (SQLite matches it term for term)."""
    if state not in UNSETTLED_STATES:
        raise ValueError(f"{state} is not an unsettled state")
    return sa.and_(
        Delivery.state == _literal(state),
        Delivery.state.in_([_literal(s) for s in UNSETTLED_STATES]),
    )


def _literal(state: DeliveryState) -> sa.ColumnElement[str]:
    return sa.literal_column(f"'{state.value}'", sa.String())


@dataclass
class SweepResult:
    """What a sweep found: sends marked unknown, and batches of stale pending sends to queue again."""

    marked_unknown: int
    requeue: list[BatchSpec]


def sweep(now: dt.datetime | None = None) -> SweepResult:
    """Settle sends left in flight by a dead process, and find pending sends whose message was lost."""
    settings = get_settings()
    now = now or utcnow()
    with session_scope() as session:
        marked = session.execute(
            sa.update(Delivery)
            .where(
                unsettled(DeliveryState.SENDING),
                Delivery.sending_at < now - dt.timedelta(seconds=settings.stale_send_seconds),
            )
            .values(
                state=DeliveryState.UNKNOWN,
                finished_at=now,
                error="no outcome recorded: the process stopped while the provider call was in flight",
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        cutoff = now - dt.timedelta(seconds=settings.stale_pending_seconds)
        # A send queued again waits a whole period before the next sweep queues it once more, so a
        # long backlog is not copied into the broker every few minutes.
        found = session.execute(
            sa.update(Delivery)
            .where(
                unsettled(DeliveryState.PENDING),
                sa.func.coalesce(Delivery.requeued_at, Delivery.sending_at, Delivery.created_at) < cutoff,
                # Campaign batches are queued again by the campaign sweep, which honours pauses.
                Delivery.kind.not_in(sorted(kinds_requeued_by_their_owner())),
            )
            .values(requeued_at=now)
            .returning(Delivery.kind, Delivery.purpose, Delivery.belongs_to, Delivery.recipient_id)
            .execution_options(synchronize_session=False)
        ).all()
    rows = sorted(found, key=lambda r: (r.kind, r.purpose, r.belongs_to, r.recipient_id))
    requeue: list[BatchSpec] = []
    for (kind, purpose, belongs_to), group in groupby(rows, key=lambda r: (r.kind, r.purpose, r.belongs_to)):
        ids = [r.recipient_id for r in group]
        requeue.extend(split(kind, purpose, belongs_to, ids, size=REQUEUE_BATCH_SIZE))
    if marked:
        log.warning("marked %d stale in-flight sends unknown", marked)
    return SweepResult(marked_unknown=marked, requeue=requeue)
