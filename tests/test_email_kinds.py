"""E-mail kinds: each declared where it is defined, every one found from ``mailer.emails`` alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailer import emails
from tests.conftest import REPO


def run_python(script: str, cwd: Path) -> dict:
    """Run ``script`` in a new interpreter (nothing imported yet); it prints one JSON object."""
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


FRESH_PROCESS = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from mailer import emails

declaring = sorted(set(emails.KIND_MODULES.values()) - {{"mailer.emails"}})
before = [m for m in declaring if m in sys.modules]
digest = type(emails.composer_for("tender_digest")).__module__
after_one = [m for m in declaring if m in sys.modules]
kinds = emails.known_kinds()
print(json.dumps({{
    "before": before,
    "digest": digest,
    "after_one": after_one,
    "kinds": kinds,
    "modules": {{k: emails.composer_for(k).__class__.__module__ for k in kinds}},
    "requeued_by_owner": sorted(emails.kinds_requeued_by_their_owner()),
}}))
"""


def test_a_fresh_process_finds_every_kind_through_mailer_emails_alone(tmp_path):
    # Given a new process that imports mailer.emails and nothing else of the mailer
    # When it asks for one kind, then for all of them
    found = run_python(FRESH_PROCESS, tmp_path)

    # Then no module declaring a kind was imported beforehand, one kind loads its module only,
    # and every kind is found, with the module that declares it and the sweep's exception
    assert found["before"] == []
    assert found["digest"] == "mailer.alerts.digest_mail"
    assert found["after_one"] == ["mailer.alerts.digest_mail"]
    assert found["kinds"] == ["campaign", "tender_digest", "test_message"] == sorted(emails.KIND_MODULES)
    assert found["modules"] == {
        "campaign": "mailer.campaigns.composer",
        "tender_digest": "mailer.alerts.digest_mail",
        "test_message": "mailer.emails",
    }
    assert found["requeued_by_owner"] == ["campaign"]


EVERY_MODULE = f"""
import importlib, json, pkgutil, sys
sys.path.insert(0, {str(REPO)!r})
import mailer
from mailer import emails

# Every module of the package (not the command line's entry, nor Alembic's scripts), so a kind
# declared anywhere is registered, or refused.
for module in pkgutil.walk_packages(mailer.__path__, "mailer."):
    if not module.name.endswith("__main__") and not module.name.startswith("mailer.migrations."):
        importlib.import_module(module.name)
print(json.dumps({{"declared": sorted(emails._composers)}}))
"""


def test_no_kind_is_declared_outside_the_table(tmp_path):
    # Given every module of the mailer imported, each kind registering where it is declared
    declared = run_python(EVERY_MODULE, tmp_path)["declared"]

    # Then the kinds declared are exactly those the table lists (a kind missing from it is refused)
    assert declared == sorted(emails.KIND_MODULES)


def test_a_kind_missing_from_the_table_is_refused_where_it_is_declared():
    # When a module declares a kind the table does not list
    with pytest.raises(ValueError, match="KIND_MODULES must name that module"):

        @emails.email_kind("newsletter")
        def newsletter(session, spec, recipients):
            return {}

    # Then the kind does not exist, and a kind listed for another module is refused as well
    assert "newsletter" not in emails.known_kinds()
    with pytest.raises(ValueError, match=r"'tender_digest' is declared in tests\.test_email_kinds"):

        @emails.email_kind("tender_digest")
        class Impostor:
            def compose(self, session, spec, addressed):
                raise AssertionError


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown e-mail kind 'newsletter'; known: campaign, tender_digest"):
        emails.composer_for("newsletter")
