"""POST /webhooks/<source>: verify, store the raw batch, queue its id, answer. Nothing else.

One route per webhook source the providers' registry names (``/webhooks/sendgrid``). This
adapter never reads the events: a worker applies them (mailer/provider_events). The body holds
e-mail addresses, so it is stored in the database and only the batch id is queued (DESIGN.md
invariant 9). A bad or missing signature gets 400 and nothing is stored; a post we could not
queue gets 503, so the provider posts it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailer.provider_events import batches
from mailer.providers import BadSignature, webhook_source
from mailer.providers.errors import WebhookNotConfigured
from mailer.web.forms import BodyTooLarge, read_body

log = logging.getLogger(__name__)


def _enqueue(batch_id: int) -> None:
    from mailer import actors

    actors.apply_provider_events.send(batch_id)


def handler(name: str, clock: Callable[[], float]) -> Callable[[Request], object]:
    """The endpoint of source ``name``, reading the time from ``clock`` (tests replay signed
    vectors from the past)."""

    async def endpoint(request: Request) -> Response:
        source = webhook_source(name)
        try:
            source.check_configured()
        except WebhookNotConfigured as missing:
            log.error("%s webhook post refused: %s", source.label, missing)
            return PlainTextResponse("webhook not configured", 503)
        try:
            body = await read_body(request, source.max_body_bytes)
        except BodyTooLarge:
            return PlainTextResponse("body too large", 413)
        try:
            signed_at = source.verify(request.headers, body, now=clock())
        except BadSignature as refusal:
            log.warning("%s webhook post refused: %s", source.label, refusal)
            return PlainTextResponse("bad signature", 400)
        batch_id = await run_in_threadpool(batches.store_batch, name, body, signed_at)
        try:
            await run_in_threadpool(_enqueue, batch_id)
        except Exception:
            log.exception(
                "webhook batch %d could not be queued; %s will post it again", batch_id, source.label
            )
            await run_in_threadpool(batches.forget_batch, batch_id)
            return PlainTextResponse("could not queue the events, try again", 503)
        return Response(status_code=200)

    return endpoint
