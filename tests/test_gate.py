"""The gate: its truth table as a property, set-based cost, and the address form."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer import consent, gate, recipients
from mailer.db import session_scope
from mailer.models import ConsentAction, ConsentSource, SuppressionReason
from mailer.purposes import ALL_PURPOSES, PURPOSE_KEYS
from mailer.suppression import entries
from tests.conftest import counted_queries, truncate_all
from tests.factories import make_recipients

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

consent_event = st.tuples(
    st.sampled_from(PURPOSE_KEYS), st.sampled_from(list(ConsentAction)), st.integers(0, 50)
)
suppression = st.tuples(
    st.sampled_from([ALL_PURPOSES, *PURPOSE_KEYS]), st.sampled_from(list(SuppressionReason))
)
person = st.fixed_dictionaries(
    {
        "events": st.lists(consent_event, max_size=6),
        "suppressions": st.lists(suppression, max_size=3, unique_by=lambda s: s[0]),
        "erased": st.booleans(),
    }
)


def expected_verdict(who: dict, purpose: str) -> str | None:
    """The gate's rule, written out independently of the code under test."""
    if who["erased"]:
        return "erased"
    for scope, reason in who["suppressions"]:  # the oldest entry names the reason
        if scope in (ALL_PURPOSES, purpose):
            return f"suppressed:{reason.value}"
    mine = [(at, index, action) for index, (p, action, at) in enumerate(who["events"]) if p == purpose]
    if not mine:
        return "no_consent"
    return None if max(mine)[2] == ConsentAction.GRANTED else "no_consent"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(person, min_size=1, max_size=6))
def test_gate_truth_table(db, people):
    truncate_all(db)
    # Given recipients with arbitrary consent histories (events recorded out of time order),
    # suppression entries of every scope, some accounts erased
    with session_scope() as session:
        ids = []
        for n, who in enumerate(people):
            recipient = recipients.create(session, f"p{n}@example.com")
            for purpose, action, minute in who["events"]:
                consent.record(
                    session,
                    consent.ConsentChange(
                        recipient.id,
                        purpose,
                        action,
                        consent.Proof(source=ConsentSource.IMPORT, at=T0 + dt.timedelta(minutes=minute)),
                    ),
                )
            for order, (scope, reason) in enumerate(who["suppressions"]):
                entry, _ = entries.add(session, recipient.address, scope=scope, reason=reason, source="test")
                entry.created_at = T0 + dt.timedelta(seconds=order)
            ids.append(recipient.id)
        for rid, who in zip(ids, people, strict=True):
            if who["erased"]:
                recipients.erase(session, f"p{ids.index(rid)}@example.com")
    # When the gate answers for each purpose, Then it matches the rule, and the SQL predicate agrees
    with session_scope(readonly=True) as session:
        for purpose in PURPOSE_KEYS:
            gated = gate.check(session, purpose, ids)
            verdicts = gated.reasons
            assert verdicts == {
                rid: expected_verdict(who, purpose) for rid, who in zip(ids, people, strict=True)
            }
            predicate = gate.allowed_now(sa.literal_column("r_id"), sa.literal(purpose))  # type: ignore[arg-type]
            allowed = {
                rid
                for rid in ids
                if session.scalar(
                    sa.select(predicate).select_from(sa.select(sa.literal(rid).label("r_id")).subquery())
                )
            }
            assert allowed == {rid for rid, verdict in verdicts.items() if verdict is None}
            # The rows of exactly the allowed recipients come with the answer
            assert set(gated.allowed) == allowed


def test_a_thousand_recipients_cost_one_query(db):
    ids = make_recipients(1000, granted=("nouma_offers",))
    entries_to_add = ids[::10]
    with session_scope() as session:
        for rid in entries_to_add:
            entries.add(
                session,
                f"person{ids.index(rid)}@example.com",
                scope="all",
                reason=SuppressionReason.MANUAL,
                source="t",
            )
    with session_scope(readonly=True) as session, counted_queries(db) as statements:
        gated = gate.check(session, "nouma_offers", ids)
    verdicts = gated.reasons
    assert len(statements) == 1
    assert sum(v is None for v in verdicts.values()) == 900
    # The same query read what rendering needs of the 900 allowed recipients
    assert len(gated.allowed) == 900
    assert {row.address for row in gated.allowed.values()} == {
        f"person{ids.index(rid)}@example.com" for rid, v in verdicts.items() if v is None
    }
    assert sum(v == "suppressed:manual" for v in verdicts.values()) == 100


def test_unknown_ids_and_addresses(db):
    (rid,) = make_recipients(1)
    with session_scope() as session:
        entries.add(
            session, "stranger@example.invalid", scope="all", reason=SuppressionReason.OPPOSITION, source="t"
        )
        assert gate.check(session, "tender_alerts", [rid, 424242]).reasons == {
            rid: None,
            424242: "unknown_recipient",
        }
        assert gate.check_addresses(
            session,
            "tender_alerts",
            ["Person0@Example.com", "nobody@example.com", "stranger@example.invalid", "not an address"],
        ) == {
            "Person0@Example.com": None,
            "nobody@example.com": "unknown_recipient",
            "stranger@example.invalid": "suppressed:opposition",
            "not an address": "invalid_address",
        }


def test_suppression_is_by_normalised_address(db):
    (rid,) = make_recipients(1)
    with session_scope() as session:
        entries.add(
            session,
            "  PERSON0@EXAMPLE.COM ",
            scope="tender_alerts",
            reason=SuppressionReason.UNSUBSCRIBE,
            source="t",
        )
        assert gate.check(session, "tender_alerts", [rid]).reasons == {rid: "suppressed:unsubscribe"}
        assert gate.check(session, "nouma_offers", [rid]).reasons == {rid: "no_consent"}
