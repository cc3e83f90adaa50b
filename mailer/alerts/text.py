"""French-aware words: case and accents folded, whole words only; the keyword query language.

A query is a list of terms separated by spaces. A term is a word or a "phrase in quotes"; a
leading minus excludes it. A tender matches when it contains any of the positive terms (all of
them when there are none) and none of the excluded ones::

    voirie "travaux de voirie" enrobé -parking -"place de stationnement"

Words compare with case and accents folded (``Équipement`` = ``equipement``, ``œuvre`` =
``oeuvre``), whole words only (``voie`` does not match ``voirie``); apostrophes and hyphens
separate words, so ``l'entretien`` contains ``entretien`` and ``saint-étienne`` is the phrase
``saint etienne``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from mailer.errors import InvalidInput

#: Letters NFKD does not decompose but French writes in words people type without them.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss"})
_WORD = re.compile(r"[^\W_]+")
#: Longest query kept (characters): a saved search is a few words, not a document.
MAX_QUERY_LENGTH = 500


def fold(text: str) -> str:
    """Lower case, accents removed, ligatures spelt out."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LIGATURES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str | None) -> list[str]:
    """The folded words of a text, in order."""
    return _WORD.findall(fold(text or ""))


def joined(text: str | None) -> str:
    """The folded words joined by single spaces and padded, so `` a b `` finds a phrase."""
    return " " + " ".join(words(text)) + " "


@dataclass(frozen=True)
class Term:
    """One word (a one-word phrase) or a phrase of several, to find or to exclude."""

    words: tuple[str, ...]
    excluded: bool = False

    @property
    def is_phrase(self) -> bool:
        return len(self.words) > 1

    def found_in(self, padded: str) -> bool:
        """Whether the term occurs in a text made by ``joined``."""
        return f" {' '.join(self.words)} " in padded


@dataclass(frozen=True)
class Query:
    """A parsed keyword query."""

    include: tuple[Term, ...]
    exclude: tuple[Term, ...]

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude

    def matches(self, padded: str) -> bool:
        """The query on one text (made by ``joined``): the reference the index must agree with."""
        if self.include and not any(t.found_in(padded) for t in self.include):
            return False
        return not any(t.found_in(padded) for t in self.exclude)


@functools.lru_cache(maxsize=65_536)
def _words_of_token(token: str) -> tuple[str, ...]:
    """``words`` of one query token: people's searches reuse a few thousand words."""
    return tuple(words(token))


_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)([^\s"]+)')


def parse_query(text: str | None) -> Query:
    """Parse a keyword query; InvalidInput for an unbalanced quote or a query too long."""
    raw = (text or "").strip()
    if len(raw) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"keywords longer than {MAX_QUERY_LENGTH} characters")
    if raw.count('"') % 2:
        raise InvalidInput(f"keywords {raw!r}: a quote is not closed")
    include: list[Term] = []
    exclude: list[Term] = []
    for match in _TOKEN.finditer(raw):
        minus = match.group(1) or match.group(3)
        body = match.group(2) if match.group(2) is not None else match.group(4)
        folded = _words_of_token(body)
        if not folded:
            continue
        term = Term(folded, excluded=bool(minus))
        target = exclude if term.excluded else include
        if term not in target:
            target.append(term)
    return Query(tuple(include), tuple(exclude))
