"""deliveries: the sweep's index holds unsettled sends only; the message id index, sent ones only

Every send writes three row versions (pending, sending, sent), each with an entry in every
index. The sweep looks for pending and sending rows alone, and provider events look up message
ids, which only sent rows have: partial indexes skip the entries nobody reads.

Revision ID: 0006_partial_delivery_indexes
Revises: 0005_requeued_at
Create Date: 2026-11-26 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_partial_delivery_indexes"
down_revision = "0005_requeued_at"
branch_labels = None
depends_on = None

UNSETTLED = sa.text("state IN ('pending', 'sending')")
HAS_MESSAGE_ID = sa.text("provider_message_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_state_created_at")
        batch_op.drop_index("ix_deliveries_provider_message_id")
        batch_op.create_index(
            "ix_deliveries_unsettled",
            ["state", "created_at"],
            unique=False,
            postgresql_where=UNSETTLED,
            sqlite_where=UNSETTLED,
        )
        batch_op.create_index(
            "ix_deliveries_provider_message_id",
            ["provider_message_id"],
            unique=False,
            postgresql_where=HAS_MESSAGE_ID,
            sqlite_where=HAS_MESSAGE_ID,
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_provider_message_id")
        batch_op.drop_index("ix_deliveries_unsettled")
        batch_op.create_index("ix_deliveries_provider_message_id", ["provider_message_id"], unique=False)
        batch_op.create_index("ix_deliveries_state_created_at", ["state", "created_at"], unique=False)
