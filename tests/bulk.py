"""Many recipients with their consents, written fast: COPY on PostgreSQL, executemany on SQLite.

For benchmarks (a million recipients) and the tests that need thousands. Addresses are
``bulk<N>@example.com``; every recipient gets a consent event and a current consent per purpose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterable, Iterator

import sqlalchemy as sa

from mailer.db import get_engine
from mailer.models import Consent, ConsentEvent, Recipient

#: Rows per COPY write / executemany call.
CHUNK = 20_000


def _rows(
    start_id: int, count: int, locales: tuple[str, ...], with_names: bool
) -> Iterator[tuple[int, str, str, str | None, str]]:
    for offset in range(count):
        rid = start_id + offset
        address = f"bulk{rid}@example.com"
        name = f"Prénom{rid} Nom" if with_names else None
        yield rid, address, hashlib.sha256(address.encode()).hexdigest(), name, locales[rid % len(locales)]


def load(
    url: str,
    count: int,
    *,
    purposes: Iterable[str] = ("nouma_offers",),
    partner_list_version: str | None = None,
    locales: tuple[str, ...] = ("fr", "fr", "fr", "en"),
    with_names: bool = True,
) -> list[int]:
    """Add ``count`` recipients who consented to ``purposes``; returns their ids."""
    engine = get_engine(url)
    purposes = list(purposes)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        first_id = int(connection.scalar(sa.select(sa.func.coalesce(sa.func.max(Recipient.id), 0))) or 0) + 1
        first_event = (
            int(connection.scalar(sa.select(sa.func.coalesce(sa.func.max(ConsentEvent.id), 0))) or 0) + 1
        )
    if engine.dialect.name == "postgresql":
        _copy(engine, first_id, first_event, count, purposes, partner_list_version, locales, with_names, now)
    else:
        _insert(
            engine, first_id, first_event, count, purposes, partner_list_version, locales, with_names, now
        )
    return list(range(first_id, first_id + count))


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _copy(
    engine: sa.Engine,
    first_id: int,
    first_event: int,
    count: int,
    purposes: list[str],
    version: str | None,
    locales: tuple[str, ...],
    with_names: bool,
    now: dt.datetime,
) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        tables = {
            "recipients": "id, address, address_hash, name, locale, time_zone, state, created_at, updated_at",
            "consent_events": "id, recipient_id, purpose, action, at, recorded_at, source, wording_version, "
            "partner_list_version",
            "consents": "recipient_id, purpose, granted, at, event_id, wording_version, partner_list_version",
        }
        for table, columns in tables.items():
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                buffer = io.StringIO()
                for n, (rid, address, hashed, name, locale) in enumerate(
                    _rows(first_id, count, locales, with_names)
                ):
                    if table == "recipients":
                        rows: list[tuple[object, ...]] = [
                            (rid, address, hashed, name, locale, "Europe/Paris", "active", now, now)
                        ]
                    else:
                        rows = []
                        for p_index, purpose in enumerate(purposes):
                            event_id = first_event + n * len(purposes) + p_index
                            v = version if purpose == "partner_offers" else None
                            if table == "consent_events":
                                rows.append(
                                    (event_id, rid, purpose, "granted", now, now, "signup_form", "bulk-1", v)
                                )
                            else:
                                rows.append((rid, purpose, True, now, event_id, "bulk-1", v))
                    for row in rows:
                        buffer.write("\t".join(_text(v) for v in row) + "\n")
                    if n % CHUNK == CHUNK - 1:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
        for table in ("recipients", "consent_events"):
            sequence = f"pg_get_serial_sequence('{table}', 'id')"
            cursor.execute(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))")
        cursor.execute("ANALYZE recipients")
        cursor.execute("ANALYZE consents")
        raw.commit()
    finally:
        raw.close()


def _insert(
    engine: sa.Engine,
    first_id: int,
    first_event: int,
    count: int,
    purposes: list[str],
    version: str | None,
    locales: tuple[str, ...],
    with_names: bool,
    now: dt.datetime,
) -> None:
    recipients, events, consents = [], [], []
    for n, (rid, address, hashed, name, locale) in enumerate(_rows(first_id, count, locales, with_names)):
        recipients.append(
            {
                "id": rid,
                "address": address,
                "address_hash": hashed,
                "name": name,
                "locale": locale,
                "time_zone": "Europe/Paris",
                "state": "active",
                "created_at": now,
                "updated_at": now,
            }
        )
        for p_index, purpose in enumerate(purposes):
            event_id = first_event + n * len(purposes) + p_index
            v = version if purpose == "partner_offers" else None
            events.append(
                {
                    "id": event_id,
                    "recipient_id": rid,
                    "purpose": purpose,
                    "action": "granted",
                    "at": now,
                    "recorded_at": now,
                    "source": "signup_form",
                    "wording_version": "bulk-1",
                    "partner_list_version": v,
                }
            )
            consents.append(
                {
                    "recipient_id": rid,
                    "purpose": purpose,
                    "granted": True,
                    "at": now,
                    "event_id": event_id,
                    "wording_version": "bulk-1",
                    "partner_list_version": v,
                }
            )
    with engine.begin() as connection:
        for table, rows in (
            (Recipient.__table__, recipients),
            (ConsentEvent.__table__, events),
            (Consent.__table__, consents),
        ):
            for start in range(0, len(rows), CHUNK):
                connection.execute(sa.insert(table), rows[start : start + CHUNK])
