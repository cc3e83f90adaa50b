"""Article 5: an opposed person is recognised however a notice writes them, and only them.

Generated people (real French given names and surnames, compound, with particles and accents)
are written the ways real notices write contacts; an opposition recorded by name, typed the ways
the support desk may type it, must share a key with every one of those writings. A person whose
name words are all different must share none.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mailer.errors import InvalidInput
from mailer.suppression.contacts import contact_keys, name_key, name_keys
from mailer.suppression.names import canonical, notice_spellings, person_spellings

GIVEN_NAMES = [
    "Élisabeth", "Jean", "Marie", "Anne", "François", "Hélène", "Cédric", "Joëlle", "Éric", "Sarah",
    "Olivier", "Valérie", "Stéphane", "Cécile", "Lilya", "Marlène", "Florane", "Gilbert", "Agnès",
    "Noël", "Zoé", "Loïc", "Maëlle", "Thérèse", "Benoît", "Inès", "Yves", "Paul", "Claire", "Luc",
]  # fmt: skip
SURNAMES = [
    "Chich", "Bourgine", "Parent", "Étienne", "Sorin", "Houssay", "Dupré", "Santoni", "Rochefoucauld",
    "Meenen", "Lozano", "Palacios", "Gambert", "Jouan", "Knaff", "Piga", "Baudouy", "Olivero", "Depeige",
    "Binoux", "Rémy", "Pegeon", "Cisamolo", "Coloneaux", "Tardivel", "Hénaux", "Bernos", "Œillet",
    "Müller", "Lefèvre", "Garçon", "Nicot", "Evrard", "Gohin",
]  # fmt: skip
PARTICLES = ["", "", "", "de ", "de La ", "Le ", "Van ", "d'", "du "]
CIVILITIES = ["M.", "Mme", "Madame", "Monsieur", "MME", "Dr"]


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("Œ", "Oe"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@st.composite
def people(draw: st.DrawFn) -> dict[str, object]:
    """A person: one or two given names (maybe hyphenated), a surname (maybe compound, particles)."""
    firsts = draw(st.lists(st.sampled_from(GIVEN_NAMES), min_size=1, max_size=2, unique=True))
    hyphenated_given = len(firsts) == 2 and draw(st.booleans())
    surnames = draw(st.lists(st.sampled_from(SURNAMES), min_size=1, max_size=2, unique=True))
    particle = draw(st.sampled_from(PARTICLES))
    given = "-".join(firsts) if hyphenated_given else " ".join(firsts)
    core = draw(st.sampled_from(["-", " "])).join(surnames)
    return {
        "given": given,
        "firsts": firsts,
        "hyphenated": hyphenated_given,
        "particle": particle,
        "core": core,
    }


def surname(person: dict[str, object]) -> str:
    return f"{person['particle']}{person['core']}"


def notice_writings(person: dict[str, object]) -> list[tuple[str | None, str | None]]:
    """The ways real notices write a contact person: (contact name text, contact e-mail)."""
    given, last = str(person["given"]), surname(person)
    firsts = list(person["firsts"])  # type: ignore[call-overload]
    first_given = given.split()[0]
    initials = "-".join(f"{w[0]}." for w in first_given.split("-"))
    mail_first = strip_accents(first_given).lower()
    mail_last = strip_accents(str(person["core"])).lower()
    mail_particle = strip_accents(str(person["particle"])).lower().replace(" ", "").replace("'", "")
    initial = mail_first[0]
    domain = "@example.invalid"
    return [
        (f"{given} {last}", None),
        (f"{last.upper()} {given}", None),
        (f"{last} {given}", None),
        (f"Service de la commande publique — {given} {last}, responsable des marchés", None),
        (f"M. {given} {last}", None),
        (f"Mme {last}", None),
        (f"Direction des achats — Mme {last}, acheteuse", None),
        (f"Madame {last.upper()}", None),
        (f"Mme {initials} {last}", None),
        (f"{initials} {last}", None),
        (f"{last.upper()} {initials}", None),
        (f"{firsts[0]} {last}", None),
        (f"Renseignements : {given} {last} <{mail_first}.{mail_last.replace(' ', '')}{domain}>", None),
        (None, f"{mail_first}.{mail_last.replace(' ', '-')}{domain}"),
        (None, f"{mail_first}.{mail_particle}{mail_last.replace(' ', '')}{domain}"),
        (None, f"{initial}.{mail_last.replace(' ', '')}{domain}"),
        (None, f"{initial}{mail_particle}{mail_last.replace(' ', '').replace('-', '')}{domain}"),
        (None, f"{mail_first}-{mail_last.replace(' ', '-')}{domain}"),
        (None, f"{mail_first}_{mail_last.replace(' ', '_')}{domain}"),
        (None, f"{mail_last.replace(' ', '').replace('-', '')}.{mail_first}{domain}"),
        (None, f"{mail_last.replace(' ', '').replace('-', '')}{initial}{domain}"),
        (None, f"{mail_first}.{mail_last.replace(' ', '')}2{domain}"),
        ("Service des marchés", f"{mail_first}.{mail_last.replace(' ', '')}.cde6{domain}"),
    ]


def typed_oppositions(person: dict[str, object]) -> list[str]:
    """The ways the support desk may type the opposed person's name."""
    given, last = str(person["given"]), surname(person)
    return [
        f"{given} {last}",
        f"{last.upper()} {given}",
        f"{given} {last.upper()}",
        f"Madame {given} {last}",
        f"{given} {last}".lower(),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(person=people())
@example(person={"given": "Élisabeth", "firsts": ["Élisabeth"], "hyphenated": False, "particle": "", "core": "Chich-Bourgine"})  # fmt: skip
@example(person={"given": "Anne-Marie", "firsts": ["Anne", "Marie"], "hyphenated": True, "particle": "de La ", "core": "Rochefoucauld"})  # fmt: skip
def test_an_opposition_by_name_hides_every_writing_of_that_person(person):
    # Given a person opposed by name, typed in any of the ways the support desk may type it
    for typed in typed_oppositions(person):
        opposed = name_keys(typed)
        # When a notice writes them in any of the ways real notices do
        for name, email in notice_writings(person):
            # Then the contact shares a key with the opposition
            assert opposed & contact_keys(name, email), (typed, name, email)


@settings(max_examples=300, deadline=None)
@given(opposed=people(), other=people())
def test_an_opposition_by_name_leaves_other_people_shown(opposed, other):
    # Given two people whose names share no word
    def name_words(person):
        return {
            strip_accents(w).lower() for w in f"{person['given']} {person['core']}".replace("-", " ").split()
        }

    assume(not name_words(opposed) & name_words(other))
    assume(str(opposed["given"])[0] != str(other["given"])[0])
    # When one opposed, typed as the support desk types it
    keys = name_keys(f"{opposed['given']} {surname(opposed)}")
    # Then none of the other's writings is hidden
    for name, email in notice_writings(other):
        assert not keys & contact_keys(name, email), (name, email)


def test_a_given_name_that_is_also_a_surname_is_not_taken_for_one():
    # Given "Jean Martin" opposed (either word may be the surname: both readings are kept)
    keys = name_keys("Jean Martin")
    # Then a notice naming M. Jean Sorin, or Mme Martin's colleague Paul, is still shown
    assert not keys & contact_keys("M. Jean Sorin", "jean.sorin@example.invalid")
    assert not keys & contact_keys("Paul Durand, service Martin-Guérin", None)
    # ... while Mme Martin, and J. Martin, are hidden
    assert keys & contact_keys("Mme Martin", None)
    assert keys & contact_keys("Service achats — J. MARTIN", None)


def test_a_name_in_capitals_is_read_as_the_surname():
    # Given the surname written in capitals
    keys = name_keys("Élisabeth CHICH-BOURGINE")
    # Then "Mme Chich-Bourgine" is hidden, "Mme Élisabeth" (no such surname) is not
    assert keys & contact_keys("Mme Chich-Bourgine", None)
    assert not keys & contact_keys("Mme Élisabeth", None)


def test_the_canonical_key_ignores_case_accents_civilities_and_order():
    assert name_key("Marie Houssay") == name_key("houssay MARIE") == name_key("Madame Marie HOUSSAY")
    assert name_key("Marie Houssay") != name_key("Marie Dupont")
    assert canonical("Anne-Marie de La Rochefoucauld").value == "anne de la marie rochefoucauld"


def test_a_name_key_never_equals_an_address_key():
    from mailer.addresses import hash_of

    assert hash_of("marie@example.com") not in name_keys("marie example com")
    assert hash_of("marie@example.com") != name_key("marie example com")


@pytest.mark.parametrize(
    "typed, problem",
    [
        ("Mme", "holds no name"),
        ("M. J.", "holds no name"),
        ("  ", "holds no name"),
        ("marie@example.com", "e-mail address"),
        ("Marie\x00Houssay", "control characters"),
        ("Anne " * 60, "at most 200 characters"),
    ],
)
def test_a_name_that_names_no_one_is_refused_without_repeating_it(typed, problem):
    with pytest.raises(InvalidInput) as refused:
        name_keys(typed)
    assert problem in str(refused.value)
    assert "Marie" not in str(refused.value) and "marie" not in str(refused.value)


def test_long_names_with_particles_are_accepted():
    keys = name_keys("Anne-Marie Sophie de La Rochefoucauld-Doudeauville")
    assert keys & contact_keys("Mme de La Rochefoucauld-Doudeauville", None)
    assert keys & contact_keys("Anne-Marie DE LA ROCHEFOUCAULD-DOUDEAUVILLE", None)


def test_spellings_are_folded_letters_only():
    # Spellings carry folded letters: no case, accent, digit or punctuation reaches a key
    for spelling in person_spellings("Joëlle d'Œillet-Müller") | notice_spellings(
        "Mme J. D'ŒILLET-MÜLLER (service 3)", "joelle.doeillet-muller2@example.invalid"
    ):
        assert spelling.value == strip_accents(spelling.value).lower()
        assert all(ch.isalpha() or ch == " " for ch in spelling.value), spelling


def test_the_support_desk_records_a_name_once_with_every_spelling(db, capsys):
    import sqlalchemy as sa

    from mailer.cli import main
    from mailer.db import session_scope
    from mailer.models import Suppression
    from mailer.suppression.models import OpposedNameKey

    # When a name that names no one is given, one line says why and nothing is recorded
    assert main(["suppress", "add-name", "Mme"]) == 1
    assert main(["suppress", "add-name", "marie.houssay@example.com"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("mailer: error: ") for line in errors)
    assert "houssay" not in " ".join(errors).casefold()
    # When the same person is recorded twice, written two ways
    assert main(["suppress", "add-name", "Élisabeth CHICH-BOURGINE", "--note", "ticket 12"]) == 0
    assert main(["suppress", "add-name", "chich-bourgine élisabeth"]) == 0

    # Then there is one entry, carrying every spelling of both readings
    with session_scope(readonly=True) as session:
        (entry,) = session.scalars(sa.select(Suppression)).all()
        keys = set(session.scalars(sa.select(OpposedNameKey.key)))
    assert (entry.scope, entry.reason.value, entry.note) == ("all", "opposition", "ticket 12")
    assert entry.address_hash == name_key("Élisabeth Chich-Bourgine")
    assert keys == name_keys("Élisabeth CHICH-BOURGINE") | name_keys("chich-bourgine élisabeth")
    assert "already on the opposition list" in capsys.readouterr().out
