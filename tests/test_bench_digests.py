"""The digest benchmark runs (tiny scale): PostgreSQL, Redis, a worker process, the fake SendGrid."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL, REPO


@pytest.mark.slow
@pytest.mark.redis
def test_the_benchmark_runs_at_a_tiny_scale(postgresql_url, redis_namespace, tmp_path):
    # Given the services (the fixtures skip locally, fail in CI, when one is missing)
    figures_file = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILER_", "SENDGRID_"))}

    # When the benchmark runs on 60 recipients and 80 tenders, with one worker process
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.bench_digests",
            "--recipients",
            "60",
            "--tenders",
            "80",
            "--naive-sample",
            "20",
            "--processes",
            "1",
            "--threads",
            "2",
            "--timeout",
            "120",
            "--postgres-url",
            POSTGRES_ADMIN_URL,
            "--redis-url",
            REDIS_URL,
            "--json",
            str(figures_file),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    # Then it prints every figure, every planned send settled, and the index agreed with the loop
    assert completed.returncode == 0, completed.stderr[-3000:]
    for figure in ("matching:", "naive users x tenders loop:", "digests sent/s", "peak memory per worker"):
        assert figure in completed.stdout
    figures = json.loads(figures_file.read_text())
    assert figures["settled_sends"] == figures["queued_sends"] == 60
    assert figures["sample_agrees"] is True
    assert figures["sendgrid_personalizations"] == figures["outcomes"]["sent"] > 0
