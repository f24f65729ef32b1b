"""planned call and alert copies

Revision ID: e56c22190710
Revises: 54b1abd62755
Create Date: 2026-11-30 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'e56c22190710'
down_revision: str | None = '54b1abd62755'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'planned_call_copy',
        sa.Column('participant_id', sa.Uuid(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('lesson_day', sa.Integer(), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('due_date', sa.Date(), nullable=True),
        sa.Column('overdue_from', sa.Date(), nullable=True),
        sa.Column('lapses_after', sa.Date(), nullable=True),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('participant_id', 'number'),
    )
    op.create_table(
        'alert_copy',
        sa.Column('participant_id', sa.Uuid(), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('holds_from', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('participant_id', 'code'),
    )


def downgrade() -> None:
    op.drop_table('alert_copy')
    op.drop_table('planned_call_copy')
