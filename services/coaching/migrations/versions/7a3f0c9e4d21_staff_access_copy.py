"""staff access copy: token version and active flag per staff member, from staff.access_changed;
whether each coach is active or removed, in the projection

Revision ID: 7a3f0c9e4d21
Revises: 1a8b89a397b1
Create Date: 2026-11-30 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '7a3f0c9e4d21'
down_revision: str | None = '1a8b89a397b1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('staff_access',
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('token_version', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('staff_id')
    )
    op.add_column('coach_view', sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column('coach_view', sa.Column('access_version', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('coach_view', sa.Column('removed', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    for column in ('removed', 'access_version', 'active'):
        op.drop_column('coach_view', column)
    op.drop_table('staff_access')
