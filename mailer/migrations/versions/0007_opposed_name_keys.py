"""article 5: every spelling of an opposed name; tender contact keys computed with spellings

An opposition by name was one hash of the name's words, found only where a contact's text held
all of them: "Mme Chich-Bourgine" or "echichbourgine@..." slipped through. Each name entry now has
a key per spelling (``opposed_name_keys``) and tenders are keyed by the spellings of their
contact. Entries recorded before this revision keep matching the full name in any order; recording
the name again (``mailer suppress add-name``) gives them every other spelling.

Revision ID: 0007_opposed_name_keys
Revises: 0006_partial_delivery_indexes
Create Date: 2026-12-02 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_opposed_name_keys"
down_revision = "0006_partial_delivery_indexes"
branch_labels = None
depends_on = None

#: Tenders rekeyed per statement.
REKEY_BATCH = 2000

_tenders = sa.table(
    "tenders", sa.column("id", sa.BigInteger), sa.column("contact_name"), sa.column("contact_email")
)
_keys = sa.table("tender_contact_keys", sa.column("tender_id", sa.BigInteger), sa.column("key"))


def upgrade() -> None:
    op.create_table(
        "opposed_name_keys",
        sa.Column("suppression_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["suppression_id"],
            ["suppressions.id"],
            name=op.f("fk_opposed_name_keys_suppression_id_suppressions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("suppression_id", "key", name=op.f("pk_opposed_name_keys")),
    )
    with op.batch_alter_table("opposed_name_keys", schema=None) as batch_op:
        batch_op.create_index("ix_opposed_name_keys_key", ["key"], unique=False)
    _rekey_tenders()


def _rekey_tenders() -> None:
    """Every tender's contact keys again, with the spellings of this revision's code."""
    from mailer.suppression.contacts import contact_keys

    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(_tenders.c.id, _tenders.c.contact_name, _tenders.c.contact_email)
            .where(_tenders.c.id > last)
            .order_by(_tenders.c.id)
            .limit(REKEY_BATCH)
        ).all()
        if not rows:
            return
        ids = [row.id for row in rows]
        bind.execute(sa.delete(_keys).where(_keys.c.tender_id.in_(ids)))
        keys = [
            {"tender_id": r.id, "key": k} for r in rows for k in contact_keys(r.contact_name, r.contact_email)
        ]
        if keys:
            bind.execute(sa.insert(_keys), keys)
        last = ids[-1]


def downgrade() -> None:
    with op.batch_alter_table("opposed_name_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_opposed_name_keys_key")
    op.drop_table("opposed_name_keys")
