"""tenders: what each notice is (kind, type, eForms identifiers), its lots, descriptors, damaged text

Digests must announce calls for competition only: every tender records its notice kind. Rows
stored before count as calls for competition, which is how they were treated. eForms notices
bring their notice, procedure and changed-notice identifiers; BOAMP its descriptors.

Revision ID: 0009_notice_kinds
Revises: 0008_rights_requests
Create Date: 2026-12-02 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009_notice_kinds"
down_revision = "0008_rights_requests"
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
EMPTY_LIST = sa.text("'[]'")
NOTICE_KINDS = (
    "competition",
    "planning",
    "change",
    "cancellation",
    "result",
    "modification",
    "completion",
    "consultation",
    "direct_award",
    "registration",
)


def upgrade() -> None:
    # Columns are added in place on both databases: batch mode would rebuild the table on SQLite,
    # and dropping the old table cascades to tender_contact_keys.
    kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
    op.execute(
        "ALTER TABLE tenders ADD COLUMN notice_kind VARCHAR(16) DEFAULT 'competition' NOT NULL "
        f"CONSTRAINT ck_tenders_notice_kind CHECK (notice_kind IN ({kinds}))"
    )
    op.add_column("tenders", sa.Column("notice_type", sa.String(length=40), nullable=True))
    op.add_column("tenders", sa.Column("notice_id", sa.String(length=64), nullable=True))
    op.add_column("tenders", sa.Column("notice_version", sa.String(length=8), nullable=True))
    op.add_column("tenders", sa.Column("procedure_id", sa.String(length=64), nullable=True))
    op.add_column("tenders", sa.Column("changes_notice_id", sa.String(length=80), nullable=True))
    op.add_column("tenders", sa.Column("lots", JSON_DOC, server_default=EMPTY_LIST, nullable=False))
    op.add_column("tenders", sa.Column("descriptors", JSON_DOC, server_default=EMPTY_LIST, nullable=False))
    op.add_column(
        "tenders", sa.Column("text_damaged", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_tenders_notice_id", "tenders", ["notice_id"], unique=False)
    op.create_index("ix_tenders_procedure_id", "tenders", ["procedure_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tenders_procedure_id", table_name="tenders")
    op.drop_index("ix_tenders_notice_id", table_name="tenders")
    for name in (
        "text_damaged",
        "descriptors",
        "lots",
        "changes_notice_id",
        "procedure_id",
        "notice_version",
        "notice_id",
        "notice_type",
        "notice_kind",
    ):
        # In place too (SQLite 3.35 and later drop a column, its own CHECK with it).
        op.drop_column("tenders", name)
