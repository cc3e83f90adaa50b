"""Shared fixtures: real SQLite and PostgreSQL databases, a Redis namespace, the fake SendGrid.

Every database test runs twice, on SQLite and on PostgreSQL (``db`` is parametrised). Each test
session creates its own PostgreSQL database and Redis namespace and removes them at the end; a
missing server skips locally and fails under CI=1.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The environment every mailer import sees: the embedded default, with fixed keys.
os.environ.pop("MAILER_BROKER_URL", None)
os.environ.update(
    {
        "MAILER_SECRET_KEY": "test-signing-key-newest,test-signing-key-older",
        "MAILER_EMAIL_BACKEND": "outbox",
        "MAILER_BASE_URL": "https://mailer.example.com",
    }
)

import sqlalchemy as sa

from mailer.config import reset_settings
from mailer.db import Base, dispose_engines, get_engine
from mailer.migrations import load_models

load_models()

if TYPE_CHECKING:
    from tests.fakes.sendgrid import FakeSendGrid

CI = bool(os.environ.get("CI"))
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POSTGRES_ADMIN_URL = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MAILER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be there."""
    if CI:
        pytest.fail(f"{reason} (CI=1: services are required)")
    pytest.skip(reason)


def shared_data(*parts: str) -> Path:
    """A file of ../shared/data; its absence fails in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        unavailable(f"{path} is missing")
    return path


def reset_process_state() -> None:
    from mailer.providers import get_backend

    if get_backend.cache_info().currsize:
        close = getattr(get_backend(), "close", None)
        if close is not None:
            close()
    reset_settings()
    get_backend.cache_clear()


def _upgrade(url: str) -> None:
    from mailer import migrations

    migrations.upgrade(url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'mailer.sqlite'}"
    _upgrade(url)
    yield url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    name = f"mailer_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        admin.dispose()
        unavailable(f"PostgreSQL unavailable: {error.orig}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        _upgrade(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every table (the schema stays), so each test starts from nothing."""
    engine = get_engine(url)
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                connection.execute(table.delete())
            with contextlib.suppress(sa.exc.OperationalError):
                connection.exec_driver_sql("DELETE FROM sqlite_sequence")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own outbox and re-reads the settings."""
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("MAILER_OUTBOX_DIR", str(outbox))
    reset_process_state()
    yield outbox
    reset_process_state()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated, empty database; the test runs once on SQLite and once on PostgreSQL."""
    url = request.getfixturevalue(f"{request.param}_url")
    monkeypatch.setenv("MAILER_DATABASE_URL", url)
    reset_process_state()
    truncate_all(url)
    yield url
    truncate_all(url)


@pytest.fixture
def sqlite_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated, empty SQLite database (for tests about one thing that is not the database)."""
    monkeypatch.setenv("MAILER_DATABASE_URL", sqlite_url)
    reset_process_state()
    truncate_all(sqlite_url)
    yield sqlite_url
    truncate_all(sqlite_url)


@pytest.fixture(scope="session")
def sendgrid_server() -> Iterator[FakeSendGrid]:
    """The fake SendGrid server of the whole session (tests take it through ``fake_sendgrid``)."""
    from tests.fakes.sendgrid import FakeSendGrid

    shared_data("sendgrid", "mail_send_request_schema.resolved.json")
    server = FakeSendGrid().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_sendgrid(sendgrid_server: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    """The fake SendGrid as a fresh server, with the mailer pointed at it; every body it got must
    be valid."""
    fake = sendgrid_server
    fake.reset()
    monkeypatch.setenv("MAILER_EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    monkeypatch.setenv("MAILER_SENDGRID_API_URL", fake.url)
    monkeypatch.setenv("MAILER_SENDGRID_TIMEOUT", "1.0")
    reset_process_state()
    yield fake
    assert fake.violations == [], f"payloads SendGrid would refuse: {fake.violations}"


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A Redis namespace of this test alone, deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        unavailable(f"Redis unavailable: {error}")
    namespace = f"mailer-test-{uuid.uuid4().hex[:12]}"
    try:
        yield namespace
    finally:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def stub_worker() -> Iterator[object]:
    """In-process Dramatiq worker threads on the stub broker, for actor tests."""
    import dramatiq

    from mailer.broker import broker

    broker.flush_all()
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        yield broker
    finally:
        worker.stop()
        broker.flush_all()


@contextlib.contextmanager
def counted_queries(url: str) -> Iterator[list[str]]:
    """Collect the SQL statements an engine runs inside the block."""
    statements: list[str] = []
    engine = get_engine(url)

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
