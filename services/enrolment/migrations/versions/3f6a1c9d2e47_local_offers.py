"""local offers

Revision ID: 3f6a1c9d2e47
Revises: b7811e020dc6
Create Date: 2026-11-30 12:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '3f6a1c9d2e47'
down_revision: str | None = 'b7811e020dc6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'local_offer',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('description', sa.Text(), server_default='', nullable=False),
        sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column('schedule', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column('website', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisation.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_local_offer_org_id'), 'local_offer', ['org_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_local_offer_org_id'), table_name='local_offer')
    op.drop_table('local_offer')
