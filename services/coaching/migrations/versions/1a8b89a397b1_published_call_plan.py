"""published call plan and alerts; organisation slug

Revision ID: 1a8b89a397b1
Revises: 2b0babe66cb0
Create Date: 2026-11-30 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '1a8b89a397b1'
down_revision: str | None = '2b0babe66cb0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'published_call',
        sa.Column('participant_id', sa.Uuid(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('due_date', sa.Date(), nullable=True),
        sa.Column('lapses_after', sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint('participant_id', 'number'),
    )
    op.create_table(
        'published_alert',
        sa.Column('participant_id', sa.Uuid(), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column('holds_from', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('participant_id', 'code'),
    )
    op.add_column('organisation_view', sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column('organisation_view', 'slug')
    op.drop_table('published_alert')
    op.drop_table('published_call')
