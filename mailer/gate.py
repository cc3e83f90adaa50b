"""The one gate every send passes at send time: consent granted now, and no suppression entry.

``check`` answers a whole batch with one query: a skip reason for each refused recipient, and the
rows of the allowed ones (what rendering needs of them). ``allowed_now`` is the same rule as a SQL
predicate, so the statement that takes a delivery into flight re-checks it atomically (a
withdrawal committed a millisecond earlier wins).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailer.addresses import address_hash, normalise_address
from mailer.db import id_in, in_chunks
from mailer.errors import InvalidAddress
from mailer.models import AccountState, Consent, Recipient, Suppression
from mailer.purposes import ALL_PURPOSES, TRACKING, get_purpose

#: Recipients per query; a batch is at most this many, so a batch costs one query.
GATE_CHUNK = 1000

# Named skip reasons, in the order they win when several apply.
ERASED = "erased"
UNKNOWN_RECIPIENT = "unknown_recipient"
INVALID_ADDRESS = "invalid_address"
SUPPRESSED = "suppressed"  # recorded as "suppressed:<reason>"
NO_CONSENT = "no_consent"
#: Consent to partner offers given for a partner list that does not name the campaign's partner.
PARTNER_NOT_COVERED = "partner_not_covered"


def suppressed(reason: str) -> str:
    """The skip reason recorded for a suppression entry's reason."""
    return f"{SUPPRESSED}:{reason}"


@dataclass(frozen=True)
class Verdicts:
    """The gate's answer for a batch of recipients."""

    #: Each recipient asked about: None when the purpose may be sent to it now, else the skip reason.
    reasons: dict[int, str | None]
    #: The row of each allowed recipient (id, address, name, locale, time_zone, tracked): the
    #: batch that renders for them reads the recipients once.
    allowed: dict[int, Any] = field(default_factory=dict)


def check(
    session: Session,
    purpose: str,
    recipient_ids: Sequence[int],
    *,
    partner_list_versions: Collection[str] | None = None,
) -> Verdicts:
    """Whether the purpose may be sent to each recipient now, with the allowed recipients' rows.

    ``partner_list_versions``: when given, the consent must have been given for one of these
    partner list versions (those that name the partner a mail is about).
    """
    get_purpose(purpose)
    tracking = sa.orm.aliased(Consent)
    versions = None if partner_list_versions is None else frozenset(partner_list_versions)
    verdicts: dict[int, str | None] = {rid: UNKNOWN_RECIPIENT for rid in recipient_ids}
    allowed: dict[int, Any] = {}
    for chunk in in_chunks(list(dict.fromkeys(recipient_ids)), GATE_CHUNK):
        rows = session.execute(
            sa.select(
                Recipient.id,
                # Read as text: no enum conversion for a thousand rows (StrEnum members compare equal).
                sa.type_coerce(Recipient.state, sa.String()).label("state"),
                Recipient.address,
                Recipient.name,
                Recipient.locale,
                Recipient.time_zone,
                Consent.granted,
                Consent.partner_list_version,
                sa.type_coerce(Suppression.reason, sa.String()).label("reason"),
                # Whether the mail may measure opens and clicks: read with the rest, used only to
                # set the request's tracking (never a reason to send or not)
                sa.func.coalesce(tracking.granted, False).label("tracked"),
            )
            .select_from(Recipient)
            .outerjoin(Consent, (Consent.recipient_id == Recipient.id) & (Consent.purpose == purpose))
            .outerjoin(tracking, (tracking.recipient_id == Recipient.id) & (tracking.purpose == TRACKING.key))
            .outerjoin(
                Suppression,
                (Suppression.address_hash == Recipient.address_hash)
                & Suppression.scope.in_((purpose, ALL_PURPOSES)),
            )
            .where(id_in(session, Recipient.id, chunk))
            .order_by(Recipient.id, Suppression.created_at, Suppression.id)
        )
        seen: set[int] = set()
        for row in rows:
            if row.id in seen:  # a second suppression entry for the same recipient
                continue
            seen.add(row.id)
            verdicts[row.id] = _verdict(row.state, row.address, row.granted, row.reason)
            if verdicts[row.id] is None and versions is not None and row.partner_list_version not in versions:
                verdicts[row.id] = PARTNER_NOT_COVERED
            if verdicts[row.id] is None:
                allowed[row.id] = row
    return Verdicts(verdicts, allowed)


def _verdict(
    state: AccountState | str, address: str | None, granted: bool | None, reason: str | None
) -> str | None:
    if state == AccountState.ERASED:
        return ERASED
    if not address:
        return INVALID_ADDRESS
    if reason is not None:
        return suppressed(reason)
    if not granted:
        return NO_CONSENT
    return None


def check_addresses(session: Session, purpose: str, addresses: Sequence[str]) -> dict[str, str | None]:
    """The gate for addresses as typed: each maps to its recipient's verdict, or why it can't."""
    verdicts: dict[str, str | None] = {}
    by_normal: dict[str, list[str]] = {}
    for raw in addresses:
        try:
            by_normal.setdefault(normalise_address(raw), []).append(raw)
        except InvalidAddress:
            verdicts[raw] = INVALID_ADDRESS
    ids = {
        str(address): rid
        for address, rid in session.execute(
            sa.select(Recipient.address, Recipient.id).where(Recipient.address.in_(list(by_normal)))
        )
    }
    per_id = check(session, purpose, list(ids.values())).reasons
    loose = [a for a in by_normal if a not in ids]
    loose_reasons = {
        hashed: reason
        for hashed, reason in session.execute(
            sa.select(Suppression.address_hash, Suppression.reason)
            .where(Suppression.address_hash.in_([address_hash(a) for a in loose]))
            .where(Suppression.scope.in_((purpose, ALL_PURPOSES)))
            .order_by(Suppression.created_at.desc())
        )
    }
    for normal, raws in by_normal.items():
        if normal in ids:
            verdict = per_id[ids[normal]]
        elif address_hash(normal) in loose_reasons:
            verdict = suppressed(loose_reasons[address_hash(normal)])
        else:
            verdict = UNKNOWN_RECIPIENT
        for raw in raws:
            verdicts[raw] = verdict
    return verdicts


def allowed_now(
    recipient_id: InstrumentedAttribute[int] | sa.ColumnElement[int],
    purpose: InstrumentedAttribute[str] | sa.ColumnElement[str],
    *,
    partner_list_versions: Collection[str] | None = None,
) -> sa.ColumnElement[bool]:
    """The gate as a SQL predicate over a recipient id and purpose column (same rule as check)."""
    covered = (
        sa.true()
        if partner_list_versions is None
        else Consent.partner_list_version.in_(sorted(partner_list_versions))
    )
    active = sa.exists().where(
        Recipient.id == recipient_id,
        Recipient.state == AccountState.ACTIVE,
        Recipient.address.is_not(None),
    )
    consented = sa.exists().where(
        Consent.recipient_id == recipient_id,
        Consent.purpose == purpose,
        Consent.granted.is_(True),
        covered,
    )
    opposed = sa.exists().where(
        Recipient.id == recipient_id,
        Suppression.address_hash == Recipient.address_hash,
        Suppression.scope.in_([purpose, sa.literal(ALL_PURPOSES)]),
    )
    return active & consented & ~opposed
