"""questionnaire answer seen: the latest loneliness scores per participant and moment
(from questionnaire.answered), for the outcome reports

Revision ID: c41e7d2a9b10
Revises: 7a3f0c9e4d21
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c41e7d2a9b10'
down_revision: str | None = '7a3f0c9e4d21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('questionnaire_answer_seen',
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('moment', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=True),
    sa.Column('emotional', sa.Integer(), nullable=True),
    sa.Column('social', sa.Integer(), nullable=True),
    sa.Column('total_imputed', sa.Boolean(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
    sa.Column('answered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('participant_id', 'moment')
    )
    op.create_index(op.f('ix_questionnaire_answer_seen_org_id'), 'questionnaire_answer_seen', ['org_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_questionnaire_answer_seen_org_id'), table_name='questionnaire_answer_seen')
    op.drop_table('questionnaire_answer_seen')
