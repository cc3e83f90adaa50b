"""One pace for every campaign on every worker: Dramatiq's window rate limiter, weighted by mails.

Dramatiq's ``WindowRateLimiter`` counts acquisitions; a campaign batch sends up to 1000 mails at
once, so acquisitions here carry a weight (the backend's ``incr_and_sum`` takes an amount). The
Redis backend shares the count between all worker processes and machines; the embedded default
uses the in-process stub backend.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

from dramatiq.rate_limits import RateLimiterBackend, WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from mailer.config import Settings, get_settings

#: Longest a worker thread waits for its turn before putting the batch back with a delay.
MAX_WAIT_SECONDS = 5.0
#: Hourly windows are kept in one-minute buckets (60 keys, not 3600).
HOUR_BUCKET_SECONDS = 60


class WeightedWindowRateLimiter(WindowRateLimiter):
    """``limit`` units per ``window`` seconds, acquired several at a time, in buckets of ``bucket`` s."""

    def __init__(
        self, backend: RateLimiterBackend, key: str, *, limit: int, window: int, bucket: int = 1
    ) -> None:
        super().__init__(backend, key, limit=limit, window=window)
        self.bucket = bucket

    def _get_keys(self) -> list[str]:
        now = int(time.time()) // self.bucket
        return [f"{self.key}@{now - i}" for i in range(max(1, self.window // self.bucket))]

    def try_acquire(self, amount: int) -> bool:
        """Take ``amount`` units if the window has room for all of them."""
        keys = self._get_keys()
        return bool(
            self.backend.incr_and_sum(
                keys[0], self._get_keys, amount, maximum=self.limit, ttl=self.window_millis
            )
        )


class Pacer:
    """The campaign pace: mails per second and, optionally, per hour."""

    def __init__(self, backend: RateLimiterBackend, settings: Settings, *, prefix: str) -> None:
        self.limiters = [
            WeightedWindowRateLimiter(
                backend, f"{prefix}:campaign-pace:second", limit=settings.campaign_rate_per_second, window=1
            )
        ]
        if settings.campaign_rate_per_hour:
            self.limiters.append(
                WeightedWindowRateLimiter(
                    backend,
                    f"{prefix}:campaign-pace:hour",
                    limit=settings.campaign_rate_per_hour,
                    window=3600,
                    bucket=HOUR_BUCKET_SECONDS,
                )
            )

    def acquire(
        self,
        amount: int,
        *,
        max_wait: float = MAX_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Take room for all ``amount`` mails, or report that there is none (False).

        The per-second pace is taken piece by piece when a batch holds more than a second's
        worth, waiting the seconds the pieces need plus at most ``max_wait`` for contention; the
        hourly allowance is taken last and whole, so a batch never spends part of it and gives up.
        On False the caller puts the batch back with a delay rather than holding a worker thread.
        """
        per_second, *hourly = self.limiters
        deadline = time.monotonic() + max_wait + (math.ceil(amount / per_second.limit) - 1)
        granted = 0
        while granted < amount:
            piece = min(amount - granted, per_second.limit)
            if per_second.try_acquire(piece):
                granted += piece
                continue
            if time.monotonic() >= deadline:
                return False
            # The per-second window moves on at the next whole second.
            sleep(max(0.01, 1.0 - (time.time() % 1.0)))
        return all(limiter.try_acquire(amount) for limiter in hourly)

    def retry_delay_ms(self) -> int:
        """How long a batch that did not get its turn waits before trying again."""
        return 60_000 if len(self.limiters) > 1 else 1_000


_lock = threading.Lock()
_pacers: dict[tuple[int, str], Pacer] = {}


def get_pacer() -> Pacer:
    """The process's pacer: Redis-backed with the Redis broker, in-process otherwise."""
    settings = get_settings()
    key = (
        os.getpid(),
        repr(
            (
                settings.broker_url,
                settings.broker_namespace,
                settings.campaign_rate_per_second,
                settings.campaign_rate_per_hour,
            )
        ),
    )
    with _lock:
        if key not in _pacers:
            backend: RateLimiterBackend = (
                RedisBackend(url=settings.broker_url) if settings.broker_url else StubBackend()
            )
            _pacers[key] = Pacer(backend, settings, prefix=settings.broker_namespace)
        return _pacers[key]
