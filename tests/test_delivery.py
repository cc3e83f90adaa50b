"""The delivery pipeline against the fake SendGrid: claim, gate at send time, send, record."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mailer import consent
from mailer.batch import BatchSpec
from mailer.db import session_scope
from mailer.delivery import deliver_batch, sweep
from mailer.emails import Composition, _composers
from mailer.models import ConsentSource, Delivery, DeliveryState
from tests.factories import all_deliveries, make_recipients, oppose, withdraw
from tests.fakes.sendgrid import Accept, Hang, RateLimit, Reject


def spec(ids: list[int], purpose: str = "tender_alerts", belongs_to: str = "test:pipeline") -> BatchSpec:
    return BatchSpec("test_message", purpose, belongs_to, tuple(ids))


def test_a_batch_is_sent_once_in_one_request_per_message_and_recorded(db, fake_sendgrid):
    # Given three recipients who consented to tender alerts
    ids = make_recipients(3)

    # When the batch runs, then runs again (a redelivered message)
    first = deliver_batch(spec(ids))
    second = deliver_batch(spec(ids))

    # Then each got exactly one mail, recorded sent with SendGrid's message id
    assert first.sent == 3 and second.sent == 0 and second.already_done == 3
    assert sorted(fake_sendgrid.recipients()) == [f"person{i}@example.com" for i in range(3)]
    records = all_deliveries()
    assert [d.state for d in records] == [DeliveryState.SENT] * 3
    message_id_of = {int(d): r.message_id for r in fake_sendgrid.requests for d in r.delivery_ids}
    assert {d.id: d.provider_message_id for d in records} == message_id_of
    assert len(set(message_id_of.values())) == 3
    assert all(d.attempts == 1 and d.error is None for d in records)


def test_custom_args_carry_our_delivery_id_and_nothing_personal(db, fake_sendgrid):
    ids = make_recipients(2)
    deliver_batch(spec(ids))
    records = {str(d.id) for d in all_deliveries()}
    for request in fake_sendgrid.requests:
        for p in request.body["personalizations"]:
            assert set(p["custom_args"]) == {"delivery_id"}
            assert p["custom_args"]["delivery_id"] in records
        assert "@" not in str(request.body.get("categories"))
        assert request.headers["authorization"] == f"Bearer {fake_sendgrid.api_key}"


def test_withdrawal_after_enqueue_wins(db, fake_sendgrid):
    # Given a batch queued for two recipients
    ids = make_recipients(2)
    # When one withdraws before the worker gets to it
    withdraw(ids[0], "tender_alerts")
    outcome = deliver_batch(spec(ids))
    # Then only the other is sent; the first is recorded skipped with the reason
    assert outcome.sent == 1
    assert fake_sendgrid.recipients() == ["person1@example.com"]
    by_recipient = {d.recipient_id: d for d in all_deliveries()}
    assert by_recipient[ids[0]].state == DeliveryState.SKIPPED
    assert by_recipient[ids[0]].skip_reason == "no_consent"


def test_opposition_after_enqueue_wins(db, fake_sendgrid):
    ids = make_recipients(2)
    oppose("person1@example.com", scope="tender_alerts")
    deliver_batch(spec(ids))
    by_recipient = {d.recipient_id: d for d in all_deliveries()}
    assert by_recipient[ids[1]].skip_reason == "suppressed:opposition"
    assert fake_sendgrid.recipients() == ["person0@example.com"]


def test_withdrawal_between_gate_and_send_still_wins(db, fake_sendgrid, monkeypatch):
    # Given a kind whose rendering takes long enough for a withdrawal to land after the gate ran
    ids = make_recipients(2)

    class WithdrawingComposer:
        def compose(self, session, batch, addressed):
            from mailer.emails import composer_for

            # the recipient withdraws while the batch is being rendered (another connection)
            withdraw(ids[0], "tender_alerts")
            return composer_for("test_message").compose(session, batch, addressed)

    monkeypatch.setitem(_composers, "test_racing_withdrawal", WithdrawingComposer())
    outcome = deliver_batch(BatchSpec("test_racing_withdrawal", "tender_alerts", "test:race", tuple(ids)))

    # Then the statement that takes sends into flight re-checked the gate: not sent, recorded
    assert outcome.sent == 1
    assert fake_sendgrid.recipients() == ["person1@example.com"]
    skipped = [d for d in all_deliveries() if d.state == DeliveryState.SKIPPED]
    assert [(d.recipient_id, d.skip_reason) for d in skipped] == [(ids[0], "no_consent")]


def test_a_kind_can_skip_with_a_named_reason(db, fake_sendgrid, monkeypatch):
    ids = make_recipients(1)

    class Empty:
        def compose(self, session, batch, addressed):
            return Composition(skipped={a.delivery_id: "empty_digest" for a in addressed})

    monkeypatch.setitem(_composers, "test_empty", Empty())
    deliver_batch(BatchSpec("test_empty", "tender_alerts", "test:empty", tuple(ids)))
    (record,) = all_deliveries()
    assert (record.state, record.skip_reason) == (DeliveryState.SKIPPED, "empty_digest")
    assert fake_sendgrid.requests == []


def test_unknown_recipient_ids_get_no_record_and_no_error(db, fake_sendgrid):
    ids = make_recipients(1)
    outcome = deliver_batch(spec([*ids, 999_999]))
    assert outcome.sent == 1
    assert len(all_deliveries()) == 1


def test_permanent_refusal_is_recorded_with_sendgrids_text_and_not_retried(db, fake_sendgrid):
    ids = make_recipients(2)
    fake_sendgrid.script(Reject(400, "The from address does not match a verified Sender Identity.", "from"))
    outcome = deliver_batch(spec(ids[:1]))
    assert not outcome.retry and outcome.failed == 1
    (record,) = all_deliveries()
    assert record.state == DeliveryState.FAILED
    assert record.error == "400: from: The from address does not match a verified Sender Identity."
    assert len(fake_sendgrid.requests) == 1


def test_bad_api_key_fails_with_401_text(db, fake_sendgrid, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    reset_process_state()
    ids = make_recipients(1)
    outcome = deliver_batch(spec(ids))
    assert outcome.failed == 1 and not outcome.retry
    (record,) = all_deliveries()
    assert record.error.startswith("401: The provided authorization grant is invalid")


def test_413_is_permanent(db, fake_sendgrid):
    ids = make_recipients(1)
    fake_sendgrid.script(Reject(413, "Payload Too Large"))
    deliver_batch(spec(ids))
    (record,) = all_deliveries()
    assert (record.state, record.error) == (DeliveryState.FAILED, "413: Payload Too Large")


def test_429_puts_sends_back_to_pending_with_the_servers_delay(db, fake_sendgrid):
    ids = make_recipients(2)
    fake_sendgrid.script(RateLimit(reset_in=2))
    outcome = deliver_batch(spec(ids))
    assert outcome.retry and 1000 <= outcome.retry_after_ms <= 4000
    # One message a recipient here: the first was refused, the second not tried (SendGrid said stop)
    first, second = all_deliveries()
    assert (first.state, first.attempts, first.error[:3]) == (DeliveryState.PENDING, 1, "429")
    assert (second.state, second.attempts, second.error) == (DeliveryState.PENDING, 0, None)
    assert len(fake_sendgrid.requests) == 1
    # The retry sends them, once
    again = deliver_batch(spec(ids))
    assert again.sent == 2
    assert sorted(fake_sendgrid.recipients()) == ["person0@example.com", "person1@example.com"]
    assert [(d.attempts, d.error) for d in all_deliveries()] == [(2, None), (1, None)]


def test_5xx_is_retried_then_failed_on_the_last_attempt(db, fake_sendgrid):
    ids = make_recipients(1)
    fake_sendgrid.script(Reject(503, "Service Unavailable"), Reject(500, "Internal Server Error"))
    first = deliver_batch(spec(ids))
    assert first.retry and first.retry_after_ms is None  # the middleware's backoff applies
    (record,) = all_deliveries()
    assert (record.state, record.attempts, record.error) == (
        DeliveryState.PENDING,
        1,
        "503: Service Unavailable",
    )
    last = deliver_batch(spec(ids), final_attempt=True)
    assert not last.retry and last.failed == 1
    (record,) = all_deliveries()
    assert (record.state, record.attempts, record.error) == (
        DeliveryState.FAILED,
        2,
        "500: Internal Server Error",
    )


def test_an_unreachable_api_is_transient(db, fake_sendgrid, monkeypatch):
    import socket

    from tests.conftest import reset_process_state

    # Given an API address where a port is taken but nothing listens: connections are refused
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MAILER_SENDGRID_API_URL", f"http://127.0.0.1:{taken.getsockname()[1]}")
        reset_process_state()
        ids = make_recipients(1)
        # When a batch is delivered
        outcome = deliver_batch(spec(ids))
    # Then nothing failed for good: the send waits, pending, for a retry
    assert outcome.retry
    (record,) = all_deliveries()
    assert record.state == DeliveryState.PENDING and "unreachable" in record.error


def test_a_hang_past_the_timeout_is_unknown_and_never_resent(db, fake_sendgrid):
    ids = make_recipients(1)
    fake_sendgrid.script(Hang(seconds=3))
    outcome = deliver_batch(spec(ids))
    assert outcome.unknown == 1 and not outcome.retry
    (record,) = all_deliveries()
    assert record.state == DeliveryState.UNKNOWN and "no answer from SendGrid" in record.error
    deliver_batch(spec(ids))
    assert len(fake_sendgrid.requests) == 1


def test_sweep_marks_stale_in_flight_sends_unknown_and_requeues_lost_pending_ones(db):
    import datetime as dt

    ids = make_recipients(3)
    with session_scope() as session:
        now = dt.datetime.now(dt.UTC)
        for rid, state, at in (
            (ids[0], DeliveryState.SENDING, now - dt.timedelta(hours=1)),
            (ids[1], DeliveryState.PENDING, now - dt.timedelta(hours=2)),
            (ids[2], DeliveryState.SENDING, now),
        ):
            session.add(
                Delivery(
                    purpose="tender_alerts",
                    belongs_to="test:sweep",
                    recipient_id=rid,
                    kind="test_message",
                    state=state,
                    created_at=at,
                    sending_at=at if state == DeliveryState.SENDING else None,
                )
            )
    result = sweep()
    assert result.marked_unknown == 1
    assert [s.recipient_ids for s in result.requeue] == [(ids[1],)]
    states = {d.recipient_id: d.state for d in all_deliveries()}
    assert states == {
        ids[0]: DeliveryState.UNKNOWN,
        ids[1]: DeliveryState.PENDING,
        ids[2]: DeliveryState.SENDING,
    }


def test_a_render_error_fails_that_recipient_only(db, fake_sendgrid, monkeypatch):
    from mailer import emails

    ids = make_recipients(2)

    def broken(session, batch, recipients):
        return {r.id: ({} if r.id == ids[0] else {"sent_at": None}) for r in recipients}

    monkeypatch.setattr(emails._composers["test_message"], "build", broken)
    deliver_batch(spec(ids))
    states = {d.recipient_id: (d.state, d.error or "") for d in all_deliveries()}
    assert states[ids[0]][0] == DeliveryState.FAILED and "render_error" in states[ids[0]][1]
    assert "sent_at" in states[ids[0]][1]
    assert states[ids[1]][0] == DeliveryState.SENT


def test_consent_regranted_is_sent_again_under_a_new_intent_only(db, fake_sendgrid):
    ids = make_recipients(1)
    deliver_batch(spec(ids, belongs_to="test:a"))
    withdraw(ids[0], "tender_alerts")
    with session_scope() as session:
        consent.grant(session, ids[0], "tender_alerts", consent.Proof(source=ConsentSource.PREFERENCE_CENTRE))
    deliver_batch(spec(ids, belongs_to="test:a"))
    deliver_batch(spec(ids, belongs_to="test:b"))
    assert len(fake_sendgrid.recipients()) == 2
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 2


class _Recording:
    """The configured backend, with something done after each request (another connection)."""

    def __init__(self, after_send):
        from mailer.providers import get_backend

        self.inner = get_backend()
        self.after_send = after_send
        self.name = "recording"

    def send(self, message):
        provider_id = self.inner.send(message)
        self.after_send(message)
        return provider_id


def test_a_withdrawal_while_earlier_requests_of_the_batch_go_out_wins(db, fake_sendgrid):
    # Given a batch of three one-request-each messages
    ids = make_recipients(3)
    # When the last recipient withdraws while the first request is being answered
    withdrawn = []

    def withdraw_last(message):
        if not withdrawn:
            withdraw(ids[2], "tender_alerts")
            withdrawn.append(True)

    outcome = deliver_batch(spec(ids), backend=_Recording(withdraw_last))
    # Then the requests after it see the withdrawal: not sent, recorded with the reason
    assert outcome.sent == 2
    assert sorted(fake_sendgrid.recipients()) == ["person0@example.com", "person1@example.com"]
    last = {d.recipient_id: d for d in all_deliveries()}[ids[2]]
    assert (last.state, last.skip_reason) == (DeliveryState.SKIPPED, "no_consent")


def test_a_backend_that_breaks_leaves_nothing_in_flight(db, fake_sendgrid):
    import pytest

    ids = make_recipients(2)

    class Broken:
        name = "broken"

        def send(self, message):
            raise ValueError("header value contains a line break")

    with pytest.raises(ValueError):
        deliver_batch(spec(ids), backend=Broken())
    # Nothing was sent: the sends wait as pending (never "sending", which the sweep would call unknown)
    assert [d.state for d in all_deliveries()] == [DeliveryState.PENDING, DeliveryState.PENDING]


def test_a_429_on_the_last_attempt_is_not_a_failure(db, fake_sendgrid):
    ids = make_recipients(1)
    fake_sendgrid.script(RateLimit(reset_in=1))
    outcome = deliver_batch(spec(ids), final_attempt=True)
    assert outcome.retry and outcome.failed == 0
    assert all_deliveries()[0].state == DeliveryState.PENDING


def test_a_test_send_someone_waits_for_ends_recorded_whatever_sendgrid_says(db, fake_sendgrid, monkeypatch):
    from mailer import delivery

    monkeypatch.setattr(delivery, "INTERACTIVE_MAX_WAIT_SECONDS", 0.01)
    ids = make_recipients(2)
    fake_sendgrid.script(*[Reject(503, "Service Unavailable")] * 3, RateLimit(reset_in=1))
    delivery.deliver_now(spec(ids[:1], belongs_to="test:a"))
    delivery.deliver_now(spec(ids[1:], belongs_to="test:b"))
    first, second = all_deliveries()
    assert (first.state, first.error) == (DeliveryState.FAILED, "503: Service Unavailable")
    assert (second.state, second.attempts) == (DeliveryState.SENT, 2)


def test_the_sweep_queues_a_lost_send_again_once_a_period_in_batches_of_250(db):
    ids = make_recipients(300)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    with session_scope() as session:
        session.add_all(
            Delivery(
                purpose="tender_alerts",
                belongs_to="test:lost",
                recipient_id=rid,
                kind="test_message",
                created_at=long_ago,
            )
            for rid in ids
        )
    # When the sweep runs every five minutes during a long backlog
    first = sweep()
    again = sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    later = sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    # Then the lost sends are queued once, in batches of 250, and again only a period later
    assert [len(s.recipient_ids) for s in first.requeue] == [250, 50]
    assert again.requeue == []
    assert sum(len(s.recipient_ids) for s in later.requeue) == 300


def test_a_wave_broken_off_by_a_429_puts_the_requests_not_yet_tried_back_to_pending(db, fake_sendgrid):
    # Given five one-request messages, fast answers (the second wave takes the four others at once)
    ids = make_recipients(5)
    # When SendGrid answers the first two, then asks to slow down
    fake_sendgrid.script(Accept(), Accept(), RateLimit(reset_in=1))
    outcome = deliver_batch(spec(ids))
    # Then two are sent; the limited one and the two never tried wait as pending, no attempt spent
    # on the untried ones, none left in flight for the sweep to call unknown
    assert (outcome.sent, outcome.retry) == (2, True)
    states = sorted((d.state.value, d.attempts) for d in all_deliveries())
    assert states == [("pending", 0), ("pending", 0), ("pending", 1), ("sent", 1), ("sent", 1)]


def test_waves_hold_as_many_requests_as_go_out_in_the_take_ahead_time(monkeypatch):
    from mailer import delivery

    monkeypatch.setattr(delivery, "TAKE_AHEAD_SECONDS", 1.0)
    waves = delivery._Waves()
    assert waves.next_size() == 1
    waves.observe(0.3)
    waves.observe(0.2)
    # 0.25 s a request: four fit in a second
    assert waves.next_size() == 4
    waves.observe(5.0)
    assert waves.next_size() == 1
    fast = delivery._Waves()
    fast.observe(0.0001)
    assert fast.next_size() == delivery.RECORD_EVERY_MESSAGES


def test_a_withdrawal_during_a_slow_batch_wins_within_the_take_ahead_time(db, fake_sendgrid, monkeypatch):
    import time

    from mailer import delivery

    # Given requests that take 0.1 s each and waves sized for 0.25 s (two requests)
    monkeypatch.setattr(delivery, "TAKE_AHEAD_SECONDS", 0.25)
    ids = make_recipients(6)
    sent = []

    def slow_then_withdraw(message):
        time.sleep(0.1)
        sent.append(message)
        if len(sent) == 2:
            # When the last one withdraws while the second request (the second wave's first) is
            # answered: an unbounded second wave would already hold it
            withdraw(ids[5], "tender_alerts")

    deliver_batch(spec(ids), backend=_Recording(slow_then_withdraw))
    # Then it is not sent: its wave, two requests later, was taken after the withdrawal
    last = {d.recipient_id: d for d in all_deliveries()}[ids[5]]
    assert (last.state, last.skip_reason) == (DeliveryState.SKIPPED, "no_consent")
    assert len(sent) == 5


def _plan(session: sa.orm.Session, query: sa.Select[tuple[int]]) -> str:
    """The query plan's text, with sequential scans made as costly as the database allows."""
    dialect = session.get_bind().dialect.name
    compiled = query.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    if dialect == "postgresql":
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        rows = session.execute(sa.text(f"EXPLAIN {compiled}")).scalars()
    else:
        rows = (str(row[-1]) for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
    return "\n".join(rows)


def test_the_sweep_and_message_id_lookups_can_use_the_partial_indexes(db):
    from mailer.delivery import unsettled

    with session_scope() as session:
        for state in (DeliveryState.PENDING, DeliveryState.SENDING):
            plan = _plan(
                session,
                sa.select(Delivery.id).where(unsettled(state), Delivery.created_at < dt.datetime.now(dt.UTC)),
            )
            assert "ix_deliveries_unsettled" in plan, plan
        plan = _plan(session, sa.select(Delivery.id).where(Delivery.provider_message_id.in_(["m1", "m2"])))
        assert "ix_deliveries_provider_message_id" in plan, plan
    # Sent rows are not in the sweep's index: a state it does not hold is refused outright.
    with pytest.raises(ValueError, match="not an unsettled state"):
        unsettled(DeliveryState.SENT)


def test_an_interrupt_while_a_request_is_in_flight_records_it_unknown(db, fake_sendgrid):
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    ids = make_recipients(2)

    class Interrupted:
        name = "interrupted"

        def send(self, message):
            raise TimeLimitExceeded()  # raised into the thread while the request was going out

    with pytest.raises(TimeLimitExceeded):
        deliver_batch(spec(ids), backend=Interrupted())
    # The request may have reached SendGrid: unknown, never re-sent; the one after it waits, pending
    states = {d.recipient_id: (d.state, d.error) for d in all_deliveries()}
    assert states[ids[0]][0] == DeliveryState.UNKNOWN and "interrupted" in states[ids[0]][1]
    assert states[ids[1]] == (DeliveryState.PENDING, None)
