"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 09:07:46.266054
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mailer.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "recipients",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("address_hash", sa.String(length=64), nullable=True),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "erased",
                name="account_state",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("created_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("erased_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("locale IN ('fr', 'en')", name=op.f("ck_recipients_locale")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipients")),
        sa.UniqueConstraint("address", name=op.f("uq_recipients_address")),
        sa.UniqueConstraint("address_hash", name=op.f("uq_recipients_address_hash")),
        sa.UniqueConstraint("external_ref", name=op.f("uq_recipients_external_ref")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "opposition",
                "unsubscribe",
                "hard_bounce",
                "spam_complaint",
                "invalid",
                "manual",
                name="suppression_reason",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("created_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "scope IN ('all', 'tender_alerts', 'nouma_offers', 'partner_offers')",
            name=op.f("ck_suppressions_scope"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("address_hash", "scope", name=op.f("uq_suppressions_address_hash_scope")),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "granted",
                "withdrawn",
                name="consent_action",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "signup_form",
                "preference_centre",
                "unsubscribe_link",
                "one_click",
                "support_request",
                "import",
                "sendgrid_event",
                "site",
                name="consent_source",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("recorded_by", sa.String(length=120), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("wording_version", sa.String(length=64), nullable=True),
        sa.Column("partner_list_version", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('tender_alerts', 'nouma_offers', 'partner_offers')",
            name=op.f("ck_consent_events_purpose"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_consent_events_recipient_id_recipients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_events_recipient_purpose_at",
            ["recipient_id", "purpose", "at", "id"],
            unique=False,
        )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("belongs_to", sa.String(length=120), nullable=False),
        sa.Column("recipient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "skipped",
                "failed",
                "unknown",
                "delivered",
                "bounced",
                "dropped",
                "complained",
                name="delivery_state",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("skip_reason", sa.String(length=80), nullable=True),
        sa.Column("provider_message_id", sa.String(length=120), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sending_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("event_at", mailer.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('tender_alerts', 'nouma_offers', 'partner_offers')",
            name=op.f("ck_deliveries_purpose"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_deliveries_recipient_id_recipients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("purpose", "belongs_to", "recipient_id", name="uq_deliveries_send_key"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_provider_message_id", ["provider_message_id"], unique=False)
        batch_op.create_index("ix_deliveries_recipient_id", ["recipient_id"], unique=False)
        batch_op.create_index("ix_deliveries_state_created_at", ["state", "created_at"], unique=False)

    op.create_table(
        "consents",
        sa.Column("recipient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("wording_version", sa.String(length=64), nullable=True),
        sa.Column("partner_list_version", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('tender_alerts', 'nouma_offers', 'partner_offers')",
            name=op.f("ck_consents_purpose"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["consent_events.id"], name=op.f("fk_consents_event_id_consent_events")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_consents_recipient_id_recipients")
        ),
        sa.PrimaryKeyConstraint("recipient_id", "purpose", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index("ix_consents_purpose_granted", ["purpose", "granted"], unique=False)

    op.create_table(
        "delivery_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider_event_id", sa.String(length=120), nullable=False),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", mailer.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_events_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
        sa.UniqueConstraint("provider_event_id", name=op.f("uq_delivery_events_provider_event_id")),
    )
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_events_delivery_id", ["delivery_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_events_delivery_id")

    op.drop_table("delivery_events")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_purpose_granted")

    op.drop_table("consents")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_state_created_at")
        batch_op.drop_index("ix_deliveries_recipient_id")
        batch_op.drop_index("ix_deliveries_provider_message_id")

    op.drop_table("deliveries")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_events_recipient_purpose_at")

    op.drop_table("consent_events")
    op.drop_table("suppressions")
    op.drop_table("recipients")
