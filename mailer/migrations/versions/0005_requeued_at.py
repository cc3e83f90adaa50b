"""deliveries: requeued_at

Revision ID: 0005_requeued_at
Revises: 0004_campaigns
Create Date: 2026-11-26 12:17:08.549444
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.db

revision = "0005_requeued_at"
down_revision = "0004_campaigns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requeued_at", mailer.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("requeued_at")
