"""One click, one event: two requests for the same change at the same moment record it once.

Mail clients retry one-click POSTs, people double-click, and link scanners replay: each pair of
racing requests below starts its transactions together (a barrier) and must leave exactly one
consent event, on PostgreSQL (READ COMMITTED) as on SQLite.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from mailer import consent, preferences
from mailer.db import session_scope, utcnow
from mailer.models import ConsentAction, ConsentEvent, ConsentSource, Recipient
from tests.factories import make_recipients

PAIRS = 200


def race(ids: list[int], change: Callable[[object, int], object]) -> None:
    """For each recipient, two threads make the same change in two transactions started together."""

    def one(recipient_id: int, barrier: threading.Barrier) -> None:
        with session_scope() as session:
            barrier.wait(timeout=10)
            change(session, recipient_id)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for recipient_id in ids:
            barrier = threading.Barrier(2)
            futures = [pool.submit(one, recipient_id, barrier) for _ in range(2)]
            for future in futures:
                future.result(timeout=30)


def events(action: ConsentAction, purpose: str) -> dict[int, int]:
    with session_scope(readonly=True) as session:
        rows = session.execute(
            sa.select(ConsentEvent.recipient_id, sa.func.count())
            .where(ConsentEvent.action == action, ConsentEvent.purpose == purpose)
            .group_by(ConsentEvent.recipient_id)
        )
        return {recipient_id: count for recipient_id, count in rows}


def proof(source: ConsentSource) -> consent.Proof:
    return consent.Proof(source=source, at=utcnow(), ip="192.0.2.7", recorded_by=preferences.RECORDED_BY_WEB)


def test_racing_one_click_pairs_record_one_withdrawal_each(db):
    # Given 200 people with tender alerts granted
    ids = make_recipients(PAIRS)
    # When each one's one-click POST arrives twice at the same moment
    race(ids, lambda s, r: preferences.unsubscribe(s, r, "tender_alerts", proof(ConsentSource.ONE_CLICK)))
    # Then each has exactly one withdrawal
    assert events(ConsentAction.WITHDRAWN, "tender_alerts") == dict.fromkeys(ids, 1)


def test_racing_undos_record_one_grant_each(db):
    # Given 200 people who unsubscribed with a link
    ids = make_recipients(PAIRS)
    with session_scope() as session:
        for recipient_id in ids:
            preferences.unsubscribe(session, recipient_id, "tender_alerts", proof(ConsentSource.ONE_CLICK))
    # When each one's undo is posted twice at once
    race(
        ids,
        lambda s, r: preferences.undo_unsubscribe(
            s, r, "tender_alerts", proof(ConsentSource.UNSUBSCRIBE_LINK)
        ),
    )
    # Then each has its first grant and exactly one more
    assert events(ConsentAction.GRANTED, "tender_alerts") == dict.fromkeys(ids, 2)


def test_racing_preference_saves_and_stops_record_each_change_once(db):
    # Given 200 people with tender alerts granted
    ids = make_recipients(PAIRS)

    def save(session, recipient_id: int) -> None:
        recipient = session.get(Recipient, recipient_id)
        preferences.update(
            session, recipient, {"tender_alerts": False}, proof(ConsentSource.PREFERENCE_CENTRE)
        )

    def stop(session, recipient_id: int) -> None:
        preferences.stop_everything(
            session, session.get(Recipient, recipient_id), proof(ConsentSource.PREFERENCE_CENTRE)
        )

    # When half save "tender alerts off" twice at once, and half press "stop everything" twice at once
    race(ids[::2], save)
    race(ids[1::2], stop)
    # Then each withdrawal is recorded once
    assert events(ConsentAction.WITHDRAWN, "tender_alerts") == dict.fromkeys(ids, 1)


def test_unsubscribe_figures_leave_out_imported_history(db):
    from mailer.models import ConsentEvent as Event

    # Given a withdrawal made with a link today, and one imported from the site's history
    (today, imported) = make_recipients(2)
    with session_scope() as session:
        preferences.unsubscribe(session, today, "tender_alerts", proof(ConsentSource.ONE_CLICK))
        consent.withdraw(
            session,
            imported,
            "tender_alerts",
            consent.Proof(
                source=ConsentSource.ONE_CLICK,
                at=utcnow() - dt.timedelta(days=400),
                recorded_by="import:history.csv:support",
            ),
        )
    # Then the figures count the one made through the product only
    with session_scope(readonly=True) as session:
        delays = preferences.unsubscribe_delays(session, utcnow() - dt.timedelta(days=1))
        assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 4
    assert len(delays) == 1 and delays[0].delay < dt.timedelta(minutes=1)
