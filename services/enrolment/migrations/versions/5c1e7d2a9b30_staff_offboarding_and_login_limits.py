"""staff offboarding (token version, deactivation, removal) and login limits

A token version per staff member lets every service refuse tokens from before a logout,
password reset or deactivation. Removal erases name and address but keeps the row (and
its id) for the audit trail. Login limits per source, subnet, account and device replace
the per-address throttle.

Revision ID: 5c1e7d2a9b30
Revises: 18a51e8bb373
Create Date: 2026-11-30 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '5c1e7d2a9b30'
down_revision: str | None = '18a51e8bb373'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('staff', sa.Column('token_version', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.add_column('staff', sa.Column('deactivated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('staff', sa.Column('removed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.alter_column('staff', 'name', existing_type=sa.VARCHAR(), nullable=True)
    op.alter_column('staff', 'email', existing_type=sa.VARCHAR(), nullable=True)
    op.create_table('login_limit',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('window_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('blocked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_login_limit_blocked_until'), 'login_limit', ['blocked_until'], unique=False)
    op.drop_table('login_throttle')


def downgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('email_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('window_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('email_hash')
    )
    op.drop_index(op.f('ix_login_limit_blocked_until'), table_name='login_limit')
    op.drop_table('login_limit')
    # Removed members have no name or address: they cannot go back to a table that requires one.
    op.execute("UPDATE staff SET name = '', email = 'removed-' || id || '@invalid' WHERE removed_at IS NOT NULL")
    op.alter_column('staff', 'email', existing_type=sa.VARCHAR(), nullable=False)
    op.alter_column('staff', 'name', existing_type=sa.VARCHAR(), nullable=False)
    for column in ('removed_at', 'deactivated_at', 'token_version'):
        op.drop_column('staff', column)
