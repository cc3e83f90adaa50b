"""``mailer stats unsubscribes`` and ``mailer events sweep``."""

from __future__ import annotations

import datetime as dt
import json

from mailer import consent
from mailer.cli import main
from mailer.db import session_scope
from mailer.models import ConsentSource
from mailer.suppression import tokens
from tests.factories import make_recipient
from tests.web_support import FORM_ENCODED, ONE_CLICK_BODY, web_client


def test_stats_unsubscribes_measures_request_to_effect(db, capsys):
    # Given two one-click unsubscribes through the web, and one SendGrid unsubscribe 90 s late
    with session_scope() as session:
        ids = [make_recipient(session, f"p{i}@example.com", granted=("nouma_offers",)).id for i in range(3)]
    client = web_client()
    for rid in ids[:2]:
        client.post(
            f"/u/{tokens.unsubscribe_token(rid, 'nouma_offers')}",
            content=ONE_CLICK_BODY,
            headers=FORM_ENCODED,
        )
    with session_scope() as session:
        late = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)
        consent.withdraw(
            session, ids[2], "nouma_offers", consent.Proof(source=ConsentSource.SENDGRID_EVENT, at=late)
        )

    # When the figures are asked for
    assert main(["stats", "unsubscribes", "--json"]) == 0
    figures = {row["source"]: row for row in json.loads(capsys.readouterr().out)["sources"]}

    # Then web unsubscribes take effect within a second; SendGrid's shows its delay; none late
    assert figures["one_click"]["count"] == 2 and figures["one_click"]["max_seconds"] < 1.0
    assert 89 <= figures["sendgrid_event"]["max_seconds"] < 120
    assert all(row["over_deadline"] == 0 for row in figures.values())
    assert main(["stats", "unsubscribes"]) == 0
    assert "one_click" in capsys.readouterr().out


def test_stats_refuses_a_bad_window(sqlite_db, capsys):
    assert main(["stats", "unsubscribes", "--days", "0"]) == 2
    assert main(["stats", "unsubscribes", "--days", "99999999999"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_events_sweep_applies_a_batch_whose_message_was_lost(db, capsys):
    from mailer.provider_events import batches
    from mailer.provider_events.models import WebhookBatch

    batch_id = batches.store_batch("sendgrid", b'[{"event":"delivered","sg_event_id":"s1"}]', signed_at=1)
    with session_scope() as session:
        session.get(WebhookBatch, batch_id).received_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert main(["events", "sweep"]) == 0
    assert "1 batches queued again" in capsys.readouterr().out
    with session_scope(readonly=True) as session:
        assert session.get(WebhookBatch, batch_id).applied_at is not None


def test_every_new_command_has_help_with_an_example():
    from mailer.cli.base import mailer

    for group in ("stats", "events"):
        for name, command in mailer.commands[group].commands.items():
            assert "Example:" in (command.help or ""), f"{group} {name}"
