"""A local HTTP server that answers POST /v3/mail/send the way SendGrid does.

It is a real server on a real socket (uvicorn), reached through the mailer's real transport. It
checks the bearer key (401), validates every body against SendGrid's official JSON Schema and the
limits the schema does not express (400 with SendGrid's error shape, recorded as a violation),
answers 202 with an X-Message-Id, and can be told to answer 400/401/413/429/5xx, to hang past the
client's timeout, or to hold a request until released.

Run on its own for benchmarks::

    python -m tests.fakes.sendgrid --port 8025 --no-validate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SCHEMA_PATH = SHARED_DATA / "sendgrid" / "mail_send_request_schema.resolved.json"

#: SendGrid limits the schema does not carry (mail/send reference).
MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
#: Seconds an idle keep-alive connection stays open (past the client pool's 5 s expiry).
KEEP_ALIVE_SECONDS = 60


def load_validator() -> Any:
    """The official schema, with its known bug patched (top-level custom_args is an object)."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    schema["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def violations_of(body: dict[str, Any], raw_size: int, validator: Any, *, ours: bool = True) -> list[str]:
    """Everything SendGrid would refuse in a mail/send body (and, with ``ours``, our own rules)."""
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(body)
    ]
    if raw_size > MAX_BODY_BYTES:
        problems.append("request body exceeds 30 MB")
    personalizations = body.get("personalizations") or []
    if len(personalizations) > MAX_PERSONALIZATIONS:
        problems.append("personalizations: more than 1000")
    seen: set[str] = set()
    for index, p in enumerate(personalizations):
        for kind in ("to", "cc", "bcc"):
            for recipient in p.get(kind) or []:
                address = str(recipient.get("email", "")).lower()
                if address in seen:
                    problems.append(f"personalizations/{index}/{kind}: {address} appears twice")
                seen.add(address)
        args = {**(body.get("custom_args") or {}), **(p.get("custom_args") or {})}
        if len(json.dumps(args).encode()) >= MAX_CUSTOM_ARGS_BYTES:
            problems.append(f"personalizations/{index}/custom_args: 10,000 bytes or more")
    content = body.get("content") or []
    if (
        content
        and content[0].get("type") != "text/plain"
        and any(c.get("type") == "text/plain" for c in content)
    ):
        problems.append("content: text/plain must come first")
    if ours:
        problems.extend(tracking_left_to_the_account(body))
    return problems


def tracking_left_to_the_account(body: dict[str, Any]) -> list[str]:
    """Not SendGrid's rule but ours: every request states its tracking, never the account's default."""
    settings = body.get("tracking_settings") or {}
    problems = []
    for name, fields in (
        ("click_tracking", ("enable", "enable_text")),
        ("open_tracking", ("enable",)),
        ("subscription_tracking", ("enable",)),
    ):
        for field_name in fields:
            if not isinstance((settings.get(name) or {}).get(field_name), bool):
                problems.append(
                    f"tracking_settings/{name}/{field_name}: not stated (the account's default applies)"
                )
    return problems


# Behaviours: what the server does with the next request.


@dataclass(frozen=True)
class Accept:
    """202 with an X-Message-Id."""


@dataclass(frozen=True)
class Reject:
    """An error status with SendGrid's error body."""

    status: int
    message: str = "Bad Request"
    field: str | None = None


@dataclass(frozen=True)
class RateLimit:
    """429 with X-RateLimit-Reset ``reset_in`` seconds from now."""

    reset_in: float = 1.0


@dataclass(frozen=True)
class Hang:
    """Read the request, then answer nothing for ``seconds`` (past the client's timeout)."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Hold:
    """Read the request, signal ``arrived``, answer 202 only once released."""


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    status: int = 0
    message_id: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def recipients(self) -> list[str]:
        return [t["email"] for p in (self.body or {}).get("personalizations", []) for t in p.get("to", [])]

    @property
    def delivery_ids(self) -> list[str]:
        return [
            p.get("custom_args", {}).get("delivery_id") for p in (self.body or {}).get("personalizations", [])
        ]


class FakeSendGrid:
    """The fake server; ``start()`` it, point ``MAILER_SENDGRID_API_URL`` at ``url``.

    One server serves a whole test session: ``reset()`` between tests gives the next one the
    state of a fresh server (starting and stopping one per test cost about a third of the suite).
    """

    def __init__(self, api_key: str = "SG.test-key", *, validate: bool = True, record: bool = True) -> None:
        self.api_key = api_key
        self.validator = load_validator() if validate else None
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.accepted_personalizations = 0
        self.request_count = 0
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        #: Bumped by reset(): a request still answering for an earlier test counts in nothing.
        self._generation = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control

    def script(self, *behaviours: Any) -> None:
        """Queue behaviours for the next requests; afterwards every request is accepted."""
        with self._lock:
            self._script.extend(behaviours)

    def release(self) -> None:
        self._released.set()

    def reset(self) -> None:
        """Forget every request, count and scripted behaviour, as a freshly started server would.

        A request an earlier test still holds is released; one still hanging answers later
        without being counted.
        """
        self._released.set()
        with self._lock:
            self._generation += 1
            self._script.clear()
            self.requests = []
            self.violations = []
            self.accepted_personalizations = 0
            self.request_count = 0
            self.arrived = threading.Event()
            self._released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def recipients(self) -> list[str]:
        """Every address of every accepted request, in order."""
        return [a for r in self.requests if r.status == 202 for a in r.recipients]

    def start(self, port: int = 0) -> FakeSendGrid:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        # Keep-alive like a real API front end (uvicorn's own default is 5 s, the very expiry of
        # httpx's pool: an idle connection then races the server's close and the send is lost).
        config = uvicorn.Config(
            self.app,
            log_level="error",
            lifespan="off",
            access_log=False,
            interface="asgi3",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake SendGrid did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- the ASGI application

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            event = await receive()
            raw += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, response_headers, payload = await self.handle(scope["method"], scope["path"], headers, raw)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in response_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if path != "/stats":
                self.request_count += 1
            behaviour = self._script.popleft() if self._script and path != "/stats" else Accept()
            generation = self._generation
            arrived, released = self.arrived, self._released
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(path=path, headers=headers, body=body, raw=raw)
        if self.record:
            with self._lock:
                if generation == self._generation:
                    self.requests.append(recorded)

        if path == "/stats":
            stats = {"requests": self.request_count, "personalizations": self.accepted_personalizations}
            return 200, {"Content-Type": "application/json"}, json.dumps(stats).encode()
        if path != "/v3/mail/send" or method != "POST":
            return self._error(recorded, 404, "Not Found")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(
                recorded, 401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if not isinstance(body, dict):
            return self._error(recorded, 400, "Bad Request", None)
        if self.validator is not None:
            problems = violations_of(body, len(raw), self.validator)
            if problems:
                with self._lock:
                    if generation == self._generation:
                        self.violations.extend(problems)
                return self._error(recorded, 400, problems[0])

        if isinstance(behaviour, Reject):
            return self._error(recorded, behaviour.status, behaviour.message, behaviour.field)
        if isinstance(behaviour, RateLimit):
            recorded.status = 429
            reset = int(time.time() + behaviour.reset_in + 0.999)
            return (
                429,
                {
                    "Content-Type": "application/json",
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
                json.dumps({"errors": [{"field": None, "message": "too many requests"}]}).encode(),
            )
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
        if isinstance(behaviour, Hold):
            arrived.set()
            while not released.is_set():
                await asyncio.sleep(0.01)
        recorded.status = 202
        recorded.message_id = secrets.token_urlsafe(16)
        with self._lock:
            if generation == self._generation:
                self.accepted_personalizations += len(body.get("personalizations") or [])
        return 202, {"X-Message-Id": recorded.message_id, "Content-Length": "0"}, b""

    def _error(
        self, recorded: RecordedRequest, status: int, message: str, field_name: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        recorded.status = status
        body = {"errors": [{"message": message, "field": field_name, "help": None}]}
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake of SendGrid's mail/send endpoint.")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--api-key", default="SG.test-key")
    parser.add_argument("--no-validate", action="store_true", help="skip schema validation (benchmarks)")
    args = parser.parse_args()
    fake = FakeSendGrid(args.api_key, validate=not args.no_validate, record=False).start(args.port)
    print(f"fake SendGrid on {fake.url}", flush=True)
    try:
        while True:
            time.sleep(5)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
