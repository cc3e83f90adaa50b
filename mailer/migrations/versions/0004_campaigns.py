"""campaigns: campaigns, their per-locale content and batches, partner lists

Revision ID: 0004_campaigns
Revises: 0003_alerts
Create Date: 2026-11-26 09:27:36.915553
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.db

revision = "0004_campaigns"
down_revision = "0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_lists",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "partners",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_partner_lists")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("partner", sa.String(length=200), nullable=True),
        sa.Column("partner_list_version", sa.String(length=64), nullable=True),
        sa.Column("audience", sa.Text(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "draft",
                "scheduled",
                "running",
                "paused",
                "completed",
                "cancelled",
                name="campaign_state",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("send_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("queued_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recipients_total", sa.Integer(), nullable=False),
        sa.Column("batches_total", sa.Integer(), nullable=False),
        sa.Column("paused_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "paused_by",
            sa.Enum(
                "operator",
                "error_budget",
                "complaint_breaker",
                name="pause_cause",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=True,
        ),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("held_until", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
        sa.Column("breaker_after_delivery_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(purpose = 'partner_offers') = (partner IS NOT NULL AND partner_list_version IS NOT NULL)",
            name=op.f("ck_campaigns_partner"),
        ),
        sa.CheckConstraint(
            "purpose IN ('nouma_offers', 'partner_offers')", name=op.f("ck_campaigns_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["partner_list_version"],
            ["partner_lists.version"],
            name=op.f("fk_campaigns_partner_list_version_partner_lists"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index("ix_campaigns_state", ["state"], unique=False)

    op.create_table(
        "campaign_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "queued",
                "running",
                "done",
                "cancelled",
                name="campaign_batch_state",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "recipient_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("lease_until", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_batches_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_batches")),
        sa.UniqueConstraint("campaign_id", "number", name=op.f("uq_campaign_batches_campaign_id_number")),
    )
    with op.batch_alter_table("campaign_batches", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_batches_campaign_id_state", ["campaign_id", "state"], unique=False)

    op.create_table(
        "campaign_contents",
        sa.Column("campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_contents_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "locale", name=op.f("pk_campaign_contents")),
    )


def downgrade() -> None:
    op.drop_table("campaign_contents")
    with op.batch_alter_table("campaign_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_batches_campaign_id_state")

    op.drop_table("campaign_batches")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_state")

    op.drop_table("campaigns")
    op.drop_table("partner_lists")
