"""Push receipts: the webhook-ids of pushed notices already accepted (replay protection).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from clarion.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_receipts",
        sa.Column("webhook_id", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_push_receipts")),
    )
    with op.batch_alter_table("push_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_receipts_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_receipts_received_at"))
    op.drop_table("push_receipts")
