"""The campaign benchmark runs end to end at a tiny scale (the full run is `make bench-campaigns`)."""

from __future__ import annotations

import pytest

from tests.conftest import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_the_benchmark_runs_tiny(postgresql_url, redis_namespace, capsys):
    import redis

    from tests.bench import campaigns

    try:
        redis.Redis.from_url(campaigns.REDIS_URL).ping()
    except redis.exceptions.ConnectionError as error:
        unavailable(f"Redis unavailable: {error}")
    result = campaigns.main(
        ["--recipients", "3000", "--naive-sample", "100", "--warmup", "2", "--timeout", "120"]
    )
    out = capsys.readouterr().out
    assert result.campaign_rate > 0 and result.naive_rate > 0
    assert result.requests >= 3 + 100  # a request per locale group of each batch, one per naive recipient
    assert len(result.peak_worker_mb) == 2 and all(m > 0 for m in result.peak_worker_mb)
    assert "ratio to the naive design" in out and "campaign deliveries by state: {'sent': 3000}" in out
