"""web: stored SendGrid webhook batches

Revision ID: 0002_web
Revises: 0001
Create Date: 2026-11-26 09:31:22.204408
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.db

revision = "0002_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signed_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "outcome",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_batches")),
    )
    op.create_index(
        "ix_webhook_batches_applied_at_received_at",
        "webhook_batches",
        ["applied_at", "received_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_batches_applied_at_received_at", table_name="webhook_batches")
    op.drop_table("webhook_batches")
