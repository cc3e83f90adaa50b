"""consents: people may consent to tracking (measuring opens and clicks), with proof like the others

The consent tables' CHECK constraints gain 'tracking'. The change only widens what the
constraints accept: on SQLite the tables' stored definitions are edited in place (the procedure
SQLite documents for changes that leave every stored row valid), without rebuilding tables that
other tables reference.

Revision ID: 0011_tracking_consent
Revises: 0010_provider_event_keys
Create Date: 2026-12-02 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_tracking_consent"
down_revision = "0010_provider_event_keys"
branch_labels = None
depends_on = None

BEFORE = "purpose IN ('tender_alerts', 'nouma_offers', 'partner_offers')"
AFTER = "purpose IN ('tender_alerts', 'nouma_offers', 'partner_offers', 'tracking')"
TABLES = ("consent_events", "consents")


def _replace(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
        bind.exec_driver_sql("PRAGMA writable_schema=ON")
        for table in TABLES:
            bind.execute(
                sa.text(
                    "UPDATE sqlite_master SET sql = replace(sql, :old, :new) "
                    "WHERE type = 'table' AND name = :t"
                ),
                {"old": old, "new": new, "t": table},
            )
        bind.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
        bind.exec_driver_sql("PRAGMA writable_schema=OFF")
        return
    for table in TABLES:
        name = f"ck_{table}_purpose"
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, sa.text(new))


def upgrade() -> None:
    _replace(BEFORE, AFTER)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM consents WHERE purpose = 'tracking'"))
    op.execute(sa.text("DELETE FROM consent_events WHERE purpose = 'tracking'"))
    _replace(AFTER, BEFORE)
