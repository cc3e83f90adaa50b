"""``mailer demo``: the embedded default end to end, from an empty directory, nothing to start."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from mailer.config import reset_settings
from mailer.db import dispose_engines

DEMO_DIR = Path("var") / "demo"
DEMO_DATA = Path(__file__).parent / "demo_data"

#: The recipient who asked support never to be mailed again.
OPPOSED_ADDRESS = "claire.martin@example.com"


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo's closing table."""

    address: str
    purpose: str
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
    from mailer.batch import split
    from mailer.broker import embedded_worker
    from mailer.config import get_settings
    from mailer.db import session_scope
    from mailer.models import Delivery, Recipient, SuppressionReason
    from mailer.outbox import OutboxBackend
    from mailer.purposes import ALL_PURPOSES, PURPOSE_KEYS
    from mailer.recipient_file import read_recipient_file
    from mailer.suppression import entries

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
    specs = [s for p in PURPOSE_KEYS for s in split("test_message", p, f"demo:{p}", ids)]
    with embedded_worker():
        actors.enqueue(specs)
        # The same batches again, as a redelivered message would be: nothing is sent twice.
        actors.enqueue(specs)

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
            state=d.state.value,
            detail=d.skip_reason or d.error or "",
            eml=str(outbox.path_for(d.id)) if outbox.path_for(d.id).exists() else "",
        )
        for d, address in rows
    ]
