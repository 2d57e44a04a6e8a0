"""Look a referenced message up by (sender, identifier, source) in one index.

SQLite's planner, without statistics, preferred the (source, branch) index for "this sender's
message of this identifier, in these sources", and so read every notice of the source for
each message ingested: ingest slowed as the table grew (about 1.4 ms a notice at 3,000 stored).
With the source in the lookup index, the whole condition is one index search.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notices") as batch_op:
        batch_op.drop_index("ix_notices_sender_identifier")
        batch_op.create_index(
            "ix_notices_sender_identifier_source", ["sender", "identifier", "source"]
        )


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch_op:
        batch_op.drop_index("ix_notices_sender_identifier_source")
        batch_op.create_index("ix_notices_sender_identifier", ["sender", "identifier"])
