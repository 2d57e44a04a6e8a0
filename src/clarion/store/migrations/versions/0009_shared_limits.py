"""Rate limits shared by every worker and web replica: channel token buckets and pauses, and
the REST API's hourly windows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from clarion.store.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", UTCDateTime(), nullable=False),
        sa.Column("paused_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("channel", name="pk_rate_buckets"),
    )
    op.create_table(
        "api_usage",
        sa.Column("who", sa.String(length=160), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("who", "window_start", name="pk_api_usage"),
    )


def downgrade() -> None:
    op.drop_table("api_usage")
    op.drop_table("rate_buckets")
