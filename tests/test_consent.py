"""The consent ledger: append-only events with proof; the current state always equals the ledger's."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer import consent, recipients
from mailer.db import session_scope
from mailer.models import Consent, ConsentAction, ConsentEvent, ConsentSource
from mailer.purposes import PURPOSE_KEYS
from tests.conftest import truncate_all
from tests.factories import make_recipients

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def stored_state() -> dict[tuple[int, str], tuple[bool, int]]:
    with session_scope(readonly=True) as session:
        return {
            (c.recipient_id, c.purpose): (c.granted, c.event_id) for c in session.scalars(sa.select(Consent))
        }


def derived_state() -> dict[tuple[int, str], tuple[bool, int]]:
    with session_scope(readonly=True) as session:
        return consent.derived_from_ledger(session)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from(PURPOSE_KEYS), st.booleans(), st.integers(0, 30)),
            min_size=1,
            max_size=8,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_current_state_is_always_the_latest_event(db, batches):
    truncate_all(db)
    ids = make_recipients(3, granted=())
    # When events arrive in any order, one at a time or in bulk (imports)
    for number, batch in enumerate(batches):
        changes = [
            consent.ConsentChange(
                ids[who],
                purpose,
                ConsentAction.GRANTED if granted else ConsentAction.WITHDRAWN,
                consent.Proof(source=ConsentSource.IMPORT, at=T0 + dt.timedelta(minutes=minute)),
            )
            for who, purpose, granted, minute in batch
        ]
        with session_scope() as session:
            if number % 2:
                consent.record_many(session, changes)
            else:
                for change in changes:
                    consent.record(session, change)
    # Then the stored state is exactly what the ledger derives
    assert stored_state() == derived_state()


def test_an_old_import_does_not_undo_a_newer_withdrawal(db):
    (rid,) = make_recipients(1, granted=())
    with session_scope() as session:
        consent.withdraw(session, rid, "nouma_offers", consent.Proof(source=ConsentSource.ONE_CLICK, at=T0))
        consent.grant(
            session,
            rid,
            "nouma_offers",
            consent.Proof(source=ConsentSource.IMPORT, at=T0 - dt.timedelta(days=30)),
        )
        assert consent.current(session, rid)["nouma_offers"].granted is False
        assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 2


def test_every_event_keeps_its_proof(db):
    (rid,) = make_recipients(1, granted=())
    proof = consent.Proof(
        source=ConsentSource.SIGNUP_FORM,
        at=T0,
        ip="2001:db8::1",
        user_agent="Mozilla/5.0",
        wording_version="partners-2026-01",
        partner_list_version="2026-09",
        recorded_by="site",
        note="form v3",
    )
    with session_scope() as session:
        consent.grant(session, rid, "partner_offers", proof)
    with session_scope(readonly=True) as session:
        (event,) = session.scalars(sa.select(ConsentEvent))
        state = consent.current(session, rid)["partner_offers"]
    assert (event.ip, event.user_agent, event.wording_version, event.partner_list_version) == (
        "2001:db8::1",
        "Mozilla/5.0",
        "partners-2026-01",
        "2026-09",
    )
    assert (event.source, event.recorded_by, event.note, event.at) == (
        ConsentSource.SIGNUP_FORM,
        "site",
        "form v3",
        T0,
    )
    assert state.partner_list_version == "2026-09" and state.granted


def test_concurrent_writers_on_one_recipient_end_consistent(db):
    # Given one recipient and eight writers recording events with scattered times at once
    with session_scope() as session:
        rid = recipients.create(session, "busy@example.com").id
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        try:
            for step in range(10):
                minute = (seed * 7 + step * 13) % 60
                with session_scope() as session:
                    consent.record(
                        session,
                        consent.ConsentChange(
                            rid,
                            "tender_alerts",
                            ConsentAction.GRANTED if (seed + step) % 2 else ConsentAction.WITHDRAWN,
                            consent.Proof(source=ConsentSource.SITE, at=T0 + dt.timedelta(minutes=minute)),
                        ),
                    )
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then nothing failed and the state is the ledger's latest event
    assert errors == []
    assert stored_state() == derived_state()


def test_a_grant_stamped_in_the_future_does_not_outrank_a_later_withdrawal(db):
    # Given a grant whose time is a few minutes ahead (a fast clock on the site)
    (rid,) = make_recipients(1, granted=())
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)
    with session_scope() as session:
        consent.grant(session, rid, "nouma_offers", consent.Proof(source=ConsentSource.SITE, at=ahead))
    # When the person unsubscribes a moment later
    with session_scope() as session:
        consent.withdraw(session, rid, "nouma_offers", consent.Proof(source=ConsentSource.ONE_CLICK))
    # Then the withdrawal is the current state
    with session_scope(readonly=True) as session:
        assert consent.current(session, rid)["nouma_offers"].granted is False
