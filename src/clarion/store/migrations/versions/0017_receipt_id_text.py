"""A platform's post id is text of any length: a longer id than 512 characters (a server's
bug or malice) could not be recorded on PostgreSQL, so the post, made, stayed `sending` until
its lease ran out and was made again, and again.

On SQLite the table is rebuilt (a column's type cannot be changed otherwise).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", recreate="auto") as batch_op:
        batch_op.alter_column(
            "receipt_id", existing_type=sa.String(length=512), type_=sa.Text(), nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", recreate="auto") as batch_op:
        batch_op.alter_column(
            "receipt_id", existing_type=sa.Text(), type_=sa.String(length=512), nullable=True
        )
