"""Clarion's own ActivityPub accounts: key pairs, followers, other servers' keys.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from clarion.store.schema import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fediverse_keys",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_fediverse_keys"),
    )
    op.create_table(
        "fediverse_followers",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=512), nullable=False),
        sa.Column("inbox", sa.Text(), nullable=False),
        sa.Column("shared_inbox", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("follow_id", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("username", "actor", name="pk_fediverse_followers"),
    )
    op.create_table(
        "fediverse_remote_keys",
        sa.Column("key_id", sa.String(length=512), nullable=False),
        sa.Column("actor", sa.String(length=512), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_fediverse_remote_keys"),
    )


def downgrade() -> None:
    op.drop_table("fediverse_remote_keys")
    op.drop_table("fediverse_followers")
    op.drop_table("fediverse_keys")
