"""``mailer campaign``: every command documented, bad input refused in one line with nothing changed."""

from __future__ import annotations

import click
import pytest

from mailer.cli import main
from mailer.cli.base import mailer
from mailer.db import session_scope
from tests.campaign_helpers import write_content
from tests.factories import make_recipient, table_counts


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def campaign_commands() -> list[tuple[str, click.Command]]:
    group = mailer.commands["campaign"]
    assert isinstance(group, click.Group)
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend((f"{name} {sub}", c) for sub, c in command.commands.items())
        else:
            found.append((name, command))
    return found


def test_every_campaign_command_has_help_with_an_example():
    names = {name for name, _ in campaign_commands()}
    assert {
        "create",
        "preview",
        "test",
        "queue",
        "status",
        "pause",
        "resume",
        "cancel",
        "list",
        "sweep",
    } <= names
    for name, command in campaign_commands():
        assert command.help and "Example:" in command.help, name


def test_the_marketing_flow_from_the_command_line(sqlite_db, tmp_path, capsys):
    with session_scope() as session:
        for i in range(3):
            make_recipient(session, f"person{i}@example.com", name="Marie Dupont", granted=["nouma_offers"])
    folder = write_content(tmp_path / "content")

    code, out, _ = run(
        capsys,
        "campaign",
        "create",
        "--purpose",
        "nouma_offers",
        "--name",
        "Noël",
        "--content",
        str(folder),
        "--audience",
        'locale == "fr"',
    )
    assert code == 0 and "campaign 1 created (en, fr); about 3 recipients" in out

    code, out, _ = run(
        capsys,
        "campaign",
        "preview",
        "1",
        "--recipient",
        "person0@example.com",
        "--output",
        str(tmp_path / "preview"),
    )
    assert code == 0
    html = (tmp_path / "preview" / "campaign-1-fr.html").read_text()
    text = (tmp_path / "preview" / "campaign-1-fr.txt").read_text()
    assert f"html: {tmp_path / 'preview' / 'campaign-1-fr.html'}" in out
    assert "Bonjour Marie," in html and "Bonjour Marie," in text and "%%nm:" not in html + text
    assert "/u/" in html and "Envoyé par NouMa" in text

    code, out, _ = run(capsys, "campaign", "test", "1", "--to", "person1@example.com")
    assert code == 0 and "person1@example.com: sent" in out

    code, out, _ = run(capsys, "campaign", "queue", "1")
    assert code == 0 and "3 recipients in 1 batches" in out
    code, out, _ = run(capsys, "campaign", "status", "1", "--watch")
    assert code == 0 and "completed" in out and "sent" in out
    code, out, _ = run(capsys, "campaign", "status", "1")
    assert "3" in out and "test" not in out  # the test send is not counted
    code, out, _ = run(capsys, "campaign", "list")
    assert code == 0 and "Noël" in out and "completed" in out
    code, out, _ = run(capsys, "campaign", "sweep")
    assert code == 0 and "0 campaigns started" in out


def test_a_campaign_with_a_send_time_waits_for_it_through_pause_and_resume(sqlite_db, tmp_path, capsys):
    import datetime as dt

    from mailer.broker import broker
    from mailer.campaigns.models import Campaign, CampaignState

    # Given a campaign to start tomorrow at 09:00 Paris time, and an empty broker
    with session_scope() as session:
        make_recipient(session, "person0@example.com", granted=["nouma_offers"])
    folder = write_content(tmp_path / "content")
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    args = ["--purpose", "nouma_offers", "--name", "Noël", "--content", str(folder)]
    assert run(capsys, "campaign", "create", *args, "--send-at", f"{tomorrow}T09:00")[0] == 0
    broker.flush_all()

    # When it is queued, paused, then resumed
    code, queued, _ = run(capsys, "campaign", "queue", "1")
    assert run(capsys, "campaign", "pause", "1")[0] == 0
    code_resumed, resumed, _ = run(capsys, "campaign", "resume", "1")

    # Then each time it waits for 09:00, with a start message delayed until then, and nothing sent
    assert code == code_resumed == 0
    assert f"campaign 1 scheduled for {tomorrow} 09:00 CE" in queued
    assert f"campaign 1 scheduled again for {tomorrow} 09:00 CE" in resumed
    delayed = broker.queues["campaigns.DQ"]
    assert delayed.qsize() == 2
    with session_scope(readonly=True) as session:
        waiting = session.get(Campaign, 1)
        assert waiting is not None and waiting.state == CampaignState.SCHEDULED
    assert table_counts()["deliveries"] == 0
    broker.flush_all()


@pytest.mark.parametrize(
    "args",
    [
        ["campaign", "create", "--purpose", "tender_alerts", "--name", "x", "--content", "{content}"],
        ["campaign", "create", "--purpose", "nouma_offers", "--name", "x", "--content", "{missing}"],
        ["campaign", "create", "--purpose", "nouma_offers", "--name", "x", "--content", "{broken}"],
        [
            "campaign",
            "create",
            "--purpose",
            "nouma_offers",
            "--name",
            "x",
            "--content",
            "{content}",
            "--audience",
            "locale = 'fr'",
        ],
        [
            "campaign",
            "create",
            "--purpose",
            "nouma_offers",
            "--name",
            "x",
            "--content",
            "{content}",
            "--send-at",
            "tomorrow",
        ],
        [
            "campaign",
            "create",
            "--purpose",
            "nouma_offers",
            "--name",
            "x",
            "--content",
            "{content}",
            "--send-at",
            "2001-01-01T00:00",
        ],
        ["campaign", "create", "--purpose", "partner_offers", "--name", "x", "--content", "{content}"],
        ["campaign", "queue", "42"],
        ["campaign", "pause", "42"],
        ["campaign", "resume", "1"],
        ["campaign", "cancel", "42", "--yes"],
        ["campaign", "status", "42"],
        ["campaign", "preview", "42"],
        ["campaign", "test", "1", "--to", "nobody@example.com"],
        ["campaign", "partner-list", "add", "v1"],
        ["campaign", "partner-list", "show"],
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(sqlite_db, tmp_path, capsys, args):
    content = write_content(tmp_path / "content")
    broken = write_content(
        tmp_path / "broken", {"fr": {"subject.txt": "x", "body.html": "{{ oops }", "body.txt": "x"}}
    )
    code, _, _ = run(
        capsys, "campaign", "create", "--purpose", "nouma_offers", "--name", "ok", "--content", str(content)
    )
    assert code == 0
    before = table_counts()
    filled = [a.format(content=content, missing=tmp_path / "nope", broken=broken) for a in args]
    code, out, err = run(capsys, *filled)
    assert code != 0
    assert err.startswith("mailer: error:") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert table_counts() == before
