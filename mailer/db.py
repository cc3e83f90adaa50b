"""Engine, session scope, naming convention and the column types shared by every table."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.adapt import Dumper
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from mailer.config import get_settings

#: PostgreSQL's type oid of ``bigint[]``.
INT8_ARRAY_OID = 1016

#: Constraint names are deterministic so Alembic can find them again on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: How long a SQLite writer waits for the lock held by another thread or process.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: A 64-bit id on PostgreSQL; SQLite needs INTEGER for its rowid alias to autoincrement.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: Raw payloads: JSONB on PostgreSQL, JSON text on SQLite.
JSONDoc = sa.JSON().with_variant(JSONB(), "postgresql")


def enum_column(cls: type[enum.Enum], name: str, *, length: int = 24) -> sa.Enum:
    """A VARCHAR with a CHECK on both databases: values stay readable, adding one is a migration."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression: ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utcnow() -> dt.datetime:
    """Now, in UTC, timezone-aware."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


#: Execution option marking a transaction that only reads (SQLite then takes no write lock).
READONLY_OPTION = "mailer_readonly"

_engines: dict[str, Engine] = {}
_sessionmakers: dict[tuple[str, bool], sessionmaker[Session]] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling defers BEGIN and upgrades locks late, which makes
    # concurrent writers fail with "database is locked"; SQLAlchemy emits BEGIN IMMEDIATE instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # Readers take no lock in WAL mode; writers queue on the lock from their first statement.
    if connection.get_execution_options().get(READONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> Engine:
    """A new engine for a database URL, with the pragmas and pool this project relies on."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for a URL (the configured one by default), created once."""
    url = url or get_settings().database_url
    with _lock:
        if url not in _engines:
            engine = _engines[url] = create_engine(url)
            _sessionmakers[(url, False)] = sessionmaker(engine, expire_on_commit=False)
            _sessionmakers[(url, True)] = sessionmaker(
                engine.execution_options(**{READONLY_OPTION: True}), expire_on_commit=False
            )
        return _engines[url]


@contextlib.contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back on error.

    ``readonly`` sessions must not write; on SQLite they then never wait for the write lock.
    """
    url = url or get_settings().database_url
    get_engine(url)
    with _sessionmakers[(url, readonly)]() as session, session.begin():
        yield session


def dispose_engines() -> None:
    """Close every pooled connection (after fork, and when tests switch databases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()


class _Ids(list[int]):
    """Ids bound as one ``bigint[]`` parameter (PostgreSQL)."""


class _IdsDumper(Dumper):
    """``{1,2,3}`` typed ``bigint[]``: PostgreSQL parses it once, when the statement is bound.

    psycopg's generic list dumper inspects and converts every element in Python (about 1 ms for a
    thousand ids); the text of a list of ints is one ``join``.
    """

    oid = INT8_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        return ("{" + ",".join(map(str, map(int, obj))) + "}").encode("ascii")


psycopg.adapters.register_dumper(_Ids, _IdsDumper)


class IdArray(sa.types.TypeDecorator[list[int]]):
    """A ``bigint[]`` bind parameter holding ids, dumped by ``_IdsDumper``."""

    impl = ARRAY(sa.BigInteger())
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        return _Ids


def id_in(session: Session, column: Any, ids: Iterable[int]) -> sa.ColumnElement[bool]:
    """``column IN (ids)`` for up to a batch of ids; one array parameter on PostgreSQL.

    A thousand-placeholder IN list is rendered by SQLAlchemy and parsed by psycopg on every call
    (psycopg caches only short statements): ~8 ms of CPU each. ``= ANY(%(ids)s)`` is one short,
    cached statement carrying one array.
    """
    values = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(values, type_=IdArray()))
    return column.in_(values)


def id_text_rows(session: Session, rows: Sequence[tuple[int, str | None]], name: str) -> sa.Subquery:
    """``(id, value)`` pairs as a subquery of two columns, ``id`` and ``value``, in one parameter
    per column: two arrays on PostgreSQL, one JSON document on SQLite. For ``UPDATE ... FROM``
    setting a different value on each of many rows in one statement."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.select(
            sa.func.unnest(sa.literal([i for i, _ in rows], type_=IdArray())).label("id"),
            sa.func.unnest(sa.literal([v for _, v in rows], type_=ARRAY(sa.Text()))).label("value"),
        ).subquery(name)
    pairs = (
        sa.func.json_each(sa.literal(json.dumps(list(rows)), sa.Text()))
        .table_valued("value")
        .alias(f"{name}_json")
    )
    return (
        sa.select(
            sa.cast(sa.func.json_extract(pairs.c.value, "$[0]"), sa.BigInteger()).label("id"),
            sa.func.json_extract(pairs.c.value, "$[1]").label("value"),
        )
        .select_from(pairs)
        .subquery(name)
    )


def state_is(column: Any, value: str) -> sa.ColumnElement[bool]:
    """``column = value`` for a row already found by id, kept out of the planner's index choice.

    Every send passes through pending and sending: until vacuum runs, the state index holds an
    entry per past row version, a million after a large campaign. Offered ``state = 'pending'``
    beside a list of ids, PostgreSQL scanned those (bitmap scans never skip dead entries): 60 to
    80 ms a statement instead of a thousand primary-key lookups. ``state || ''`` is the same test
    that no index matches.
    """
    return column.op("||", return_type=sa.String())(sa.literal("", sa.String())) == sa.literal(
        str(value), sa.String()
    )


def in_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items (bound-parameter limits, batch sizes)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class json_array_values(sa.sql.functions.GenericFunction[Any]):
    """The text values of a JSON array column, as rows of one ``value`` column (set-returning).

    SQLite: ``json_each``; PostgreSQL: ``jsonb_array_elements_text``. Both may name a column of a
    table listed before them in FROM, so ``FROM t, json_array_values(t.col)`` unnests each row.
    """

    name = "json_array_values"
    inherit_cache = True


@compiles(json_array_values, "sqlite")
def _json_array_values_sqlite(element: json_array_values, compiler: Any, **kw: Any) -> str:
    return f"json_each({compiler.process(element.clauses, **kw)})"


@compiles(json_array_values, "postgresql")
def _json_array_values_postgresql(element: json_array_values, compiler: Any, **kw: Any) -> str:
    return f"jsonb_array_elements_text({compiler.process(element.clauses, **kw)})"
