"""French words and their forms; the keyword query language.

A query is a list of terms separated by spaces. A term is a word or a "phrase in quotes"; a
leading minus excludes it. A tender matches when it contains any of the positive terms (all of
them when there are none) and none of the excluded ones::

    voirie "travaux de voirie" enrobé -parking -"place de stationnement"

A word finds its forms, whole words only:

- singular and plural, masculine and feminine: ``logiciel`` finds « logiciels », ``serveurs``
  finds « serveur », ``routier`` finds « routière », ``médical`` finds « médicaux », ``feu``
  finds « feux », ``vitres`` finds « vitre »; ``voie`` does not find « voirie »;
- case, accents and ligatures do not count: ``electricite`` finds « Électricité », ``oeuvre``
  finds « œuvre »; soft hyphens and non-breaking spaces inside a notice's words are ignored;
- elisions: ``l'éclairage`` finds « éclairage public », ``éclairage`` finds « d'éclairage »;
- compounds written with a hyphen, a space or glued: ``pare-feu`` finds « pare-feux »,
  « pare feu » and « parefeu »; ``wifi`` finds « Wi-Fi » and « WiFi »;
- a phrase finds its words in order, each in any of its forms: ``"espace vert"`` finds
  « espaces verts ». Exclusions work the same way: ``nettoyage -vitres`` leaves out « vitre ».

How: every word, of a notice once when it is indexed and of a query once per word, becomes its
form: simplemma's lemma (``feux`` -> ``feu``, ``vitres`` -> ``vitrer``), stemmed by Snowball's
French stemmer (``logiciels``, ``logiciel`` -> ``logiciel``; ``routière``, ``routier`` -> ``routi``;
``vitrer``, ``vitre`` -> ``vitr``), then folded. The few words the stemmer merges with a word of
another meaning keep their lemma (``KEPT_WHOLE``: ``voirie`` is not ``voir``, ``assurance`` is
not ``assurer``, ``travaux`` is not ``travail``).
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import unicodedata
from dataclasses import dataclass

import Stemmer

from mailer.errors import InvalidInput

#: Letters NFKD does not decompose but French writes in words people type without them.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss"})
#: Invisible characters that may sit inside a word: soft hyphen, zero-width spaces and joiners.
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_WORD = re.compile(r"[^\W_]+")
#: A word, then an apostrophe (it is elided: « l'», « d'») or a hyphen (a compound goes on).
_TOKEN = re.compile(r"([^\W_]+)(?:(['’ʼ‘`´])|([-‐‑]))?")
#: Longest query kept (characters): a saved search is a few words, not a document.
MAX_QUERY_LENGTH = 500

#: Words written elided before an apostrophe (« l'entretien », « qu'il »): left out of forms.
ELIDED = frozenset(["c", "d", "j", "l", "m", "n", "s", "t", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu"])
#: Small words a glued query word is never split into (« depose » is not « de pose »).
FUNCTION_WORDS = frozenset(
    [
        "a",
        "au",
        "aux",
        "c",
        "ce",
        "ces",
        "d",
        "de",
        "des",
        "du",
        "en",
        "et",
        "j",
        "l",
        "la",
        "le",
        "les",
        "m",
        "n",
        "ou",
        "par",
        "pour",
        "qu",
        "s",
        "sa",
        "se",
        "ses",
        "son",
        "sur",
        "t",
        "un",
        "une",
        "y",
    ]
)
#: Lemmas the stemmer would merge with a word of another meaning, measured on the evaluation set
#: of tests/data/matching_judgements.csv and the notices' vocabulary: they match their own forms
#: only (« voirie » is not « voir », « communication » is not « commune »).
KEPT_WHOLE = frozenset(
    [
        "agence",  # agencement
        "assurance",  # assurer
        "buse",  # bus
        "collecte",  # collectif, collectivité
        "communication",  # commune, communiquer
        "entree",  # entre
        "environnement",  # environ
        "equipe",  # équipement
        "formation",  # format
        "mairie",  # maire
        "medicalement",  # médical
        "mobilite",  # mobile
        "port",  # porte, porter
        "stationnement",  # station
        "travaux",  # travail (« code du travail »)
        "voirie",  # voir, voire
    ]
)
#: Alternatives tried for a term (products of spellings): a bound on odd queries.
MAX_SPELLINGS = 16

_local = threading.local()


def fold(text: str) -> str:
    """Lower case, accents removed, ligatures spelt out."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LIGATURES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str | None) -> list[str]:
    """The folded words of a text, in order (contact names are compared on these)."""
    return _WORD.findall(fold(text or ""))


def _stemmer() -> Stemmer.Stemmer:
    # A PyStemmer object is not safe to share between threads.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("french")
    return stemmer


def _lemma(word: str) -> str:
    # Imported here: processes that only send digests never load it (4 MB). The memory-frugal
    # dictionary: a few MB instead of about 30 where digests are planned, 20 µs a new word.
    import simplemma

    return simplemma.lemmatize(word, lang="fr", low_memory=True).casefold()


@functools.lru_cache(maxsize=131_072)
def form(word: str) -> str:
    """The form of one lower-case word: what its singular, plural, feminine... have in common."""
    lemma = _lemma(word)
    if not _WORD.fullmatch(lemma):
        lemma = word  # a lemma written in two words (« aujourd'hui »): the word stands for itself
    # The word itself counts too: « travaux » is kept apart from its lemma « travail ».
    for kept in (fold(lemma), word):
        if kept in KEPT_WHOLE:
            return kept + "_"  # never equal to a stem (stems have no underscore)
    return fold(_stemmer().stemWord(lemma))


@dataclass(frozen=True)
class _Token:
    word: str
    #: Written with a hyphen to the next word (« pare-feu », « Wi-Fi »).
    hyphen_after: bool


def _cleaned(text: str) -> str:
    """Lower case with accents kept (the lemmatiser needs them), ligatures spelt out."""
    composed = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))
    return composed.casefold().replace("œ", "oe").replace("æ", "ae")


def _tokens(text: str) -> list[_Token]:
    """Lower-case words, elided words left out."""
    return [
        _Token(m.group(1), bool(m.group(3)))
        for m in _TOKEN.finditer(_cleaned(text))
        if not (m.group(2) and m.group(1) in ELIDED)
    ]


def forms(text: str | None) -> list[str]:
    """The forms of a text's words, in order."""
    return [
        form(m.group(1))
        for m in _TOKEN.finditer(_cleaned(text or ""))
        if not (m.group(2) and m.group(1) in ELIDED)
    ]


def joined(text: str | None) -> str:
    """The forms joined by single spaces and padded, so `` a b `` finds a phrase."""
    return " " + " ".join(forms(text)) + " "


@dataclass(frozen=True)
class Term:
    """One word (a one-word phrase) or a phrase of several, to find or to exclude.

    ``words`` are as typed (folded); ``spellings`` are what is looked for, each a sequence of
    forms: the words themselves, a hyphenated pair glued, a glued word split in two.
    """

    words: tuple[str, ...]
    spellings: tuple[tuple[str, ...], ...]
    excluded: bool = False

    def found_in(self, padded: str) -> bool:
        """Whether the term occurs in a text made by ``joined``."""
        return any(f" {' '.join(spelling)} " in padded for spelling in self.spellings)


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


#: Forms of the auxiliaries: a glued word never splits into « vitr » + « es » (être).
_AUXILIARIES = frozenset(["etre", "avoir"])
#: Letters at the end of a word where an accent changes the stem (« -ité », « -ière », « -ée »).
_ACCENTED_ENDING = 4


@functools.lru_cache(maxsize=65_536)
def _alternatives(word: str) -> tuple[str, ...]:
    """The forms one query word may stand for, whether or not its accents were typed.

    Accents inside a word never change its form, those of its ending may: « electricite » is
    looked for as « électricité » too, « Électricité » as « electricite » (a notice in capitals
    without accents).
    """
    folded = fold(word)
    found = [form(word), form(folded)]
    if folded.isascii() and not found[0].endswith("_"):
        ending = folded[-_ACCENTED_ENDING:]
        where = [i for i, ch in enumerate(ending) if ch == "e"]
        for accents in itertools.product("eéè", repeat=len(where)):
            letters = list(ending)
            for i, accent in zip(where, accents, strict=True):
                letters[i] = accent
            found.append(form(folded[: -len(ending)] + "".join(letters)))
    return tuple(dict.fromkeys(found))


def _splits(word: str) -> list[tuple[str, ...]]:
    """A glued word as two words (« parefeu » -> « pare feu », « wifi » -> « wi fi »)."""
    found: list[tuple[str, ...]] = []
    for cut in range(2, len(word) - 1):
        left, right = word[:cut], word[cut:]
        if left in FUNCTION_WORDS or right in FUNCTION_WORDS:
            continue
        pair = (form(left), form(right))
        if not _AUXILIARIES.intersection(pair):
            found.append(pair)
    return found


@functools.lru_cache(maxsize=65_536)
def _spellings_of(body: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The folded words of one query token and the spellings it is looked for under."""
    tokens = _tokens(body)
    typed = tuple(fold(t.word) for t in tokens)
    if not tokens:
        return typed, ()
    spellings = list(
        itertools.islice(itertools.product(*(_alternatives(t.word) for t in tokens)), MAX_SPELLINGS)
    )
    as_typed = spellings[0]
    for i, (left, right) in enumerate(itertools.pairwise(tokens)):
        if left.hyphen_after or len(tokens) == 2:
            glued = form(left.word + right.word)
            spellings.append((*as_typed[:i], glued, *as_typed[i + 2 :]))
    if len(tokens) == 1:
        spellings.extend(_splits(fold(tokens[0].word)))
    return typed, tuple(dict.fromkeys(spellings))[:MAX_SPELLINGS]


_QUERY_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)([^\s"]+)')


def parse_query(text: str | None) -> Query:
    """Parse a keyword query; InvalidInput for an unbalanced quote or a query too long."""
    raw = (text or "").strip()
    if len(raw) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"keywords longer than {MAX_QUERY_LENGTH} characters")
    if raw.count('"') % 2:
        raise InvalidInput(f"keywords {raw!r}: a quote is not closed")
    include: list[Term] = []
    exclude: list[Term] = []
    for match in _QUERY_TOKEN.finditer(raw):
        minus = match.group(1) or match.group(3)
        body = match.group(2) if match.group(2) is not None else match.group(4)
        typed, spellings = _spellings_of(body)
        if not spellings:
            continue
        term = Term(typed, spellings, excluded=bool(minus))
        target = exclude if term.excluded else include
        if term not in target:
            target.append(term)
    return Query(tuple(include), tuple(exclude))
