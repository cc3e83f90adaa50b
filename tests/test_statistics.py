"""Anonymised statistics: no published cell under k recipients, and none recomputable from totals.

The attacker below knows everything the CSV publishes and that every total is the sum of its
children; it solves the linear system exactly (fractions) and must not pin down any suppressed
figure.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.campaigns.models import Campaign
from mailer.cli import main
from mailer.db import session_scope
from mailer.models import ConsentSource, Delivery, DeliveryState
from mailer.statistics import write_csv
from mailer.statistics.disclosure import ALL, Cell, protect
from mailer.statistics.figures import FIGURES
from tests.alert_factories import add_search
from tests.factories import make_recipient

NOV = dt.datetime(2026, 11, 10, 9, 0, tzinfo=dt.UTC)


def recovered(rows: list[dict[str, str]]) -> set[tuple[tuple[str, ...], str]]:
    """The suppressed figures an attacker works out exactly from the published rows."""
    key_of = {tuple(r[d] for d in ("purpose", "campaign", "week", "department")): r for r in rows}
    found: set[tuple[tuple[str, ...], str]] = set()
    for figure in FIGURES:
        unknowns = sorted(k for k, r in key_of.items() if r["suppressed"] == "yes")
        index = {k: i for i, k in enumerate(unknowns)}
        equations: list[list[Fraction]] = []
        groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for key in key_of:
            level = sum(p != ALL for p in key) - 1
            if level > 0:
                groups.setdefault((*key[:level], *[ALL] * (4 - level)), []).append(key)
        for parent, children in groups.items():
            row = [Fraction(0)] * (len(unknowns) + 1)
            for key, sign in [(parent, -1), *((c, 1) for c in children)]:
                if key in index:
                    row[index[key]] += sign
                else:
                    row[-1] -= sign * int(key_of[key][figure])
            equations.append(row)
        for pivot_row in _reduced(equations, len(unknowns)):
            nonzero = [i for i, v in enumerate(pivot_row[:-1]) if v != 0]
            if len(nonzero) == 1:
                found.add((unknowns[nonzero[0]], figure))
    return found


def _reduced(rows: list[list[Fraction]], width: int) -> list[list[Fraction]]:
    """Reduced row echelon form (Gauss-Jordan), exact."""
    rows = [r[:] for r in rows]
    lead = 0
    for column in range(width):
        pivot = next((i for i in range(lead, len(rows)) if rows[i][column] != 0), None)
        if pivot is None:
            continue
        rows[lead], rows[pivot] = rows[pivot], rows[lead]
        rows[lead] = [v / rows[lead][column] for v in rows[lead]]
        for i in range(len(rows)):
            if i != lead and rows[i][column] != 0:
                factor = rows[i][column]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[lead], strict=True)]
        lead += 1
    return rows[:lead]


def published(table) -> list[dict[str, str]]:
    out = io.StringIO()
    write_csv(table, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


@st.composite
def trees(draw: st.DrawFn) -> list[Cell]:
    """Leaves of purpose x campaign x week x department with additive figures, and their totals."""
    leaves: dict[tuple[str, ...], list[int]] = {}
    for purpose in draw(
        st.lists(
            st.sampled_from(["nouma_offers", "partner_offers", "tender_alerts"]),
            min_size=1,
            max_size=2,
            unique=True,
        )
    ):
        for campaign in draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=3, unique=True)):
            for week in draw(
                st.lists(st.sampled_from(["2026-W46", "2026-W47"]), min_size=1, max_size=2, unique=True)
            ):
                for department in draw(
                    st.lists(
                        st.sampled_from(["38", "69", "75", "2A", "971"]), min_size=1, max_size=5, unique=True
                    )
                ):
                    people = draw(st.integers(1, 40))
                    leaves[(purpose, campaign, week, department)] = [people, *draw(st.lists(st.integers(0, 50), min_size=len(FIGURES), max_size=len(FIGURES)))]  # fmt: skip
    totals: dict[tuple[str, ...], list[int]] = {}
    for key, values in leaves.items():
        for size in range(4):
            node = (*key[: size + 1], *[ALL] * (3 - size))
            totals[node] = [a + b for a, b in zip(totals.get(node, [0] * len(values)), values, strict=True)]
    return [Cell(key, v[0], dict(zip(FIGURES, v[1:], strict=True))) for key, v in totals.items()]


@settings(max_examples=150, deadline=None)
@given(cells=trees(), k=st.integers(2, 25))
def test_no_suppressed_figure_can_be_worked_back_from_the_published_totals(cells, k):
    # When a table is protected with threshold k
    table = protect(cells, k)
    rows = published(table)
    # Then every published cell describes k recipients or more, and the attacker finds nothing
    assert all(int(r["recipients"]) >= k for r in rows if r["suppressed"] == "no")
    assert recovered(rows) == set()


def test_a_lone_small_cell_takes_a_sibling_with_it():
    # Given one week with a big department and two others, one of them small
    def cell(department: str, people: int) -> Cell:
        return Cell(("nouma_offers", "Noël", "2026-W48", department), people, dict.fromkeys(FIGURES, people))

    leaves = [cell("75", 120), cell("69", 30), cell("38", 4)]
    total = Cell(("nouma_offers", "Noël", "2026-W48", ALL), 154, dict.fromkeys(FIGURES, 154))
    up = [
        Cell(("nouma_offers", "Noël", ALL, ALL), 154, dict.fromkeys(FIGURES, 154)),
        Cell(("nouma_offers", ALL, ALL, ALL), 154, dict.fromkeys(FIGURES, 154)),
    ]
    # When it is protected
    table = protect([*leaves, total, *up], k=10)
    # Then the small one is suppressed, and the smallest other with it, not the big one
    hidden = {key[3] for key, c in table.cells.items() if c.suppressed}
    assert hidden == {"38", "69"}
    # ... whereas without that second suppression, 154 - 120 - 30 gives the 4 back
    rows = published(table)
    for row in rows:
        if row["department"] == "69":
            row.update(suppressed="no", recipients="30", **{f: "30" for f in FIGURES})
    assert (("nouma_offers", "Noël", "2026-W48", "38"), "sends") in recovered(rows)


def add_delivery(session, recipient_id: int, belongs_to: str, state: DeliveryState, at: dt.datetime) -> None:
    session.add(
        Delivery(
            purpose="nouma_offers" if belongs_to.startswith("campaign") else "tender_alerts",
            belongs_to=belongs_to,
            recipient_id=recipient_id,
            kind="campaign" if belongs_to.startswith("campaign") else "tender_digest",
            state=state,
            created_at=at,
        )
    )


def test_stats_export_writes_protected_figures_and_nothing_personal(db, tmp_path, capsys):
    from mailer import consent, preferences

    # Given a campaign sent to 30 people in Isère, 12 in Paris and 3 in Rhône, and a digest to all
    people = []
    with session_scope() as session:
        campaign = Campaign(name="Offre de Noël", purpose="nouma_offers", created_by="marketing")
        session.add(campaign)
        session.flush()
        for i in range(45):
            person = make_recipient(session, f"lecteur{i}@example.com", name=f"Lecteur {i}")
            people.append(person)
    for i, person in enumerate(people):
        add_search(person.address, name="Voirie", departments=["38" if i < 30 else "75" if i < 42 else "69"])
    with session_scope() as session:
        for i, person in enumerate(people):
            state = DeliveryState.BOUNCED if i == 0 else DeliveryState.DELIVERED
            add_delivery(session, person.id, f"campaign:{campaign.id}", state, NOV)
            add_delivery(session, person.id, "digest:daily:2026-11-10", DeliveryState.SENT, NOV)
            add_delivery(session, person.id, f"campaign-test:{campaign.id}:x", DeliveryState.SENT, NOV)
        # ... two of them unsubscribed with the campaign's link
        for person in people[1:3]:
            consent.withdraw(
                session,
                person.id,
                "nouma_offers",
                consent.Proof(
                    source=ConsentSource.ONE_CLICK,
                    at=NOV + dt.timedelta(hours=1),
                    recorded_by=preferences.RECORDED_BY_WEB,
                ),
            )

    # When the month's statistics are exported
    out = tmp_path / "stats.csv"
    assert main(["stats", "export", "--period", "2026-11", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_key = {(r["purpose"], r["campaign"], r["week"], r["department"]): r for r in rows}

    # Then Isère's figures are there; Rhône's 3 people are not, nor Paris's (else 45 - 30 - 12 = 3)
    isere = by_key[("nouma_offers", "Offre de Noël", "2026-W46", "38")]
    assert (isere["recipients"], isere["sends"], isere["bounces"], isere["unsubscribes"]) == (
        "30",
        "30",
        "1",
        "2",
    )
    assert by_key[("nouma_offers", "Offre de Noël", "2026-W46", "69")]["suppressed"] == "yes"
    assert by_key[("nouma_offers", "Offre de Noël", "2026-W46", "75")]["suppressed"] == "yes"
    assert by_key[("nouma_offers", "Offre de Noël", "2026-W46", ALL)]["sends"] == "45"
    assert recovered(rows) == set()
    # ... test sends are not counted, and nothing names or identifies anyone
    assert by_key[("tender_alerts", ALL, ALL, ALL)]["sends"] == "45"
    assert "example.com" not in text and "Lecteur" not in text
    assert not any(str(p.id) == r["campaign"] for p in people for r in rows)
    assert "rows written" in capsys.readouterr().out


def test_stats_export_refuses_a_bad_period_in_one_line(sqlite_db, tmp_path, capsys):
    assert main(["stats", "export", "--period", "2026-13", "--out", str(tmp_path / "x.csv")]) == 2
    error = capsys.readouterr().err
    assert "expected a month" in error and "Traceback" not in error
    assert not (tmp_path / "x.csv").exists()
