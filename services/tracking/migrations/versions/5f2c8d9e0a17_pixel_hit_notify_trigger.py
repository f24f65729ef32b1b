"""pixel hit log: committed hits notify the hit processors by a statement trigger

The pixel appends hits with COPY, which cannot call pg_notify itself as the INSERT did; a
statement-level trigger notifies once per COPY or INSERT, at its commit (NOTIFY is
transactional), not once per row.

Revision ID: 5f2c8d9e0a17
Revises: 3b7c1f0a9d42
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '5f2c8d9e0a17'
down_revision: str | None = '3b7c1f0a9d42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION pixel_hit_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pixel_hit', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER pixel_hit_notify AFTER INSERT ON pixel_hit"
        " FOR EACH STATEMENT EXECUTE FUNCTION pixel_hit_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER pixel_hit_notify ON pixel_hit")
    op.execute("DROP FUNCTION pixel_hit_notify()")
