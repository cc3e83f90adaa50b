"""Alembic environment: one database URL, batch mode on SQLite so ALTER works there too."""

from __future__ import annotations

from alembic import context

from mailer.db import Base, get_engine
from mailer.migrations import load_models

load_models()

config = context.config
url = config.get_main_option("sqlalchemy.url")


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
