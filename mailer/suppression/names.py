"""How a person is written in a tender notice, and the spellings an opposed person is known by.

Policy article 5: a tender contact who opposed is never shown, however the notice writes them.
Notices write people in many ways; the support desk records the name the person gives. Both sides
are turned into *spellings* -- short strings of folded letters, one per way of writing a name --
and the contact is hidden when one spelling is on both sides. Four kinds:

``full``
    the name's words in any order: "Chich-Bourgine Élisabeth", "Élisabeth CHICH-BOURGINE",
    "Florane Gambert-Jouan" (for "Florane Gambert"), a middle name left out.
``surname``
    the surname alone after a civility or initials: "Mme Chich-Bourgine", "M. Sorin".
``initial``
    initials and surname: "J. Parent-Étienne", "SORIN J.", "J.-F. Santoni".
``glued``
    an e-mail local part built from the name, separators and digits aside: first.last, f.last,
    flast, first-last, first_last, last.first, lastf, surname2 ("marlene.lozanopalacios").

Words are folded (case, accents, ligatures); civilities never count; particles ("de", "La",
"van", "d'") never count in full, surname and initial spellings, and count or not in glued ones.
When an opposed name does not say which part is the surname, every reading is kept (French notices
write "Sarah Piga" and "Piga Sarah" alike): an opposition hides too much rather than too little.
A part written in capitals ("Élisabeth CHICH-BOURGINE") is taken as the surname.

On the notice's side, a surname alone counts only where it stands alone: right after a civility
or initials, up to the first word in lower case ("Mme Baudouy, responsable"), or as the whole of a
segment. "M. Jean Sorin" is therefore never taken for someone whose surname is Jean.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mailer.errors import InvalidInput

#: Words that say who someone is, not their name (folded, without their dot).
# fmt: off
CIVILITIES = frozenset({
    "m", "mr", "mme", "mlle", "mm", "mmes", "monsieur", "madame", "mademoiselle", "messieurs", "mesdames",
    "dr", "docteur", "me", "maitre", "pr", "professeur",
})
# fmt: on
#: Name particles: part of a surname, never enough to identify anyone.
# fmt: off
PARTICLES = frozenset({
    "d", "de", "du", "des", "l", "la", "le", "les", "van", "von", "der", "den", "di", "da", "del",
    "della", "dos", "das", "do", "y", "ter", "ten", "zu", "vom",
})
# fmt: on
#: Longest run of words a notice's text is read in for full spellings; person names with particles
#: left out are at most five or six words ("Anne Marie Sophie de La Rochefoucauld").
MAX_RUN = 6
#: Longest name the support desk may record (parts separated by spaces).
MAX_NAME_PARTS = 12
#: Longest name, in characters.
MAX_NAME_LENGTH = 200
#: Where the name readings stop: a run of words after an anchor is cut here when the text gives no
#: case to tell a name from a function ("MME BAUDOUY RESPONSABLE").
MAX_CASELESS_SURNAME = 3

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'«»]+@[^\s<>()\[\],;:\"'«»]+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
#: What separates one mention from the next in free text: punctuation, spaced dashes, "et".
_SEGMENT_BREAK = re.compile(r"\s[-–—]+\s|[,;:/|()\[\]<>\"«»\n\r\t–—]|\s(?:et|and|ou)\s", re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_]+")
#: A part made of initials only: "J.", "J", "J.-F.", "JF." (never a lone lower-case letter).
_INITIALS = re.compile(r"^(?:[^\W\d_]\.?-?)+$")


def fold(text: str) -> str:
    """Lower case, accents removed, ligatures spelt out."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES).casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Spelling:
    """One way a name may be written: its kind and its folded letters."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def _full(words: Sequence[str]) -> Spelling | None:
    return Spelling("full", " ".join(sorted(words))) if len(words) >= 2 else None


@dataclass(frozen=True)
class _Token:
    """One space-separated part of a text: a civility, initials, or words (particles marked)."""

    kind: str  # "civility", "initials", "name"
    words: tuple[str, ...]
    particles: tuple[bool, ...]
    capital: bool
    upper: bool

    @property
    def name_words(self) -> tuple[str, ...]:
        return tuple(w for w, p in zip(self.words, self.particles, strict=True) if not p)


def _token(part: str) -> _Token | None:
    letters = _LETTERS.findall(part.translate(_LIGATURES))
    if not letters:
        return None
    folded = tuple(fold(w) for w in letters)
    capital = letters[0][0].isupper()
    upper = all(w.isupper() for w in letters) and sum(len(w) for w in letters) > 1
    if len(folded) == 1 and folded[0] in CIVILITIES and (capital or part.endswith(".")):
        return _Token("civility", folded, (False,), capital, upper)
    if all(len(w) == 1 for w in letters) and (letters[0].isupper() or "." in part) and _INITIALS.match(part):
        return _Token("initials", ("".join(folded),), (False,), True, True)
    particles = tuple(
        w in PARTICLES and (i < len(folded) - 1 or len(folded) == 1) for i, w in enumerate(folded)
    )
    # "d'Artagnan" is capitalised: what counts is the first word that is not a particle
    main = next((w for w, p in zip(letters, particles, strict=True) if not p), letters[0])
    return _Token("name", folded, particles, main[0].isupper(), upper)


def _tokens(segment: str) -> list[_Token]:
    tokens = [t for part in segment.split() if (t := _token(part)) is not None]
    for index, token in enumerate(tokens):
        # "SORIN M.": a one-letter civility after a name is an initial
        if (
            token.kind == "civility"
            and len(token.words[0]) == 1
            and index
            and tokens[index - 1].kind == "name"
        ):
            tokens[index] = _Token("initials", token.words, (False,), True, True)
    return tokens


def segments(text: str) -> list[str]:
    """The pieces of a free text that may each name someone (addresses and links taken out)."""
    text = _URL.sub("\n", _ADDRESS.sub("\n", text))
    return [s for s in _SEGMENT_BREAK.split(text) if s.strip()]


def addresses_in(text: str) -> list[str]:
    """The e-mail addresses written inside a free text."""
    return _ADDRESS.findall(text)


# -- the notice's side ---------------------------------------------------------------------------


def _runs(tokens: list[_Token]) -> Iterator[tuple[str, ...]]:
    """Every run of 2 to MAX_RUN consecutive name words (civilities, initials, particles skipped)."""
    words = [w for t in tokens if t.kind == "name" for w in t.name_words]
    for size in range(2, MAX_RUN + 1):
        for start in range(len(words) - size + 1):
            yield tuple(words[start : start + size])


def _name_run(tokens: list[_Token], caseless: bool) -> list[_Token]:
    """The name parts at the start of ``tokens``: capitalised (or particles), until anything else."""
    run: list[_Token] = []
    for token in tokens:
        if token.kind == "civility":
            break
        if token.kind == "initials" or caseless or token.capital or all(token.particles):
            run.append(token)
            continue
        break
    while run and run[-1].kind == "name" and all(run[-1].particles):
        run.pop()
    return run


def _surname_spellings(run: list[_Token], caseless: bool, initials: Sequence[str]) -> Iterator[Spelling]:
    words = tuple(w for t in run if t.kind == "name" for w in t.name_words)
    if not words:
        return
    lengths = range(1, min(len(words), MAX_CASELESS_SURNAME) + 1) if caseless else [len(words)]
    for size in lengths:
        surname = " ".join(words[:size])
        yield Spelling("surname", surname)
        for initial in initials:
            yield Spelling("initial", f"{initial} {surname}")


def _segment_spellings(segment: str) -> Iterator[Spelling]:
    tokens = _tokens(segment)
    if not tokens:
        return
    for run in _runs(tokens):
        if spelling := _full(run):
            yield spelling
    yield from _pair_spellings(tokens)
    letters = [c for c in segment if c.isalpha()]
    caseless = all(c.isupper() for c in letters) or all(c.islower() for c in letters)
    if len(tokens) == 1 and tokens[0].kind == "name" and tokens[0].name_words:
        yield Spelling("surname", " ".join(tokens[0].name_words))
    for index, token in enumerate(tokens):
        if token.kind == "civility":
            yield from _surname_spellings(_name_run(tokens[index + 1 :], caseless), caseless, ())
        elif token.kind == "initials":
            initials = _with_first_letters(token.words[0])
            after = _name_run(tokens[index + 1 :], caseless)
            before = list(reversed(_name_run(list(reversed(tokens[:index])), caseless)))
            yield from _surname_spellings(after, caseless, initials)
            yield from _surname_spellings(before, caseless, initials)


def _pair_spellings(tokens: list[_Token]) -> Iterator[Spelling]:
    """Two name parts side by side, read as given name then surname, by the given name's initials:
    "Laetita Giguerre" (a misspelt given name) is known as "L. Giguerre"."""
    names = [t for t in tokens if t.kind == "name" and t.name_words]
    for given, last in itertools.pairwise(names):
        for initials in _with_first_letters("".join(w[0] for w in given.name_words)):
            yield Spelling("initial", f"{initials} {' '.join(last.name_words)}")


def _with_first_letters(initials: str) -> tuple[str, ...]:
    """Initials as written, and the first one alone ("jf", "j")."""
    return (initials, initials[:1]) if len(initials) > 1 else (initials,)


def _local_part_spellings(address: str) -> Iterator[Spelling]:
    local = fold(address.rsplit("@", 1)[0].split("+", 1)[0])
    pieces = _LETTERS.findall(local)
    if not pieces:
        return
    yield Spelling("glued", "".join(pieces))
    for size in range(2, len(pieces) + 1):
        for start in range(len(pieces) - size + 1):
            run = pieces[start : start + size]
            # Part of a longer local part ("catherine-gohin.cde6"): a name, never a surname alone
            yield Spelling("glued" if size == len(pieces) else "glued-part", "".join(run))
            if spelling := _full(run):
                yield spelling


def notice_spellings(name: str | None, email: str | None) -> set[Spelling]:
    """Every spelling a notice's contact (free-text name, e-mail) may be an opposed person's."""
    found: set[Spelling] = set()
    text = name or ""
    for address in [*([email] if email else []), *addresses_in(text)]:
        found.update(_local_part_spellings(address))
    for segment in segments(text):
        found.update(_segment_spellings(segment))
    return found


# -- the opposed person's side -------------------------------------------------------------------


@dataclass(frozen=True)
class _Reading:
    """One reading of an opposed name: which parts are given names, which the surname."""

    given: tuple[_Token, ...]
    surname: tuple[_Token, ...]


def parse_name(name: str) -> list[_Token]:
    """The parts of a name the support desk typed; InvalidInput (naming no one) when unusable."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a contact name has at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise InvalidInput("a contact name cannot hold control characters")
    if "@" in name:
        raise InvalidInput("that is an e-mail address: record it with `mailer suppress add ADDRESS`")
    tokens = [t for t in _tokens(name) if t.kind != "civility"]
    if not any(t.kind == "name" and t.name_words for t in tokens):
        raise InvalidInput("the contact name holds no name (only civilities, initials or particles)")
    if len(tokens) > MAX_NAME_PARTS:
        raise InvalidInput(f"a contact name has at most {MAX_NAME_PARTS} parts")
    return tokens


def _readings(tokens: list[_Token]) -> list[_Reading]:
    upper = [t.kind == "name" and t.upper for t in tokens]
    if any(upper) and not all(upper):
        # "Élisabeth CHICH-BOURGINE", "DE LA ROCHEFOUCAULD Anne-Marie": the capitals are the surname
        first, last = upper.index(True), len(upper) - 1 - upper[::-1].index(True)
        while first > 0 and tokens[first - 1].kind == "name" and all(tokens[first - 1].particles):
            first -= 1
        if first == 0 or last == len(tokens) - 1:
            given = tokens[last + 1 :] if first == 0 else tokens[:first]
            return [_Reading(tuple(given), tuple(tokens[first : last + 1]))]
    if len(tokens) == 1:
        return [_Reading((), tuple(tokens))]
    readings = []
    for cut in range(1, len(tokens)):
        # Given names first: the surname keeps the particles that open it
        given, surname = tokens[:cut], tokens[cut:]
        if _is_name(given) and _is_name(surname) and not all(given[-1].particles):
            readings.append(_Reading(tuple(given), tuple(surname)))
        # Surname first ("Piga Sarah")
        surname, given = tokens[:cut], tokens[cut:]
        if _is_name(surname) and (_is_name(given) or _initials(given)) and not all(surname[-1].particles):
            readings.append(_Reading(tuple(given), tuple(surname)))
    return readings


def _is_name(tokens: Sequence[_Token]) -> bool:
    return any(t.kind == "name" and t.name_words for t in tokens)


def _initials(tokens: Sequence[_Token]) -> bool:
    return bool(tokens) and all(t.kind == "initials" for t in tokens)


def _glued_surnames(surname: Sequence[_Token]) -> set[str]:
    """The surname glued, with each tail of its opening particles ("delaroche", "laroche", "roche")."""
    words = [(w, p) for t in surname if t.kind == "name" for w, p in zip(t.words, t.particles, strict=True)]
    core = "".join(w for w, p in words if not p)
    opening = []
    for word, particle in words:
        if not particle:
            break
        opening.append(word)
    found = {core, "".join(w for w, _ in words)}
    for start in range(len(opening)):
        found.add("".join(opening[start:]) + core)
    return {g for g in found if g}


def _reading_spellings(reading: _Reading) -> Iterator[Spelling]:
    surname_words = [w for t in reading.surname if t.kind == "name" for w in t.name_words]
    given_words = [w for t in reading.given if t.kind == "name" for w in t.name_words]
    initials_all = "".join(
        t.words[0] if t.kind == "initials" else "".join(w[0] for w in t.name_words) for t in reading.given
    )
    first_initial = initials_all[:1]
    surnames = [surname_words] + ([[w] for w in surname_words] if len(surname_words) > 1 else [])
    for surname in surnames:
        joined = " ".join(surname)
        yield Spelling("surname", joined)
        for initial in {initials_all, first_initial} - {""}:
            yield Spelling("initial", f"{initial} {joined}")
        for word in given_words:
            if spelling := _full([word, *surname]):
                yield spelling
        if spelling := _full([*given_words, *surname]):
            yield spelling
    glued_given = {"".join(given_words), initials_all, first_initial, *given_words} - {""}
    glued_surnames = _glued_surnames(reading.surname)
    if len(surname_words) > 1:
        glued_surnames |= set(surname_words)
    for glued in glued_surnames:
        yield Spelling("glued", glued)
        for given in glued_given:
            for kind in ("glued", "glued-part"):
                yield Spelling(kind, given + glued)
                yield Spelling(kind, glued + given)


def person_spellings(name: str) -> set[Spelling]:
    """Every spelling of an opposed person's name, under each reading of which part is the surname."""
    tokens = parse_name(name)
    found: set[Spelling] = set()
    for reading in _readings(tokens):
        found.update(_reading_spellings(reading))
    words = [w for t in tokens if t.kind == "name" for w in t.name_words]
    if spelling := _full(words):
        found.add(spelling)
    return found


def canonical(name: str) -> Spelling:
    """The one spelling an opposition by name is recorded under: its words, sorted."""
    words = [w for t in parse_name(name) for w in t.words]
    return Spelling("full", " ".join(sorted(words)))
