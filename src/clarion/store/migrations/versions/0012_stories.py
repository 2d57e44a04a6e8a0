"""Stories that match real feeds: branches (NWS segments),
references kept for late arrivals, items seen forever, items rejected one by one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from clarion.store.schema import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("branch", sa.String(length=16), nullable=False, server_default="live")
        )
        batch_op.add_column(sa.Column("over_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("ancestors", sa.JSON(), nullable=True))
        batch_op.create_index("ix_notices_source_branch", ["source", "branch"], unique=False)
    op.create_table(
        "notice_refs",
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name="fk_notice_refs_notice_id_notices"
        ),
        sa.PrimaryKeyConstraint("notice_id", "ref", name="pk_notice_refs"),
    )
    with op.batch_alter_table("notice_refs", schema=None) as batch_op:
        batch_op.create_index("ix_notice_refs_ref", ["ref"], unique=False)
    op.create_table(
        "seen_items",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("item", sa.String(length=512), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "item", name="pk_seen_items"),
    )
    op.create_table(
        "rejected_items",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("item", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "item", name="pk_rejected_items"),
    )
    with op.batch_alter_table("rejected_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rejected_items_last_at"), ["last_at"], unique=False)
    _backfill()
    # Push receipts keyed by (source, webhook-id): an id one source used no longer makes another
    # source's signed notice a "duplicate" (which acknowledged it and dropped it).
    receipts = sa.table(
        "push_receipts",
        sa.column("webhook_id", sa.String()),
        sa.column("source", sa.String()),
        sa.column("received_at", UTCDateTime()),
    )
    conn = op.get_bind()
    kept = [dict(r._mapping) for r in conn.execute(sa.select(receipts))]
    with op.batch_alter_table("push_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_receipts_received_at"))
    op.drop_table("push_receipts")
    op.create_table(
        "push_receipts",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("webhook_id", sa.String(length=256), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "webhook_id", name=op.f("pk_push_receipts")),
    )
    with op.batch_alter_table("push_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_receipts_received_at"), ["received_at"], unique=False
        )
    if kept:
        op.bulk_insert(receipts, kept)


def _backfill() -> None:
    """Stories stored before branches were linear: each message replaced the one before it."""
    conn = op.get_bind()
    n = sa.table(
        "notices",
        sa.column("id", sa.BigInteger()),
        sa.column("thread_id", sa.BigInteger()),
        sa.column("version", sa.Integer()),
        sa.column("msg_type", sa.String()),
        sa.column("expires", UTCDateTime()),
        sa.column("branch", sa.String()),
        sa.column("over_at", UTCDateTime()),
        sa.column("ancestors", sa.JSON()),
    )
    rows = conn.execute(
        sa.select(n.c.id, n.c.thread_id, n.c.msg_type, n.c.expires).order_by(
            n.c.thread_id, n.c.version
        )
    ).all()
    by_thread: dict[int, list[Any]] = {}
    for r in rows:
        by_thread.setdefault(r.thread_id, []).append(r)
    for versions in by_thread.values():
        for i, r in enumerate(versions):
            last = i == len(versions) - 1
            branch = (
                "replaced"
                if not last
                else ("closed" if r.msg_type in ("cancel", "end") else "live")
            )
            conn.execute(
                sa.update(n)
                .where(n.c.id == r.id)
                .values(
                    branch=branch,
                    over_at=r.expires,
                    ancestors=[v.id for v in versions[:i]],
                )
            )


def downgrade() -> None:
    op.drop_table("rejected_items")
    op.drop_table("seen_items")
    op.drop_table("notice_refs")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_source_branch")
        batch_op.drop_column("ancestors")
        batch_op.drop_column("over_at")
        batch_op.drop_column("branch")
