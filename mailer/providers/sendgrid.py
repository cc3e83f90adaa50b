"""SendGrid v3 mail/send: payloads from the official helpers, one pooled keep-alive client a process.

The official client opens a new TLS connection and reloads the CA bundle on every request
(~59 ms CPU each, measured on this machine); a pooled httpx client costs ~1.2 ms. So the payload
comes from ``sendgrid.helpers.mail`` and the transport is ours.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx
import orjson
from sendgrid.helpers.mail import (
    Asm,
    Category,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    Subject,
    To,
)

from mailer.config import Settings
from mailer.message import Envelope, OutgoingMessage
from mailer.providers.backend import Backend, ProviderLimits
from mailer.providers.errors import (
    AmbiguousSendError,
    KeyRefused,
    PermanentSendError,
    RateLimited,
    TransientSendError,
)

SEND_PATH = "/v3/mail/send"

#: SendGrid's limits on one request (mail/send reference): personalizations, and the bytes of
#: one personalization's substitutions and of its custom args.
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000

#: Seconds to open a connection: a refused or unreachable API is known fast and safe to retry.
CONNECT_TIMEOUT = 5.0

#: Keep-alive connections per process: one per worker thread is enough.
POOL_SIZE = 16

#: 429 without a usable reset header: wait this long (ms) before trying again.
DEFAULT_RATE_LIMIT_DELAY_MS = 1_000
#: Never wait longer than this (ms) on one 429, whatever the header says.
MAX_RATE_LIMIT_DELAY_MS = 600_000

#: Statuses meaning SendGrid refuses our API key (revoked, or without the mail.send scope).
KEY_REFUSED_STATUSES = frozenset({401, 403})


def build_payload(message: OutgoingMessage, settings: Settings) -> dict[str, Any]:
    """The mail/send body for a message, built with the official helpers."""
    if not 1 <= len(message.envelopes) <= MAX_PERSONALIZATIONS:
        raise ValueError(f"a request carries 1 to {MAX_PERSONALIZATIONS} recipients")
    mail = Mail()
    mail.from_email = From(settings.from_email, settings.from_name)
    mail.subject = Subject(message.subject)
    # SendGrid requires text/plain before text/html in "content".
    mail.add_content(PlainTextContent(message.text))
    mail.add_content(HtmlContent(message.html))
    for name, value in message.headers.items():
        mail.add_header(Header(name, value))
    mail.add_category(Category(message.kind))
    mail.add_category(Category(message.purpose))
    group = settings.asm_group(message.purpose)
    if group is not None:
        mail.asm = Asm(group)
    body = dict(mail.get())
    body["tracking_settings"] = tracking_settings(message.tracking)
    # A thousand Personalization objects cost ~30 ms a batch; the same JSON built directly costs
    # a tenth (tests/test_sendgrid_payload.py checks it equals the helper's, field for field).
    body["personalizations"] = [personalization(envelope) for envelope in message.envelopes]
    return body


def tracking_settings(measured: bool) -> dict[str, Any]:
    """Every tracking SendGrid could add, stated: never the account's defaults. Opens and clicks
    are measured only for recipients who consented (the request holds only such recipients);
    SendGrid's own unsubscribe footer and Google Analytics parameters never (our links do that)."""
    return {
        "click_tracking": {"enable": measured, "enable_text": measured},
        "open_tracking": {"enable": measured},
        "subscription_tracking": {"enable": False},
        "ganalytics": {"enable": False},
    }


def personalization(envelope: Envelope) -> dict[str, Any]:
    """One recipient's personalization, as ``sendgrid.helpers.mail.Personalization.get()`` makes it."""
    if envelope.to_name:
        # What To(address, name).get() gives when there is a name (without one, it parses the address).
        to = {"name": envelope.to_name, "email": envelope.to_address}
    else:
        to = To(envelope.to_address).get()
    result: dict[str, Any] = {"to": [to]}
    # The envelope's own dicts: the body is encoded at once and never changed.
    if envelope.headers:
        result["headers"] = envelope.headers
    if envelope.substitutions:
        result["substitutions"] = envelope.substitutions
    # Our id, echoed on every event of this recipient: the only correlation SendGrid offers
    # (one X-Message-Id covers the whole request). Ids only: custom_args are not private.
    result["custom_args"] = {"delivery_id": str(envelope.delivery_id)}
    return result


class SendGridBackend(Backend):
    """Posts mail/send through one pooled keep-alive HTTP client per process."""

    name = "sendgrid"
    label = "SendGrid"
    limits = ProviderLimits(
        max_recipients=MAX_PERSONALIZATIONS,
        substitutes_per_recipient=True,
        max_substitution_bytes=MAX_SUBSTITUTION_BYTES,
        max_custom_args_bytes=MAX_CUSTOM_ARGS_BYTES,
    )

    def __init__(self, settings: Settings) -> None:
        if settings.sendgrid_api_key is None:
            raise ValueError("SENDGRID_API_KEY is required for the sendgrid backend")
        self.settings = settings
        self._api_key = settings.sendgrid_api_key
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridBackend:
        return cls(settings)

    @property
    def client(self) -> httpx.Client:
        """The process's client; a forked child builds its own (sockets don't survive fork)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = httpx.Client(
                    base_url=self.settings.sendgrid_api_url,
                    headers={
                        "Authorization": f"Bearer {self._api_key.get_secret_value()}",
                        "Content-Type": "application/json",
                        "User-Agent": "nouma-mailer",
                    },
                    timeout=httpx.Timeout(self.settings.sendgrid_timeout, connect=CONNECT_TIMEOUT),
                    limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
                )
                self._pid = os.getpid()
            return self._client

    def send(self, message: OutgoingMessage) -> str:
        # orjson: a thousand personalizations encode in a tenth of json.dumps's time.
        body = orjson.dumps(build_payload(message, self.settings))
        try:
            response = self.client.post(SEND_PATH, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # Nothing reached SendGrid: safe to try again.
            raise TransientSendError(f"SendGrid unreachable: {error!r}") from error
        except (httpx.WriteError, httpx.WriteTimeout) as error:
            # The body never fully left; SendGrid acts only on a complete request.
            raise TransientSendError(f"request not fully written: {error!r}") from error
        except httpx.TransportError as error:
            # Written, then no answer (read timeout, connection dropped): SendGrid may have
            # accepted it and has no idempotency key, so sending again could send twice.
            raise AmbiguousSendError(f"no answer from SendGrid: {error!r}") from error
        return self._outcome(response)

    @staticmethod
    def _outcome(response: httpx.Response) -> str:
        status = response.status_code
        if status in (200, 202):
            # X-Message-Id names the whole request; events add a suffix per recipient.
            return response.headers.get("X-Message-Id", "")
        detail = f"{status}: {error_text(response)}"
        if status == 429:
            raise RateLimited(detail, retry_after_ms(response), status_code=status)
        if status >= 500:
            raise TransientSendError(detail, status_code=status)
        if status in KEY_REFUSED_STATUSES:
            raise KeyRefused(detail, status_code=status)
        if 400 <= status < 500:
            # The same request can never succeed (400, 404, 413, ...): record it, do not retry.
            raise PermanentSendError(detail, status_code=status)
        raise TransientSendError(f"unexpected answer {detail}", status_code=status)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def error_text(response: httpx.Response) -> str:
    """SendGrid's own words from an error body (``errors[].field`` and ``message``)."""
    try:
        errors = response.json().get("errors") or []
        parts = []
        for error in errors:
            field = error.get("field")
            text = error.get("message") or ""
            parts.append(f"{field}: {text}" if field else text)
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return response.text[:500] or response.reason_phrase


def retry_after_ms(response: httpx.Response, now: float | None = None) -> int:
    """How long SendGrid asked us to wait, from Retry-After or X-RateLimit-Reset (epoch seconds)."""
    now = time.time() if now is None else now
    delay: float | None = None
    retry_after = response.headers.get("Retry-After")
    reset = response.headers.get("X-RateLimit-Reset")
    try:
        if retry_after is not None:
            delay = float(retry_after) * 1000
        elif reset is not None:
            delay = (float(reset) - now) * 1000
    except ValueError:
        delay = None
    if delay is None or delay <= 0:
        return DEFAULT_RATE_LIMIT_DELAY_MS
    return int(min(max(delay, DEFAULT_RATE_LIMIT_DELAY_MS), MAX_RATE_LIMIT_DELAY_MS))
