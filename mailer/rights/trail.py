"""Recording the rights requests answered, and reading them back for a person."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer.rights.models import RightKind, RightsRequest


def record(
    session: Session,
    kind: RightKind,
    subject_hash: str,
    *,
    source: str,
    operator: str | None,
    note: str | None = None,
    recipient_id: int | None = None,
    scope: str | None = None,
    new_subject_hash: str | None = None,
) -> RightsRequest:
    """Append one answered request to the trail."""
    request = RightsRequest(
        kind=kind,
        subject_hash=subject_hash,
        new_subject_hash=new_subject_hash,
        recipient_id=recipient_id,
        scope=scope,
        source=source,
        note=note,
        operator=operator,
    )
    session.add(request)
    session.flush()
    return request


def for_subject(session: Session, subject_hash: str) -> list[dict[str, Any]]:
    """The requests made about an address (as the subject, or as the new address of a rectification)."""
    rows = session.scalars(
        sa.select(RightsRequest)
        .where(
            sa.or_(RightsRequest.subject_hash == subject_hash, RightsRequest.new_subject_hash == subject_hash)
        )
        .order_by(RightsRequest.at, RightsRequest.id)
    )
    return [
        {
            "kind": r.kind.value,
            "at": r.at,
            "scope": r.scope,
            "source": r.source,
            "note": r.note,
            "operator": r.operator,
        }
        for r in rows
    ]
