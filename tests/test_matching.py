"""Matching: hand-checked searches give exactly the expected tenders; the index agrees with the loop."""

from __future__ import annotations

import json
import random

import pytest

from mailer.alerts.formats.ted import from_ted
from mailer.alerts.matching import (
    MAX_TENDERS_PER_SECTION,
    Criteria,
    Near,
    SearchToMatch,
    TenderFacts,
    TenderIndex,
    digest_sections,
    naive_match,
    tender_text,
)
from mailer.alerts.searches import cpv_prefix
from mailer.alerts.tenders import TenderRecord
from mailer.alerts.text import parse_query, words
from mailer.errors import InvalidInput
from tests.conftest import shared_data


def facts(tid: int, title: str, **fields) -> TenderFacts:
    return TenderFacts(id=tid, text=tender_text(title, fields.pop("description", None), None), **fields)


#: Hand-made tenders, each chosen for one rule.
TENDERS = [
    facts(
        1,
        "Travaux de voirie à Grenoble",
        cpv_codes=("45233140",),
        departments=("38",),
        regions=("84",),
        value_cents=125_000_000,
    ),
    facts(
        2, "Réfection de la VOIRIE communale", cpv_codes=("45233141",), departments=("73",), regions=("84",)
    ),
    facts(
        3,
        "Entretien des voies ferrées",
        cpv_codes=("45234000",),
        departments=("38",),
        regions=("84",),
        value_cents=5_000_000,
    ),
    facts(
        4,
        "Travaux de voirie et parking souterrain",
        cpv_codes=("45233140",),
        departments=("69",),
        regions=("84",),
        value_cents=90_000_000,
    ),
    facts(
        5,
        "Maintenance informatique",
        description="Tierce maintenance applicative et développement",
        cpv_codes=("72267000",),
        departments=("75",),
        regions=("11",),
        value_cents=30_000_000,
    ),
    facts(
        6,
        "Développement d'applications mobiles",
        cpv_codes=("72212000",),
        departments=("92",),
        regions=("11",),
    ),
    facts(
        7, "Équipements de cantine scolaire", cpv_codes=("39314000",), departments=("38",), regions=("84",)
    ),
    facts(
        8, "Restauration scolaire des écoles", cpv_codes=("55523100",), departments=("13",), regions=("93",)
    ),
    facts(
        9,
        "Scolaire : restauration des bâtiments",
        cpv_codes=("45454100",),
        departments=("13",),
        regions=("93",),
    ),
    facts(
        10,
        "Nettoyage de l'œuvre d'art",
        cpv_codes=("90911000",),
        departments=("75",),
        regions=("11",),
        latitude=48.8566,
        longitude=2.3522,
    ),
]


def ids_for(**criteria) -> list[int]:
    return TenderIndex(list(TENDERS)).match(Criteria(**criteria))


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        # Case and accents folded, whole words in any of their forms: "voie" finds "voies",
        # never "voirie"
        ({"keywords": "VOIRIE"}, [1, 2, 4]),
        ({"keywords": "equipement"}, [7]),
        ({"keywords": "oeuvre"}, [10]),
        ({"keywords": "voie"}, [3]),
        # Any of the words
        ({"keywords": "voirie cantine"}, [1, 2, 4, 7]),
        # A phrase needs its words in order, next to each other
        ({"keywords": '"travaux de voirie"'}, [1, 4]),
        ({"keywords": '"restauration scolaire"'}, [8]),
        ({"keywords": '"scolaire restauration"'}, [9]),
        # Exclusions, of words and of phrases
        ({"keywords": "voirie -parking"}, [1, 2]),
        ({"keywords": 'voirie -"réfection de la voirie"'}, [1, 4]),
        ({"keywords": "-voirie", "departments": ("38",)}, [3, 7]),
        # CPV: a prefix, or a code standing for the codes under it
        ({"cpv_prefixes": ("72",)}, [5, 6]),
        ({"cpv_prefixes": (cpv_prefix("45233140"),)}, [1, 2, 4]),
        ({"cpv_prefixes": (cpv_prefix("45000000"),)}, [1, 2, 3, 4, 9]),
        ({"cpv_prefixes": (cpv_prefix("4523*"),)}, [1, 2, 3, 4]),
        # Places: any department or region named
        ({"departments": ("38", "73")}, [1, 2, 3, 7]),
        ({"regions": ("11",)}, [5, 6, 10]),
        ({"departments": ("13",), "regions": ("11",)}, [5, 6, 8, 9, 10]),
        # Value bounds in euros; a tender of unknown value passes them
        ({"cpv_prefixes": ("45",), "min_value": 1_000_000}, [1, 2, 9]),
        ({"cpv_prefixes": ("45",), "max_value": 900_000}, [2, 3, 4, 9]),
        ({"cpv_prefixes": ("45",), "min_value": 50_000, "max_value": 900_000}, [2, 3, 4, 9]),
        # Everything together
        (
            {
                "keywords": 'voirie "travaux de voirie" -parking',
                "cpv_prefixes": ("4523",),
                "regions": ("84",),
                "min_value": 100_000,
            },
            [1, 2],
        ),
        # No criterion: every tender
        ({}, list(range(1, 11))),
    ],
)
def test_hand_checked_searches_match_exactly_the_expected_tenders(criteria, expected):
    assert ids_for(**criteria) == expected
    assert [t.id for t in TENDERS if naive_match(Criteria(**criteria), t)] == expected


def test_a_radius_counts_only_with_the_location_consent_given():
    # With the recipient's location (consent granted): tender 10 in Paris is within 20 km
    near_paris = Near(48.85, 2.35, 20)
    assert ids_for(wants_radius=True, near=near_paris) == [10]
    # Without consent the location is never read: a radius alone names no tender
    assert ids_for(wants_radius=True) == []
    # ... and departments still count
    assert ids_for(wants_radius=True, departments=("73",)) == [2]


def test_the_query_language_parses_and_refuses_an_open_quote():
    query = parse_query('Voirie "travaux  de VOIRIE" -parking -"place de stationnement" saint-étienne')
    assert [t.words for t in query.include] == [
        ("voirie",),
        ("travaux", "de", "voirie"),
        ("saint", "etienne"),
    ]
    assert [t.words for t in query.exclude] == [("parking",), ("place", "de", "stationnement")]
    assert words("L'Œuvre d’ÉTÉ") == ["l", "oeuvre", "d", "ete"]
    with pytest.raises(InvalidInput, match="quote is not closed"):
        parse_query('"voirie')


def test_a_tender_matching_several_searches_shows_once_under_the_first():
    index = TenderIndex(list(TENDERS))
    first = SearchToMatch(101, 1, Criteria(departments=("38",)), None)
    second = SearchToMatch(102, 1, Criteria(keywords="voirie"), None)
    sections = digest_sections(index, [first, second])
    assert sections == [(101, [1, 3, 7], 3), (102, [2, 4], 2)]


def test_high_water_marks_limit_each_search_to_newer_tenders():
    index = TenderIndex(list(TENDERS))
    criteria = Criteria(keywords="voirie")
    assert index.match(criteria, high_water=1) == [2, 4]
    assert index.match(criteria, high_water=4) == []
    assert digest_sections(index, [SearchToMatch(1, 1, criteria, None)], window_floor=2) == [(1, [4], 1)]


def test_the_index_agrees_with_the_naive_loop_on_the_real_notices():
    # Given the 758 real notices and 400 searches drawn from their own words, codes and places
    tenders = []
    for position, line in enumerate(shared_data("tenders", "ted_fr_notices.jsonl").read_text().splitlines()):
        record = TenderRecord.model_validate(from_ted(json.loads(line)))
        tenders.append(
            TenderFacts(
                id=position + 1,
                text=tender_text(
                    record.title, record.description, record.buyer.name if record.buyer else None
                ),
                cpv_codes=tuple(record.cpv),
                departments=tuple(record.departments or ()),
                regions=tuple(record.regions),
                value_cents=int(record.value.amount * 100) if record.value else None,
            )
        )
    rng = random.Random(20261126)
    vocabulary = sorted({w for t in tenders for w in t.text.split() if len(w) > 3})
    searches = []
    for _ in range(400):
        picked = rng.sample(vocabulary, 3)
        keywords = " ".join(
            [picked[0], f'"{picked[1]} {rng.choice(vocabulary)}"' if rng.random() < 0.3 else picked[1]]
            + ([f"-{picked[2]}"] if rng.random() < 0.3 else [])
        )
        some = rng.choice(tenders)
        searches.append(
            Criteria(
                keywords=keywords if rng.random() < 0.7 else "",
                cpv_prefixes=tuple(c[: rng.randint(2, 5)] for c in some.cpv_codes[:1])
                if rng.random() < 0.5
                else (),
                departments=some.departments[:1] if rng.random() < 0.4 else (),
                min_value=rng.choice([None, 100_000, 1_000_000]),
            )
        )
    index = TenderIndex(tenders)

    # Then every search finds exactly what the loop over every tender finds
    for criteria in searches:
        assert index.match(criteria) == [t.id for t in tenders if naive_match(criteria, t)], criteria
    assert sum(len(index.match(c)) for c in searches) > 100  # the searches do find things


def test_digest_sections_agree_with_the_naive_loop_on_the_real_notices():
    # Given the real notices and readers of three searches each, drawn from their own words
    tenders = [
        TenderFacts(
            id=position + 1,
            text=tender_text(record.title, record.description, record.buyer.name if record.buyer else None),
            cpv_codes=tuple(record.cpv),
            departments=tuple(record.departments or ()),
        )
        for position, record in enumerate(
            TenderRecord.model_validate(from_ted(json.loads(line)))
            for line in shared_data("tenders", "ted_fr_notices.jsonl").read_text().splitlines()
        )
    ]
    rng = random.Random(7)
    vocabulary = sorted({w for t in tenders for w in t.text.split() if len(w) > 3})
    index = TenderIndex(tenders)
    listed = 0
    for reader in range(150):
        own = [
            SearchToMatch(
                reader * 3 + n,
                reader,
                Criteria(
                    keywords=rng.choice(["", rng.choice(vocabulary), "travaux", "services"]),
                    departments=rng.choice(tenders).departments[:1] if rng.random() < 0.3 else (),
                ),
                rng.choice([None, 100, 400]),
            )
            for n in range(3)
        ]
        # The reference: every tender tested one by one, shown once under the first search
        shown: set[int] = set()
        expected = []
        for search in own:
            floor = search.high_water or 0
            fresh = [
                t.id
                for t in tenders
                if t.id > floor and t.id not in shown and naive_match(search.criteria, t)
            ]
            if fresh:
                shown.update(fresh)
                expected.append((search.id, fresh[:MAX_TENDERS_PER_SECTION], len(fresh)))
        # Then the index gives the same sections, the same first ten tenders and the same counts
        assert digest_sections(index, own) == expected
        listed += sum(count for _, _, count in expected)
    assert listed > 1000  # sections longer than the ten listed are among them
