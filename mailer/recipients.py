"""Recipients: find, import in bulk with their consents, rectify an address, erase on request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import consent
from mailer.addresses import address_hash, normalise_address
from mailer.config import get_settings
from mailer.db import in_chunks, utcnow
from mailer.errors import InvalidInput, NotFound
from mailer.models import AccountState, Consent, ConsentAction, ConsentEvent, Recipient
from mailer.recipient_file import NumberedRecord
from mailer.suppression import entries

#: Records written per statement during an import.
IMPORT_CHUNK = 500


def find(session: Session, address: str) -> Recipient | None:
    """The recipient with this address (any spelling of it), or None."""
    return session.scalars(
        sa.select(Recipient).where(Recipient.address == normalise_address(address))
    ).one_or_none()


def get(session: Session, address: str) -> Recipient:
    """The recipient with this address; NotFound otherwise."""
    recipient = find(session, address)
    if recipient is None:
        raise NotFound("no recipient with that address")
    return recipient


def create(
    session: Session, address: str, *, name: str | None = None, locale: str | None = None
) -> Recipient:
    """Add one recipient (no consent yet)."""
    normal = normalise_address(address)
    recipient = Recipient(
        address=normal,
        address_hash=address_hash(normal),
        name=name,
        locale=locale or get_settings().default_locale,
    )
    session.add(recipient)
    session.flush()
    return recipient


@dataclass
class ImportResult:
    """What an import wrote."""

    created: int = 0
    updated: int = 0
    consent_events: int = 0
    unchanged_consents: int = 0


def import_records(
    session: Session,
    records: Sequence[NumberedRecord],
    *,
    recorded_by: str,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Upsert recipients by address and append their consent events, in the caller's transaction.

    A consent that would change nothing (same state, same or no time) is not appended again, so
    importing the same file twice writes nothing the second time.
    """
    result = ImportResult()
    default_locale = get_settings().default_locale
    _check_external_refs(session, records)
    for chunk in in_chunks(list(records), IMPORT_CHUNK):
        existing = {
            str(r.address): r
            for r in session.scalars(
                sa.select(Recipient).where(Recipient.address.in_([n.record.address for n in chunk]))
            )
        }
        new_rows = [
            {
                "address": n.record.address,
                "address_hash": address_hash(n.record.address),
                "name": n.record.name,
                "locale": n.record.locale or default_locale,
                "time_zone": n.record.time_zone or "Europe/Paris",
                "external_ref": n.record.external_ref,
                "state": AccountState.ACTIVE,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
            for n in chunk
            if n.record.address not in existing
        ]
        ids = {address: r.id for address, r in existing.items()}
        if new_rows:
            inserted = session.execute(
                sa.insert(Recipient).returning(Recipient.id, Recipient.address), new_rows
            )
            ids.update({str(address): rid for rid, address in inserted})
            result.created += len(new_rows)
        for n in chunk:
            current = existing.get(n.record.address)
            if current is None:
                continue
            changed = False
            for field in ("name", "locale", "time_zone", "external_ref"):
                value = getattr(n.record, field)
                if value is not None and getattr(current, field) != value:
                    setattr(current, field, value)
                    changed = True
            result.updated += changed
        session.flush()
        _append_consents(session, chunk, ids, recorded_by, result)
        if progress is not None:
            progress(len(chunk))
    return result


def _check_external_refs(session: Session, records: Sequence[NumberedRecord]) -> None:
    refs = {ref: n for n in records if (ref := n.record.external_ref)}
    for chunk in in_chunks(list(refs), IMPORT_CHUNK):
        for ref, address in session.execute(
            sa.select(Recipient.external_ref, Recipient.address).where(Recipient.external_ref.in_(chunk))
        ):
            if ref is not None and address != refs[ref].record.address:
                raise InvalidInput(
                    f"line {refs[ref].line}: external_ref {ref!r} belongs to another recipient"
                )


def _append_consents(
    session: Session,
    chunk: Sequence[NumberedRecord],
    ids: dict[str, int],
    recorded_by: str,
    result: ImportResult,
) -> None:
    rids = list(ids.values())
    state = {
        (c.recipient_id, c.purpose): c
        for c in session.scalars(sa.select(Consent).where(Consent.recipient_id.in_(rids)))
    }
    dated = {n.record.address for n in chunk if any(g.at for g in n.record.consents.values())}
    recorded = (
        {
            (e.recipient_id, e.purpose, e.action, e.at)
            for e in session.execute(
                sa.select(
                    ConsentEvent.recipient_id, ConsentEvent.purpose, ConsentEvent.action, ConsentEvent.at
                ).where(ConsentEvent.recipient_id.in_([ids[a] for a in dated]))
            )
        }
        if dated
        else set()
    )
    changes = []
    for n in chunk:
        rid = ids[n.record.address]
        for purpose, given in n.record.consents.items():
            action = ConsentAction.GRANTED if given.granted else ConsentAction.WITHDRAWN
            # A line without a time cannot say whether it is newer than what the ledger holds: it
            # only sets a purpose the recipient has no record of. A dated line is appended once;
            # the ledger's order by time then decides (an old grant never undoes a newer withdrawal).
            if given.at is None and (rid, purpose) in state:
                result.unchanged_consents += 1
                continue
            if given.at is not None and (rid, purpose, action, given.at) in recorded:
                result.unchanged_consents += 1
                continue
            proof = consent.Proof(
                source=given.source,
                at=given.at,
                ip=given.ip,
                user_agent=given.user_agent,
                wording_version=given.wording_version,
                partner_list_version=given.partner_list_version,
                recorded_by=recorded_by,
            )
            changes.append(consent.ConsentChange(rid, purpose, action, proof))
    result.consent_events += consent.record_many(session, changes)


def rectify(session: Session, old_address: str, new_address: str, *, recorded_by: str) -> Recipient:
    """Change a recipient's address; the person's oppositions follow to the new address."""
    recipient = get(session, old_address)
    new = normalise_address(new_address)
    if new == recipient.address:
        raise InvalidInput("the new address is the current one")
    if find(session, new) is not None:
        raise InvalidInput("another recipient already has the new address")
    old_hash = recipient.address_hash
    recipient.address = new
    recipient.address_hash = address_hash(new)
    session.flush()
    if old_hash:
        entries.carry_over(session, old_hash, recipient.address_hash, source=f"rectification:{recorded_by}")
    return recipient


def erase(session: Session, address: str) -> Recipient:
    """Remove a recipient's personal data; the delivery and consent records keep their shape.

    Suppression entries stay: they are keyed by the address hash and must outlive the account.
    Saved searches and the stored location go (a digest already planned holds tender ids only,
    and the gate skips it as ``erased``).
    """
    from mailer.alerts.models import Geolocation, SavedSearch

    recipient = get(session, address)
    session.execute(sa.delete(Geolocation).where(Geolocation.recipient_id == recipient.id))
    session.execute(sa.delete(SavedSearch).where(SavedSearch.recipient_id == recipient.id))
    recipient.address = None
    recipient.address_hash = None
    recipient.name = None
    recipient.external_ref = None
    recipient.state = AccountState.ERASED
    recipient.erased_at = utcnow()
    session.flush()
    return recipient
