"""Filterable terms of each notice (category, area geocode, route/entity, language).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice_terms",
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name="fk_notice_terms_notice_id_notices"
        ),
        sa.PrimaryKeyConstraint("notice_id", "term", name="pk_notice_terms"),
    )
    op.create_index("ix_notice_terms_term", "notice_terms", ["term", "notice_id"])
    # Backfill from the notices already stored (their JSON holds everything needed).
    from clarion.model import Notice
    from clarion.store.terms import terms_for

    conn = op.get_bind()
    notices = sa.table("notices", sa.column("id"), sa.column("data", sa.JSON))
    terms = sa.table("notice_terms", sa.column("notice_id"), sa.column("term"))
    for row in conn.execute(sa.select(notices.c.id, notices.c.data)):
        notice = Notice.model_validate(row.data)
        rows = [{"notice_id": row.id, "term": t} for t in sorted(terms_for(notice))]
        if rows:
            conn.execute(sa.insert(terms), rows)


def downgrade() -> None:
    op.drop_index("ix_notice_terms_term", table_name="notice_terms")
    op.drop_table("notice_terms")
