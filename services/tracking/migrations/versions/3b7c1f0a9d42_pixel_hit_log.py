"""pixel hit log: hits appended by the pixel, judged by the hit processor

Revision ID: 3b7c1f0a9d42
Revises: e158a07256ca
Create Date: 2026-11-30 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '3b7c1f0a9d42'
down_revision: str | None = 'e158a07256ca'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pixel_hit',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Integer(), nullable=False),
    sa.Column('token_sent_at', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('signal_bits', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_pixel_hit_received_at'), 'pixel_hit', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pixel_hit_received_at'), table_name='pixel_hit')
    op.drop_table('pixel_hit')
