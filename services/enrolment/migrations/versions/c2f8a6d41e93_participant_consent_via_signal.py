"""participant consent via a signal: how consent was given, and one participant per signal

Revision ID: c2f8a6d41e93
Revises: 9d4e2b7c1a58
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'c2f8a6d41e93'
down_revision: str | None = '9d4e2b7c1a58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('participant', sa.Column('consent_via', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
    op.add_column('participant', sa.Column('consent_signal_id', sa.Uuid(), nullable=True))
    op.create_index(
        'uq_participant_signal',
        'participant',
        ['org_id', 'consent_signal_id'],
        unique=True,
        postgresql_where=sa.text('consent_signal_id IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('uq_participant_signal', table_name='participant', postgresql_where=sa.text('consent_signal_id IS NOT NULL'))
    op.drop_column('participant', 'consent_signal_id')
    op.drop_column('participant', 'consent_via')
