"""``mailer demo``: the embedded default end to end, from an empty directory, nothing to start."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailer.config import reset_settings
from mailer.db import dispose_engines

DEMO_DIR = Path("var") / "demo"
DEMO_DATA = Path(__file__).parent / "demo_data"

#: The recipient who asked support never to be mailed again.
OPPOSED_ADDRESS = "claire.martin@example.com"
#: Real TED notices (a verbatim sample, see demo_data/README.md) and the recipients' searches.
DEMO_TENDERS = DEMO_DATA / "tenders_ted_sample.jsonl"
DEMO_SEARCHES = DEMO_DATA / "saved_searches.jsonl"
#: Buyer contacts of the sample who opposed being shown (policy article 5): one known by name,
#: one by address. Their tenders still appear in digests, with the buyer organisation only.
OPPOSED_CONTACT_NAME = "Alina Pricop"
OPPOSED_CONTACT_ADDRESS = "ncattaneo@example.invalid"
#: Shortest delay to a deadline once the sample is moved to today.
MIN_DEADLINE_DAYS = 7


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo's closing table."""

    address: str
    purpose: str
    #: What the send was: ``test_message`` or the digest window.
    what: str
    state: str
    detail: str
    eml: str


def use_embedded_default() -> None:
    """Point this process at a fresh demo directory: SQLite, in-process broker, outbox."""
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    os.environ.update(
        {
            "MAILER_DATABASE_URL": f"sqlite:///{DEMO_DIR / 'mailer.sqlite'}",
            "MAILER_OUTBOX_DIR": str(DEMO_DIR / "outbox"),
            "MAILER_EMAIL_BACKEND": "outbox",
        }
    )
    os.environ.pop("MAILER_BROKER_URL", None)
    reset_settings()
    dispose_engines()


def run() -> list[DemoRow]:
    """Create the database, import recipients, record an opposition, send, and report."""
    from mailer import actors, migrations, recipients
    from mailer.alerts import formats, searches, tenders, windows
    from mailer.batch import split
    from mailer.broker import embedded_worker
    from mailer.config import get_settings
    from mailer.db import session_scope
    from mailer.models import Delivery, Recipient, SuppressionReason
    from mailer.providers.outbox import OutboxBackend
    from mailer.purposes import ALL_PURPOSES, PURPOSE_KEYS
    from mailer.recipient_file import read_recipient_file
    from mailer.suppression import contacts, entries

    migrations.upgrade()
    parsed = read_recipient_file(DEMO_DATA / "recipients.jsonl")
    with session_scope() as session:
        recipients.import_records(session, parsed.records, recorded_by="demo")
        entries.add(
            session,
            OPPOSED_ADDRESS,
            scope=ALL_PURPOSES,
            reason=SuppressionReason.OPPOSITION,
            source="support_request",
            note="asked ServiceClients@nouma.fr never to be mailed again",
            created_by="demo",
        )
        ids = list(session.scalars(sa.select(Recipient.id).order_by(Recipient.id)))
        today = windows.today_in_paris()
        tenders.import_tenders(session, redated(formats.read_tender_file(DEMO_TENDERS).records, today))
        searches.import_searches(session, searches.read_search_file(DEMO_SEARCHES).records)
        contacts.add_name(session, OPPOSED_CONTACT_NAME, source="support_request", created_by="demo")
        entries.add(
            session,
            OPPOSED_CONTACT_ADDRESS,
            scope=ALL_PURPOSES,
            reason=SuppressionReason.OPPOSITION,
            source="support_request",
            note="a buyer contact who asked not to appear in NouMa's mail",
            created_by="demo",
        )
    # Tender alerts go out as the daily digest; the offers as one test message each.
    offers = [p for p in PURPOSE_KEYS if p != windows.PURPOSE]
    specs = [s for p in offers for s in split("test_message", p, f"demo:{p}", ids)]
    with embedded_worker():
        actors.enqueue(specs)
        # The same batches again, as a redelivered message would be: nothing is sent twice.
        actors.enqueue(specs)
        # Today's daily digests, asked for twice as two schedulers would: planned and sent once.
        actors.run_digest.send("daily", today.isoformat())
        actors.run_digest.send("daily", today.isoformat())

    outbox = OutboxBackend(get_settings().outbox_dir)
    with session_scope(readonly=True) as session:
        rows = session.execute(
            sa.select(Delivery, Recipient.address)
            .join(Recipient, Recipient.id == Delivery.recipient_id)
            .order_by(Recipient.id, Delivery.purpose)
        ).all()
    return [
        DemoRow(
            address=str(address),
            purpose=d.purpose,
            what=d.belongs_to if d.kind == windows.DIGEST_KIND else d.kind,
            state=d.state.value,
            detail=d.skip_reason or d.error or "",
            eml=str(outbox.path_for(d.id)) if outbox.path_for(d.id).exists() else "",
        )
        for d, address in rows
    ]


def redated(records: list[Any], today: dt.date) -> list[Any]:
    """The sample's tenders as if published today: each keeps its delay to the deadline."""
    moved = []
    for numbered in records:
        record = numbered.record
        published = record.published_on or today
        changes: dict[str, Any] = {"published_on": today}
        if record.deadline is not None:
            deadline_day, deadline_time = record.deadline_parts()
            assert deadline_day is not None
            delay = max((deadline_day - published).days, MIN_DEADLINE_DAYS)
            day = today + dt.timedelta(days=delay)
            changes["deadline"] = dt.datetime.combine(day, deadline_time) if deadline_time else day
        moved.append(record.model_copy(update=changes))
    return moved
