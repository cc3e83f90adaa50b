"""Alembic migrations, shipped inside the package; run with ``mailer db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from mailer.config import get_settings

HERE = Path(__file__).parent

#: Every module that declares tables; Alembic and the tests load them all.
MODEL_MODULES = (
    "mailer.models",
    "mailer.provider_events.models",
    "mailer.alerts.models",
    "mailer.suppression.models",
    "mailer.rights.models",
    "mailer.campaigns.models",
)


def load_models() -> None:
    """Import every model module so the shared metadata holds every table."""
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(name)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for a database URL (the configured one by default)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database schema up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def check(url: str | None = None) -> None:
    """Raise when the models hold a change no migration carries (``alembic check``)."""
    command.check(alembic_config(url))


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    from mailer.db import get_engine

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
