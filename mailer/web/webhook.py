"""POST /webhooks/sendgrid: verify, store the raw batch, queue its id, answer. Nothing else.

This adapter never reads the events: a worker applies them (mailer/provider_events). The body
holds e-mail addresses, so it is stored in the database and only the batch id is queued
(DESIGN.md invariant 9). A bad or missing signature gets 400 and nothing is stored; a post we
could not queue gets 503, so SendGrid posts it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailer.config import get_settings
from mailer.provider_events import applying
from mailer.providers import sendgrid_webhook
from mailer.providers.errors import BadSignature
from mailer.web.forms import BodyTooLarge, read_body

log = logging.getLogger(__name__)

#: SendGrid posts batches of events well under this; anything larger is refused unread.
MAX_WEBHOOK_BODY = 8 * 1024 * 1024


def _enqueue(batch_id: int) -> None:
    from mailer import actors

    actors.apply_provider_events.send(batch_id)


def handler(clock: Callable[[], float]) -> Callable[[Request], object]:
    """The endpoint, reading the time from ``clock`` (tests replay signed vectors from the past)."""

    async def endpoint(request: Request) -> Response:
        settings = get_settings()
        public_key = settings.sendgrid_webhook_public_key
        if public_key is None:
            log.error("SendGrid webhook post refused: MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
            return PlainTextResponse("webhook not configured", 503)
        try:
            body = await read_body(request, MAX_WEBHOOK_BODY)
        except BodyTooLarge:
            return PlainTextResponse("body too large", 413)
        try:
            signed_at = sendgrid_webhook.verify(
                public_key,
                request.headers.get(sendgrid_webhook.SIGNATURE_HEADER),
                request.headers.get(sendgrid_webhook.TIMESTAMP_HEADER),
                body,
                now=clock(),
                max_age_seconds=settings.sendgrid_webhook_max_age_seconds,
            )
        except BadSignature as refusal:
            log.warning("SendGrid webhook post refused: %s", refusal)
            return PlainTextResponse("bad signature", 400)
        batch_id = await run_in_threadpool(applying.store_batch, body, signed_at)
        try:
            await run_in_threadpool(_enqueue, batch_id)
        except Exception:
            log.exception("webhook batch %d could not be queued; SendGrid will post it again", batch_id)
            await run_in_threadpool(applying.forget_batch, batch_id)
            return PlainTextResponse("could not queue the events, try again", 503)
        return Response(status_code=200)

    return endpoint
