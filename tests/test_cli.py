"""The ``mailer`` command: help with examples everywhere; bad input is one clear line and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from mailer.cli import main
from mailer.cli.base import mailer
from mailer.db import session_scope
from tests.conftest import REPO
from tests.factories import make_recipient, table_counts


def all_commands(group: click.Group = mailer, path: str = "mailer"):
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from all_commands(command, f"{path} {name}")


def test_every_command_has_help_with_an_example():
    lacking = [
        path
        for path, command in all_commands()
        if not isinstance(command, click.Group) and "Example" not in (command.help or "")
    ]
    assert lacking == []
    assert len(list(all_commands())) >= 15


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("db", "recipients", "consent", "suppress", "send-test", "audit", "demo"):
        assert name in out


@pytest.fixture
def known(db):
    with session_scope() as session:
        make_recipient(session, "known@example.com", granted=["tender_alerts"])
        make_recipient(session, "other@example.com")
    return db


BAD = [
    (["recipients", "import", "missing.jsonl"], "no such file"),
    (["consent", "grant", "known@example.com", "nouma_offers", "--source", "carrier_pigeon"], "--source"),
    (["consent", "grant", "known@example.com", "newsletter", "--source", "support_request"], "newsletter"),
    (
        ["consent", "grant", "nobody@example.com", "nouma_offers", "--source", "support_request"],
        "no recipient",
    ),
    (
        ["consent", "withdraw", "not-an-address", "nouma_offers", "--source", "support_request"],
        "not an e-mail address",
    ),
    (["consent", "grant", "known@example.com", "nouma_offers"], "--source"),
    (
        ["consent", "grant", "known@example.com", "partner_offers", "--source", "support_request"],
        "--partner-list-version",
    ),
    (["digest", "run", "--frequency", "daily", "--as-of", "2099-01-01"], "in the future"),
    (["suppress", "add", "x@example.com", "--reason", "opposition"], "exactly one of --purpose"),
    (
        ["suppress", "add", "x@example.com", "--all", "--purpose", "nouma_offers", "--reason", "opposition"],
        "exactly one",
    ),
    (["suppress", "add", "x@example.com", "--all", "--reason", "because"], "--reason"),
    (["suppress", "add", "not an address", "--all", "--reason", "opposition"], "not an e-mail address"),
    (["suppress", "check", "bad@@example.com"], "not an e-mail address"),
    (["suppress", "list", "--limit", "0"], "--limit"),
    (["send-test", "nobody@example.com", "--purpose", "tender_alerts"], "no recipient"),
    (["send-test", "known@example.com", "--purpose", "spam"], "--purpose"),
    (["send-test", "known@example.com"], "--purpose"),
    (["audit", "show", "bad"], "not an e-mail address"),
    (["subject", "rectify", "known@example.com", "Known@Example.com"], "current one"),
    (["subject", "rectify", "known@example.com", "other@example.com"], "already has the new address"),
    (["subject", "erase", "nobody@example.com", "--yes"], "nothing is held"),
    (["no-such-command"], "No such command"),
    (["db", "upgrade", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(known, capsys, argv, says):
    before = table_counts()
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mailer: error:") and says in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert table_counts() == before


def test_a_bad_import_file_names_its_lines_and_imports_nothing(known, tmp_path, capsys):
    path = tmp_path / "people.jsonl"
    path.write_text('{"address": "new@example.com"}\n{"address": "broken"}\n{"nope": 1}\n')
    before = table_counts()
    assert main(["recipients", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: address: not an e-mail address" in err
    assert f"{path}:3:" in err
    assert (
        err.strip().splitlines()[-1]
        == "mailer: error: line 2: address: not an e-mail address (An email address must have an @-sign.) (and 1 more bad lines); nothing was imported"
    )
    assert table_counts() == before
    assert main(["recipients", "import", str(path), "--skip-invalid"]) == 0
    assert table_counts()["recipients"] == before["recipients"] + 1


def test_a_bad_setting_is_named(known, monkeypatch, capsys):
    monkeypatch.setenv("MAILER_DATABASE_URL", "mysql://db/mailer")
    from mailer.config import reset_settings

    reset_settings()
    assert main(["suppress", "list"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "mailer: error: MAILER_DATABASE_URL: must be a sqlite:/// or postgresql:// URL"
    )


def test_support_desk_round_trip(known, capsys):
    # Given a known recipient, When support records a withdrawal and an opposition and sends a test
    assert (
        main(
            [
                "consent",
                "withdraw",
                "known@example.com",
                "tender_alerts",
                "--source",
                "support_request",
                "--note",
                "ticket 1",
            ]
        )
        == 0
    )
    assert main(["send-test", "known@example.com", "--purpose", "tender_alerts"]) == 0
    assert "skipped (no_consent)" in capsys.readouterr().out
    assert (
        main(["consent", "grant", "known@example.com", "tender_alerts", "--source", "support_request"]) == 0
    )
    assert main(["send-test", "known@example.com", "--purpose", "tender_alerts"]) == 0
    out = capsys.readouterr().out
    assert ": sent (provider id outbox-" in out and "written to " in out
    assert (
        main(
            ["suppress", "add", "KNOWN@example.com", "--all", "--reason", "opposition", "--note", "ticket 2"]
        )
        == 0
    )
    assert main(["suppress", "add", "known@example.com", "--all", "--reason", "manual"]) == 0
    assert "already suppressed for all" in capsys.readouterr().out
    assert main(["send-test", "known@example.com", "--purpose", "tender_alerts"]) == 0
    assert "skipped (suppressed:opposition)" in capsys.readouterr().out
    # Then the audit shows every event and every delivery record
    assert main(["audit", "show", "known@example.com", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in report["consent_events"]] == ["granted", "withdrawn", "granted"]
    assert [(d["state"], d["skip_reason"]) for d in report["deliveries"]] == [
        ("skipped", "no_consent"),
        ("sent", None),
        ("skipped", "suppressed:opposition"),
    ]
    assert [(s["scope"], s["reason"]) for s in report["suppressions"]] == [("all", "opposition")]


def test_the_installed_command_runs_without_a_traceback(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "mailer.cli", "suppress", "check", "nope"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("mailer: error:"), result.stderr
    assert REPO.exists()
