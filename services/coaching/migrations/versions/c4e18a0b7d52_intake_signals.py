"""intake: signals and their steps, staff copies with the partner organisation, local offers

Revision ID: c4e18a0b7d52
Revises: 5e9c1b7d3a42
Create Date: 2026-11-30 13:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c4e18a0b7d52'
down_revision: str | None = '5e9c1b7d3a42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('signal',
    sa.Column('signal_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('submitted_by', sa.Uuid(), nullable=False),
    sa.Column('submitted_role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('partner_organisation', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('consent', sa.Boolean(), nullable=False),
    sa.Column('first_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('noticed', sa.JSON(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('coach_id', sa.Uuid(), nullable=True),
    sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('contact_date', sa.Date(), nullable=True),
    sa.Column('discussable', sa.Boolean(), nullable=True),
    sa.Column('contact_recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('own_question', sa.Text(), nullable=True),
    sa.Column('causes', sa.JSON(), nullable=False),
    sa.Column('question_recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('participant_id', sa.Uuid(), nullable=True),
    sa.Column('offer_id', sa.Uuid(), nullable=True),
    sa.Column('close_reason', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
    sa.Column('close_note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('signal_id')
    )
    for column in ('org_id', 'submitted_by', 'state', 'coach_id', 'participant_id'):
        op.create_index(op.f(f'ix_signal_{column}'), 'signal', [column], unique=False)
    op.create_table('signal_step',
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('signal_id', sa.Uuid(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('occurred_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('coach_id', sa.Uuid(), nullable=True),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    op.create_index(op.f('ix_signal_step_signal_id'), 'signal_step', ['signal_id'], unique=False)
    op.create_table('staff_copy',
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('partner_organisation', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('staff_id')
    )
    op.create_index(op.f('ix_staff_copy_org_id'), 'staff_copy', ['org_id'], unique=False)
    op.create_table('local_offers_copy',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('offers', sa.JSON(), nullable=False),
    sa.Column('as_of', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('org_id')
    )


def downgrade() -> None:
    op.drop_table('local_offers_copy')
    op.drop_index(op.f('ix_staff_copy_org_id'), table_name='staff_copy')
    op.drop_table('staff_copy')
    op.drop_index(op.f('ix_signal_step_signal_id'), table_name='signal_step')
    op.drop_table('signal_step')
    for column in ('org_id', 'submitted_by', 'state', 'coach_id', 'participant_id'):
        op.drop_index(op.f(f'ix_signal_{column}'), table_name='signal')
    op.drop_table('signal')
