"""Direct subscriptions: subscribers (Web Push, e-mail), what they follow, who each story
reached and what was sent to whom.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from clarion.store.schema import BigId, UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("unsubscribe_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("p256dh", sa.String(length=128), nullable=True),
        sa.Column("auth", sa.String(length=64), nullable=True),
        sa.Column("interests", sa.JSON(), nullable=False),
        sa.Column("min_severity", sa.String(length=16), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=True),
        sa.Column("languages", sa.JSON(), nullable=True),
        sa.Column("confirm_hash", sa.String(length=64), nullable=True),
        sa.Column("confirm_sent_at", UTCDateTime(), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("last_sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.UniqueConstraint("token_hash", name="uq_subscriptions_token_hash"),
        sa.UniqueConstraint("unsubscribe_key", name="uq_subscriptions_unsubscribe_key"),
    )
    op.create_index("ix_subscriptions_address_key", "subscriptions", ["address_key"])
    op.create_table(
        "subscription_terms",
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("interest", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=255), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name="fk_subscription_terms_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint(
            "subscription_id", "interest", "term", name="pk_subscription_terms"
        ),
    )
    op.create_index("ix_subscription_terms_term", "subscription_terms", ["term", "subscription_id"])
    op.create_table(
        "subscription_points",
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name="fk_subscription_points_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint("subscription_id", name="pk_subscription_points"),
    )
    op.create_index("ix_subscription_points_lat_lon", "subscription_points", ["lat", "lon"])
    op.create_table(
        "subscription_reach",
        sa.Column("thread_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name="fk_subscription_reach_thread_id_threads"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name="fk_subscription_reach_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint(
            "thread_id", "channel", "subscription_id", name="pk_subscription_reach"
        ),
    )
    op.create_index(
        "ix_subscription_reach_subscription_id", "subscription_reach", ["subscription_id"]
    )
    op.create_table(
        "subscription_sends",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_subscription_sends_delivery_id_deliveries",
        ),
        sa.PrimaryKeyConstraint("delivery_id", "subscription_id", name="pk_subscription_sends"),
    )


def downgrade() -> None:
    op.drop_table("subscription_sends")
    op.drop_index("ix_subscription_reach_subscription_id", table_name="subscription_reach")
    op.drop_table("subscription_reach")
    op.drop_index("ix_subscription_points_lat_lon", table_name="subscription_points")
    op.drop_table("subscription_points")
    op.drop_index("ix_subscription_terms_term", table_name="subscription_terms")
    op.drop_table("subscription_terms")
    op.drop_index("ix_subscriptions_address_key", table_name="subscriptions")
    op.drop_table("subscriptions")
