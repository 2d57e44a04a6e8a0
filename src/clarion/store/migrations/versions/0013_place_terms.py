"""Search by name: the words of each stored notice's areas and entities as `place:` terms
(new notices get them at ingest).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    from clarion.model import Notice
    from clarion.store.terms import terms_for

    conn = op.get_bind()
    notices = sa.table("notices", sa.column("id"), sa.column("data", sa.JSON()))
    terms = sa.table("notice_terms", sa.column("notice_id"), sa.column("term"))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(notices.c.id, notices.c.data)
            .where(notices.c.id > last)
            .order_by(notices.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        # An earlier migration that indexed terms (0005) runs today's `terms_for`, which has
        # place terms: skip what is there already.
        have = {
            (r.notice_id, r.term)
            for r in conn.execute(
                sa.select(terms.c.notice_id, terms.c.term).where(
                    terms.c.notice_id.in_([r.id for r in rows]), terms.c.term.like("place:%")
                )
            )
        }
        new = []
        for row in rows:
            data = row.data if isinstance(row.data, dict) else None
            if data is None:
                continue
            try:
                notice = Notice.model_validate(data)
            except ValueError:  # a row an older version stored differently: no place terms
                continue
            new += [
                {"notice_id": row.id, "term": t}
                for t in sorted(terms_for(notice))
                if t.startswith("place:") and (row.id, t) not in have
            ]
        if new:
            conn.execute(sa.insert(terms), new)
        last = rows[-1].id


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM notice_terms WHERE term LIKE 'place:%'"))
