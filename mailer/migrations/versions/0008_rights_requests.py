"""rights_requests: the support desk's trail of the rights it exercised, by address hash

Revision ID: 0008_rights_requests
Revises: 0007_opposed_name_keys
Create Date: 2026-12-02 14:06:29.713660
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.db

revision = "0008_rights_requests"
down_revision = "0007_opposed_name_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "access",
                "opposition",
                "rectification",
                "erasure",
                name="right_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("new_subject_hash", sa.String(length=64), nullable=True),
        sa.Column("recipient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("scope", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("operator", sa.String(length=120), nullable=True),
        sa.Column("at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rights_requests")),
    )
    with op.batch_alter_table("rights_requests", schema=None) as batch_op:
        batch_op.create_index("ix_rights_requests_subject_hash", ["subject_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rights_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_rights_requests_subject_hash")

    op.drop_table("rights_requests")
