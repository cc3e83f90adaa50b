"""delivery_events: an event is unique per (provider, provider event id), not across providers

Every event so far came from SendGrid's webhook: existing rows are SendGrid's. A second
provider's event ids are its own, and may equal one of SendGrid's.

Revision ID: 0010_provider_event_keys
Revises: 0009_notice_kinds
Create Date: 2026-12-02 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_provider_event_keys"
down_revision = "0009_notice_kinds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider", sa.String(length=20), nullable=False, server_default="sendgrid")
        )
        batch_op.drop_constraint("uq_delivery_events_provider_event_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_delivery_events_provider_provider_event_id", ["provider", "provider_event_id"]
        )
    # The default only filled the existing rows: every new one names its provider.
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.alter_column("provider", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_events_provider_provider_event_id", type_="unique")
        batch_op.create_unique_constraint("uq_delivery_events_provider_event_id", ["provider_event_id"])
        batch_op.drop_column("provider")
