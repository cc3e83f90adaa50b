"""The web process: unsubscribe links, preference centre, providers' event webhooks, health.

Started by the Procfile's ``web`` line (uvicorn, ``--factory mailer.web:create_app``). With the
in-process broker (embedded default) it also runs worker threads, so webhook batches it queues
are applied in the same process.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.db import session_scope
from mailer.providers.registry import WEBHOOK_SOURCES
from mailer.web import links, pages, webhook

log = logging.getLogger("mailer.web")

#: Headers on every answer. Tokens in our URLs are credentials: never sent on as a Referer, never
#: cached, never indexed; pages load nothing from elsewhere and run no script.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "x-robots-tag": "noindex, nofollow",
}

_TOKEN_PATH = re.compile(r"^/(u|preferences)/[^/]+")


class GuardMiddleware:
    """Adds SECURITY_HEADERS and logs each request with its link token left out; an unhandled
    error becomes the error page, with the same headers, and one log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as error:
            # One line, no traceback, no token: the details stay at DEBUG for whoever looks
            status = 500
            log.error("%s %s failed: %s", scope.get("method"), _safe_path(scope), type(error).__name__)
            log.debug("the request failed", exc_info=True)
            if not started_response:
                page = pages.render("error.html", pages.default_locale(), {"status": 500}, status=500)
                await page(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %d %.1f ms",
                scope.get("method"),
                _safe_path(scope),
                status,
                (time.perf_counter() - started) * 1000,
            )


def _safe_path(scope: Scope) -> str:
    """The request's path with any link token left out."""
    return _TOKEN_PATH.sub(r"/\1/<token>", scope.get("path", ""))


async def healthz(request: Request) -> Response:
    """GET /healthz: 200 when the database answers, 503 otherwise."""

    def ping() -> None:
        with session_scope(readonly=True) as session:
            session.execute(sa.text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception as error:
        log.error("health check: database unavailable: %r", error)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def _error_page(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return pages.render("error.html", pages.default_locale(), {"status": status}, status=status)


def routes(clock: Callable[[], float]) -> list[Route]:
    return [
        Route("/u/{token}", links.unsubscribe_page, methods=["GET"], name="unsubscribe_page"),
        Route("/u/{token}", links.one_click, methods=["POST"], name="one_click"),
        Route("/u/{token}/confirm", links.unsubscribe_confirm, methods=["POST"], name="unsubscribe_confirm"),
        Route("/u/{token}/undo", links.unsubscribe_undo, methods=["POST"], name="unsubscribe_undo"),
        Route("/preferences/{token}", links.preferences_page, methods=["GET"], name="preferences"),
        Route("/preferences/{token}", links.preferences_save, methods=["POST"], name="preferences_save"),
        Route("/preferences/{token}/stop", links.preferences_stop, methods=["POST"], name="preferences_stop"),
        *(
            Route(f"/webhooks/{name}", webhook.handler(name, clock), methods=["POST"], name=f"{name}_webhook")
            for name in WEBHOOK_SOURCES
        ),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
    ]


def create_app(*, clock: Callable[[], float] = time.time, run_worker: bool | None = None) -> Starlette:
    """The ASGI application. ``run_worker``: in-process worker threads (default: embedded broker)."""
    from mailer import actors  # noqa: F401  (sets the broker, declares the actors)
    from mailer.broker import embedded_worker, is_embedded

    with_worker = is_embedded() if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if not with_worker:
            yield {}
            return
        # Webhook batches queued by this process are applied by these threads.
        manager = embedded_worker()
        manager.__enter__()
        try:
            yield {}
        finally:
            manager.__exit__(None, None, None)

    app = Starlette(
        routes=routes(clock),
        lifespan=lifespan,
        exception_handlers={404: _error_page, 405: _error_page, 500: _error_page},
    )
    app.add_middleware(GuardMiddleware)
    return app
