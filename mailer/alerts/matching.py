"""Matching saved searches against a window of tenders through an index, not users x tenders.

The window's tenders are indexed once: each word, CPV prefix (2 to 8 digits), department and
region maps to the set of tenders holding it, kept as the bits of a Python integer (bit i is the
i-th tender by id). A search is then a few AND / OR / AND NOT of those sets, whatever the number
of tenders, and searches with the same criteria (common: people pick from the same lists) share
one computed set. Phrases are checked on the few tenders that hold all their words.

``naive_match`` states the same rules one tender at a time: the tests and the benchmark compare
the two.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from mailer.alerts.text import Query, Term, joined, parse_query

#: Tenders listed per search in one digest; the count says how many more there are.
MAX_TENDERS_PER_SECTION = 10

#: Mean Earth radius (km) for the distance of radius searches.
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class TenderFacts:
    """What matching needs of a tender."""

    id: int
    text: str
    cpv_codes: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    value_cents: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    deadline_on: dt.date | None = None


@dataclass(frozen=True)
class Near:
    """A radius around the recipient's location (only built while their consent is granted)."""

    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class Criteria:
    """A saved search's criteria, hashable so that equal searches share their result."""

    keywords: str = ""
    cpv_prefixes: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    min_value: int | None = None
    max_value: int | None = None
    #: The search asks for a radius (whether or not the location may be used).
    wants_radius: bool = False
    near: Near | None = None
    #: Computed once: every search's criteria are looked up in the index's shared results.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        compared = tuple(getattr(self, f.name) for f in fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash(compared))

    def __hash__(self) -> int:
        return self._hash

    @property
    def query(self) -> Query:
        return _parsed(self.keywords)

    @property
    def has_place(self) -> bool:
        return bool(self.departments or self.regions or self.wants_radius)


@functools.lru_cache(maxsize=65_536)
def _parsed(keywords: str) -> Query:
    return parse_query(keywords)


def tender_text(title: str | None, description: str | None, buyer: str | None) -> str:
    """The text keywords are looked for in: the forms of the title, description and buyer, padded."""
    return joined(" ".join(filter(None, (title, description, buyer))))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def naive_match(criteria: Criteria, tender: TenderFacts) -> bool:
    """The matching rules on one tender: the reference the index must agree with."""
    query = criteria.query
    if not query.empty and not query.matches(tender.text):
        return False
    if criteria.cpv_prefixes and not any(
        code.startswith(prefix) for code in tender.cpv_codes for prefix in criteria.cpv_prefixes
    ):
        return False
    if criteria.has_place:
        in_place = bool(set(criteria.departments) & set(tender.departments)) or bool(
            set(criteria.regions) & set(tender.regions)
        )
        near = criteria.near
        if not in_place and near is not None and tender.latitude is not None and tender.longitude is not None:
            in_place = (
                distance_km(near.latitude, near.longitude, tender.latitude, tender.longitude)
                <= near.radius_km
            )
        if not in_place:
            return False
    if tender.value_cents is not None:
        if criteria.min_value is not None and tender.value_cents < criteria.min_value * 100:
            return False
        if criteria.max_value is not None and tender.value_cents > criteria.max_value * 100:
            return False
    return True


@dataclass
class TenderIndex:
    """The window's tenders, indexed by word, CPV prefix, department and region."""

    tenders: list[TenderFacts]
    ids: list[int] = field(init=False)
    words: dict[str, int] = field(init=False, default_factory=dict)
    cpv: dict[str, int] = field(init=False, default_factory=dict)
    departments: dict[str, int] = field(init=False, default_factory=dict)
    regions: dict[str, int] = field(init=False, default_factory=dict)
    everything: int = field(init=False, default=0)
    _criteria: dict[Criteria, int] = field(init=False, default_factory=dict)
    _terms: dict[Term, int] = field(init=False, default_factory=dict)
    _values: dict[tuple[int | None, int | None], int] = field(init=False, default_factory=dict)
    _above: dict[int, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.tenders = sorted(self.tenders, key=lambda t: t.id)
        self.ids = [t.id for t in self.tenders]
        for position, tender in enumerate(self.tenders):
            bit = 1 << position
            for word in set(tender.text.split()):
                self.words[word] = self.words.get(word, 0) | bit
            for prefix in {code[:n] for code in tender.cpv_codes for n in range(2, len(code) + 1)}:
                self.cpv[prefix] = self.cpv.get(prefix, 0) | bit
            for code in tender.departments:
                self.departments[code] = self.departments.get(code, 0) | bit
            for code in tender.regions:
                self.regions[code] = self.regions.get(code, 0) | bit
        self.everything = (1 << len(self.tenders)) - 1

    def __len__(self) -> int:
        return len(self.tenders)

    def above(self, high_water: int | None) -> int:
        """The tenders with an id above a high-water mark (most searches share one: cached)."""
        if high_water is None:
            return self.everything
        cached = self._above.get(high_water)
        if cached is None:
            cached = self._above[high_water] = self.everything & ~(
                (1 << bisect.bisect_right(self.ids, high_water)) - 1
            )
        return cached

    def match(self, criteria: Criteria, high_water: int | None = None) -> list[int]:
        """Ids of the tenders above ``high_water`` that the criteria match, in id order."""
        return self.ids_of(self.matching(criteria, high_water))

    def matching(self, criteria: Criteria, high_water: int | None = None) -> int:
        """The tenders above ``high_water`` that the criteria match, as bits."""
        return self.above(high_water) & self.criteria_bits(criteria)

    def ids_of(self, bits: int, limit: int | None = None) -> list[int]:
        """Ids of the tenders of ``bits``, in id order, the first ``limit`` of them."""
        found: list[int] = []
        while bits and (limit is None or len(found) < limit):
            low = bits & -bits
            found.append(self.ids[low.bit_length() - 1])
            bits ^= low
        return found

    def criteria_bits(self, criteria: Criteria) -> int:
        cached = self._criteria.get(criteria)
        if cached is not None:
            return cached
        bits = self.everything
        query = criteria.query
        if not query.empty:
            if query.include:
                bits &= self._any(query.include)
            if query.exclude:
                bits &= ~self._any(query.exclude)
        if bits and criteria.cpv_prefixes:
            bits &= _union(self.cpv.get(p, 0) for p in criteria.cpv_prefixes)
        if bits and criteria.has_place:
            place = _union(self.departments.get(d, 0) for d in criteria.departments) | _union(
                self.regions.get(r, 0) for r in criteria.regions
            )
            if criteria.near is not None:
                place |= self._near(criteria.near, bits & ~place)
            bits &= place
        if bits and (criteria.min_value is not None or criteria.max_value is not None):
            bits &= self._value(criteria.min_value, criteria.max_value)
        self._criteria[criteria] = bits
        return bits

    def _any(self, terms: Sequence[Term]) -> int:
        return _union(self._term(t) for t in terms)

    def _term(self, term: Term) -> int:
        cached = self._terms.get(term)
        if cached is None:
            cached = self._terms[term] = _union(self._spelling(s) for s in term.spellings)
        return cached

    def _spelling(self, spelling: tuple[str, ...]) -> int:
        bits = self.everything
        for word in spelling:
            bits &= self.words.get(word, 0)
            if not bits:
                return 0
        if len(spelling) > 1:
            # Every word is there; keep the tenders where they follow each other.
            phrase = f" {' '.join(spelling)} "
            checked = 0
            candidates = bits
            while candidates:
                low = candidates & -candidates
                if phrase in self.tenders[low.bit_length() - 1].text:
                    checked |= low
                candidates ^= low
            bits = checked
        return bits

    def _value(self, minimum: int | None, maximum: int | None) -> int:
        key = (minimum, maximum)
        cached = self._values.get(key)
        if cached is not None:
            return cached
        bits = 0
        for position, tender in enumerate(self.tenders):
            value = tender.value_cents
            if value is None or (
                (minimum is None or value >= minimum * 100) and (maximum is None or value <= maximum * 100)
            ):
                bits |= 1 << position
        self._values[key] = bits
        return bits

    def _near(self, near: Near, candidates: int) -> int:
        bits = 0
        while candidates:
            low = candidates & -candidates
            tender = self.tenders[low.bit_length() - 1]
            if (
                tender.latitude is not None
                and tender.longitude is not None
                and distance_km(near.latitude, near.longitude, tender.latitude, tender.longitude)
                <= near.radius_km
            ):
                bits |= low
            candidates ^= low
        return bits


def _union(parts: Iterable[int]) -> int:
    bits = 0
    for part in parts:
        bits |= part
    return bits


@dataclass(frozen=True)
class SearchToMatch:
    """One search as a digest run matches it."""

    id: int
    recipient_id: int
    criteria: Criteria
    high_water: int | None


#: ``[search_id, [tender_id, ...], matched_count]``: one section of a digest.
Section = tuple[int, list[int], int]


def digest_sections(
    index: TenderIndex, searches: Sequence[SearchToMatch], *, window_floor: int | None = None
) -> list[Section]:
    """One recipient's digest: each search's new tenders, a tender shown once, under its first search.

    ``searches`` come in the recipient's order. A search that never announced anything starts at
    ``window_floor`` (the last tender before the window).
    """
    shown = 0
    sections: list[Section] = []
    for search in searches:
        high_water = search.high_water if search.high_water is not None else window_floor
        # Set operations on the bits: only the tenders listed become ids, whatever the count.
        fresh = index.matching(search.criteria, high_water) & ~shown
        if fresh:
            shown |= fresh
            sections.append((search.id, index.ids_of(fresh, MAX_TENDERS_PER_SECTION), fresh.bit_count()))
    return sections
