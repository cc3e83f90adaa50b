"""The Dramatiq broker, chosen from the configuration before any actor is declared.

Unset ``MAILER_BROKER_URL``: an in-process broker whose worker threads run inside the command
(the embedded default: nothing to start). ``redis://...``: the Redis broker, shared by every
worker process on every machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, default_middleware

from mailer.config import Settings, get_settings

#: Tender alerts and one-off messages: the lane that must never wait behind a campaign.
DELIVERY_QUEUE = "deliveries"
#: Sweeps and other upkeep.
MAINTENANCE_QUEUE = "maintenance"
#: Provider webhook batches: unsubscribes and complaints must not wait behind a campaign.
PROVIDER_EVENTS_QUEUE = "provider_events"
#: Campaign batches: their own lane, so a million-recipient campaign never delays tender alerts.
CAMPAIGN_QUEUE = "campaigns"

#: How long the embedded worker waits for the queues to drain (ms): covers a few 429 retries.
EMBEDDED_JOIN_TIMEOUT_MS = 600_000


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A broker for these settings, with the middleware every actor relies on."""
    middleware = [m() for m in default_middleware] + [CurrentMessage()]
    if settings.broker_url is None:
        # Messages that fail for good stay on the stub's dead-letter list; the delivery records
        # already hold what happened, so joining never raises them.
        return StubBroker(middleware=middleware, fail_fast_default=False)
    return RedisBroker(url=settings.broker_url, namespace=settings.broker_namespace, middleware=middleware)


broker = build_broker(get_settings())
dramatiq.set_broker(broker)


def is_embedded() -> bool:
    """Whether messages are processed in this process (no separate worker to wait for)."""
    return isinstance(broker, StubBroker)


@contextlib.contextmanager
def embedded_worker(threads: int | None = None) -> Iterator[dramatiq.Worker | None]:
    """Run in-process worker threads for the block, and wait for the queues to drain at its end.

    With the Redis broker, workers are separate processes: the block runs as is.
    """
    if not isinstance(broker, StubBroker):
        yield None
        return
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(
        broker, worker_threads=threads or get_settings().embedded_worker_threads, worker_timeout=50
    )
    worker.start()
    try:
        yield worker
        # Work may queue more work (a digest run queues its batches): join again until one pass
        # finds every queue empty.
        while True:
            names = [name for name in list(broker.queues) if not name.endswith(".DQ")]
            for queue_name in names:
                broker.join(queue_name, timeout=EMBEDDED_JOIN_TIMEOUT_MS)
            if all(broker.queues[name].unfinished_tasks == 0 for name in names):
                break
        worker.join()
    finally:
        worker.stop()
