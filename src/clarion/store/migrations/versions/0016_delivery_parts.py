"""Deliveries in parts: one notice's fan-out to many subscribers on one channel is queued as
several rows, so several workers share it. Unique on (notice, channel, part).

On SQLite the table is rebuilt (a unique constraint cannot be dropped otherwise); `env.py` turns
foreign keys off around migrations there, as SQLite's documentation asks for table rebuilds.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", recreate="auto") as batch_op:
        batch_op.add_column(sa.Column("part", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_deliveries_notice_id_channel", type_="unique")
        batch_op.create_unique_constraint(
            "uq_deliveries_notice_id_channel_part", ["notice_id", "channel", "part"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", recreate="auto") as batch_op:
        batch_op.drop_constraint("uq_deliveries_notice_id_channel_part", type_="unique")
        batch_op.create_unique_constraint(
            "uq_deliveries_notice_id_channel", ["notice_id", "channel"]
        )
        batch_op.drop_column("part")
