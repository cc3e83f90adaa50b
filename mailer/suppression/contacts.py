"""Tender contacts who opposed (policy article 5): the keys they are known by, and who is hidden.

Tenders name a buyer's contact person (name, e-mail, phone). A contact is hidden from every
digest -- the whole contact: name, e-mail and phone; the buyer stays -- when one of its keys is on
the opposition list with reason ``opposition`` (any scope) or with scope ``all``:

- its e-mail address (and any address written in its name field), under the very key the
  suppression list already uses (SHA-256 of the normalised address), so ``mailer suppress add
  contact@example.com ...`` covers contacts too;
- a spelling of a person's name (``mailer/suppression/names.py``: full name in any order, surname
  after a civility or initials, initials and surname, an e-mail local part built from the name),
  hashed under a prefix no address hash can equal. An opposition by name is one suppression entry
  (keyed by its canonical spelling) and a key per spelling of that name in ``opposed_name_keys``.

Keys are computed when a tender is imported and when a name is opposed; the digests look them up
per batch, at send time, so an opposition recorded after planning still wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.addresses import address_hash, normalise_address
from mailer.db import id_in, in_chunks
from mailer.errors import InvalidAddress
from mailer.models import Suppression, SuppressionReason
from mailer.purposes import ALL_PURPOSES
from mailer.suppression import entries
from mailer.suppression.models import OpposedNameKey, TenderContactKey
from mailer.suppression.names import Spelling, addresses_in, canonical, notice_spellings, person_spellings

#: Hashing prefix of name keys: a name key never collides with an address key. A full spelling is
#: hashed as ``contact-name:<words>`` (the form name oppositions were first recorded under), the
#: others as ``contact-name:<kind>:<letters>``.
NAME_KEY_PREFIX = "contact-name:"
#: Keys per query (bound-parameter limits).
KEY_CHUNK = 1000


def spelling_key(spelling: Spelling) -> str:
    """The hash a spelling is stored and compared under."""
    body = spelling.value if spelling.kind == "full" else f"{spelling.kind}:{spelling.value}"
    return hashlib.sha256((NAME_KEY_PREFIX + body).encode("utf-8")).hexdigest()


def name_key(name: str) -> str:
    """The key an opposition by name is recorded under; InvalidInput when it names no one."""
    return spelling_key(canonical(name))


def name_keys(name: str) -> set[str]:
    """Every key an opposed person's name hides a contact under."""
    return {spelling_key(s) for s in person_spellings(name)}


def contact_keys(name: str | None, email: str | None) -> set[str]:
    """Every key a tender's contact can be opposed under: its addresses and its name's spellings."""
    keys = {spelling_key(s) for s in notice_spellings(name, email)}
    for candidate in [email or "", *addresses_in(name or "")]:
        try:
            keys.add(address_hash(normalise_address(candidate)))
        except InvalidAddress:
            continue
    return keys


def add_name(
    session: Session, name: str, *, source: str, note: str | None = None, created_by: str | None = None
) -> tuple[Suppression, bool]:
    """Record that a tender contact, known by name, opposed being shown; returns (entry, is new).

    Recording the same name again adds the spellings the entry may lack (an entry recorded before
    spellings existed gains them), and keeps the entry's first reason and date.
    """
    keys = name_keys(name)
    entry, created = entries.add_hash(
        session,
        name_key(name),
        scope=ALL_PURPOSES,
        reason=SuppressionReason.OPPOSITION,
        source=source,
        note=note,
        created_by=created_by,
    )
    known = set(
        session.scalars(sa.select(OpposedNameKey.key).where(OpposedNameKey.suppression_id == entry.id))
    )
    missing = sorted(keys - known)
    if missing:
        session.execute(
            sa.insert(OpposedNameKey), [{"suppression_id": entry.id, "key": key} for key in missing]
        )
    return entry, created


def hides() -> sa.ColumnElement[bool]:
    """The rule that makes a suppression entry hide a contact, as SQL."""
    return sa.or_(Suppression.scope == ALL_PURPOSES, Suppression.reason == SuppressionReason.OPPOSITION)


def hidden_tenders(session: Session, tender_ids: Collection[int]) -> set[int]:
    """Tenders whose contact must not be shown: per chunk of tenders, one query joined on keys."""
    hidden: set[int] = set()
    for chunk in in_chunks(sorted(tender_ids), KEY_CHUNK):
        by_address = (
            sa.select(TenderContactKey.tender_id)
            .join(Suppression, Suppression.address_hash == TenderContactKey.key)
            .where(id_in(session, TenderContactKey.tender_id, chunk), hides())
        )
        by_name = (
            sa.select(TenderContactKey.tender_id)
            .join(OpposedNameKey, OpposedNameKey.key == TenderContactKey.key)
            .join(Suppression, Suppression.id == OpposedNameKey.suppression_id)
            .where(id_in(session, TenderContactKey.tender_id, chunk), hides())
        )
        hidden.update(session.scalars(sa.union(by_address, by_name)))
    return hidden
