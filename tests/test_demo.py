"""``make demo``'s command on a fresh directory, nothing running: it sends, skips and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from email import message_from_bytes, policy


def test_demo_runs_from_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILER_", "SENDGRID_"))}
    result = subprocess.run(
        [sys.executable, "-m", "mailer.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sent" in out and "no_consent" in out and "suppressed:opposition" in out
    emls = sorted((tmp_path / "var" / "demo" / "outbox").glob("*.eml"))
    assert emls, "the demo should write .eml files"
    for path in emls:
        assert str(path.relative_to(tmp_path)) in out
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert mail["List-Unsubscribe"].startswith("<http://localhost:8000/u/")
        # RFC 8058: one-click only beside an https link; the embedded default serves plain http
        assert mail["List-Unsubscribe-Post"] is None
        assert mail["To"].addresses[0].domain == "example.com"
    # nobody who opposed got anything
    assert not any("claire.martin" in p.read_text() for p in emls)
