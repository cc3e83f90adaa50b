"""The campaign pace is one count shared by every worker (Dramatiq's rate limiter on Redis)."""

from __future__ import annotations

import time

import pytest
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from mailer.campaigns.pacing import Pacer
from mailer.config import Settings
from tests.conftest import REDIS_URL


def settings(per_second: int, per_hour: int = 0) -> Settings:
    return Settings(campaign_rate_per_second=per_second, campaign_rate_per_hour=per_hour)


def next_second() -> None:
    time.sleep(1.02 - time.time() % 1.0)


def test_a_pace_counts_mails_not_batches():
    pacer = Pacer(StubBackend(), settings(100), prefix="test")
    next_second()
    assert pacer.acquire(60, max_wait=0)
    assert not pacer.acquire(60, max_wait=0)  # 120 would pass 100 this second
    assert pacer.acquire(40, max_wait=0)


def test_more_than_a_second_holds_is_granted_piece_by_piece():
    pacer = Pacer(StubBackend(), settings(10), prefix="test")
    next_second()
    started = time.monotonic()
    # Given a batch of 25 at 10 a second and no wait allowed beyond what its pieces need
    assert pacer.acquire(25, max_wait=0)
    assert 1.5 < time.monotonic() - started < 4


def test_the_hourly_limit_holds_too():
    pacer = Pacer(StubBackend(), settings(1000, per_hour=50), prefix="test")
    assert pacer.acquire(40, max_wait=0)
    assert not pacer.acquire(20, max_wait=0)
    # the refused batch took nothing of the hour: 10 still fit
    assert pacer.acquire(10, max_wait=0)
    assert pacer.retry_delay_ms() == 60_000


@pytest.mark.redis
def test_two_workers_share_one_pace_through_redis(redis_namespace):
    # Given two processes' pacers on the same Redis namespace
    first = Pacer(RedisBackend(url=REDIS_URL), settings(100), prefix=redis_namespace)
    second = Pacer(RedisBackend(url=REDIS_URL), settings(100), prefix=redis_namespace)
    next_second()
    # When the first takes 80 mails this second, the second cannot take 30 more
    assert first.acquire(80, max_wait=0)
    assert not second.acquire(30, max_wait=0)
    assert second.acquire(20, max_wait=0)
    # And the next second, it can
    assert second.acquire(30, max_wait=2)


def test_campaign_batches_have_their_own_lane():
    from mailer import actors

    assert actors.send_campaign_batch.queue_name == "campaigns"
    assert actors.start_campaign.queue_name == "campaigns"
    assert actors.deliver.queue_name == "deliveries"
    assert actors.sweep_campaigns.queue_name == "maintenance"
