"""Tender contacts who opposed (policy article 5): the keys they are known by, and who is hidden.

Tenders name a buyer's contact person (name, e-mail, phone). A contact is hidden from every
digest when one of its keys is on the suppression list with reason ``opposition`` (any scope) or
with scope ``all``:

- its e-mail address, under the very key the suppression list already uses (SHA-256 of the
  normalised address), so ``mailer suppress add contact@example.com ...`` covers contacts too;
- its name, under a key of the same shape in the same column: SHA-256 of ``contact-name:`` and the
  folded name words (case, accents and civilities dropped, words sorted). The prefix keeps a name
  key from ever equalling an address key, and no name is stored in clear.

Contact fields are free text ("Service de la commande publique — Marie Houssay"), so a tender's
contact gets a key for every run of 1 to ``MAX_NAME_WORDS`` consecutive words: an opposition
recorded for "Marie Houssay" (or "HOUSSAY Marie") finds it inside the longer text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.addresses import address_hash, normalise_address
from mailer.alerts.models import TenderContactKey
from mailer.alerts.text import words
from mailer.db import id_in, in_chunks
from mailer.errors import InvalidAddress, InvalidInput
from mailer.models import Suppression, SuppressionReason
from mailer.purposes import ALL_PURPOSES
from mailer.suppression import entries

#: Hashing prefix of name keys: a name key never collides with an address key.
NAME_KEY_PREFIX = "contact-name:"
#: Longest run of words keyed in a contact's free text; person names are 1 to 4 words.
MAX_NAME_WORDS = 4
#: Words that say who someone is, not their name: left out of name keys on both sides.
CIVILITIES = frozenset(
    [
        "m",
        "mr",
        "mme",
        "mlle",
        "mm",
        "mmes",
        "monsieur",
        "madame",
        "mademoiselle",
        "messieurs",
        "dr",
        "docteur",
        "me",
        "maitre",
        "pr",
        "professeur",
    ]
)
#: Keys per query (bound-parameter limits).
KEY_CHUNK = 1000

_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\],;:]+@[^\s<>()\[\],;:]+\.[^\s<>()\[\],;:]+")


def _name_words(name: str) -> list[str]:
    return [w for w in words(name) if w not in CIVILITIES]


def _key(name_words: Iterable[str]) -> str:
    return hashlib.sha256((NAME_KEY_PREFIX + " ".join(sorted(name_words))).encode("utf-8")).hexdigest()


def name_key(name: str) -> str:
    """The key an opposed contact name is recorded under; InvalidInput when no name word remains."""
    name_words = _name_words(name)
    if not name_words:
        raise InvalidInput(f"{name!r}: no name in it")
    if len(name_words) > MAX_NAME_WORDS:
        raise InvalidInput(f"{name!r}: a contact name has at most {MAX_NAME_WORDS} words")
    return _key(name_words)


def contact_keys(name: str | None, email: str | None) -> set[str]:
    """Every key a tender's contact can be opposed under: its address, and its name's word runs."""
    keys: set[str] = set()
    for candidate in [email or "", *_ADDRESS_IN_TEXT.findall(name or "")]:
        try:
            keys.add(address_hash(normalise_address(candidate)))
        except InvalidAddress:
            continue
    name_words = _name_words(_ADDRESS_IN_TEXT.sub(" ", name or ""))
    for size in range(1, MAX_NAME_WORDS + 1):
        for start in range(0, len(name_words) - size + 1):
            keys.add(_key(name_words[start : start + size]))
    return keys


def add_name(
    session: Session, name: str, *, source: str, note: str | None = None, created_by: str | None = None
) -> tuple[Suppression, bool]:
    """Record that a tender contact, known by name, opposed being shown; returns (entry, is new)."""
    return entries.add_hash(
        session,
        name_key(name),
        scope=ALL_PURPOSES,
        reason=SuppressionReason.OPPOSITION,
        source=source,
        note=note,
        created_by=created_by,
    )


def hides() -> sa.ColumnElement[bool]:
    """The rule that makes a suppression entry hide a contact, as SQL."""
    return sa.or_(Suppression.scope == ALL_PURPOSES, Suppression.reason == SuppressionReason.OPPOSITION)


def opposed_keys(session: Session, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` on the opposition list for contacts."""
    found: set[str] = set()
    for chunk in in_chunks(sorted(keys), KEY_CHUNK):
        found.update(
            session.scalars(
                sa.select(Suppression.address_hash).where(
                    Suppression.address_hash.in_(chunk),
                    hides(),
                )
            )
        )
    return found


def hidden_tenders(session: Session, tender_ids: Collection[int]) -> set[int]:
    """Tenders whose contact must not be shown: one query per chunk of tenders, joined on keys."""
    hidden: set[int] = set()
    for chunk in in_chunks(sorted(tender_ids), KEY_CHUNK):
        hidden.update(
            session.scalars(
                sa.select(TenderContactKey.tender_id)
                .join(Suppression, Suppression.address_hash == TenderContactKey.key)
                .where(
                    id_in(session, TenderContactKey.tender_id, chunk),
                    hides(),
                )
                .distinct()
            )
        )
    return hidden
