"""staff accounts, api keys, logos, sign-ups and the participant lifecycle

Coaches become staff accounts (the coach table is renamed, so coach ids stay the same
and participants keep their coach); organisation admins are staff with another role.

Revision ID: 0839a676090c
Revises: 81bbf7298e36
Create Date: 2026-11-23 19:16:12.418014
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0839a676090c'
down_revision: str | None = '81bbf7298e36'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _add_with_backfill(table: str, column: sa.Column, backfill: sa.TextClause) -> None:
    """A NOT NULL column on a table that may have rows: filled once, no default kept."""
    column.server_default = sa.DefaultClause(backfill)
    op.add_column(table, column)
    op.alter_column(table, column.name, server_default=None)


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('email_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('window_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('email_hash')
    )
    op.create_table('api_key',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_index(op.f('ix_api_key_org_id'), 'api_key', ['org_id'], unique=False)
    op.create_table('logo',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('format', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], ),
    sa.PrimaryKeyConstraint('org_id', 'sha256')
    )

    # coach -> staff, keeping every id (coach_id in events and in participant rows).
    op.rename_table('coach', 'staff')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT coach_pkey TO staff_pkey')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT coach_email_key TO staff_email_key')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT coach_org_id_fkey TO staff_org_id_fkey')
    op.execute('ALTER INDEX ix_coach_org_id RENAME TO ix_staff_org_id')
    _add_with_backfill('staff', sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False), sa.text("'coach'"))
    op.add_column('staff', sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('staff', sa.Column('password_set_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table('invitation',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_invitation_staff_id'), 'invitation', ['staff_id'], unique=False)

    op.add_column('organisation', sa.Column('contact_person', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('organisation', sa.Column('sender_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('organisation', sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('organisation', sa.Column('logo_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('organisation', sa.Column('logo_format', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
    _add_with_backfill('organisation', sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False), sa.text('now()'))

    _add_with_backfill('participant', sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False), sa.text("'api'"))
    op.add_column('participant', sa.Column('confirm_token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('participant', sa.Column('confirm_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('participant', sa.Column('consent_text_version', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
    op.add_column('participant', sa.Column('consented_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('participant', sa.Column('confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('participant', sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('participant', sa.Column('stopped_by', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
    op.add_column('participant', sa.Column('stop_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('participant', sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('participant', sa.Column('erased_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    _add_with_backfill('participant', sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False), sa.text('now()'))
    # Erasure keeps an anonymous row: the personal fields may be empty from now on.
    op.alter_column('participant', 'first_name', existing_type=sa.VARCHAR(), nullable=True)
    op.alter_column('participant', 'email', existing_type=sa.VARCHAR(), nullable=True)
    op.create_index('ix_participant_org_status', 'participant', ['org_id', 'status'], unique=False)
    op.create_unique_constraint('participant_confirm_token_hash_key', 'participant', ['confirm_token_hash'])


def downgrade() -> None:
    op.drop_constraint('participant_confirm_token_hash_key', 'participant', type_='unique')
    op.drop_index('ix_participant_org_status', table_name='participant')
    # Erased and unconfirmed participants cannot go back to a table that requires a name and address.
    op.execute("DELETE FROM participant WHERE first_name IS NULL OR email IS NULL OR status IN ('pending', 'erased')")
    op.alter_column('participant', 'email', existing_type=sa.VARCHAR(), nullable=False)
    op.alter_column('participant', 'first_name', existing_type=sa.VARCHAR(), nullable=False)
    for column in ('updated_at', 'erased_at', 'ended_at', 'stop_reason', 'stopped_by', 'started_at', 'confirmed_at',
                   'consented_at', 'consent_text_version', 'confirm_expires_at', 'confirm_token_hash', 'source'):
        op.drop_column('participant', column)
    for column in ('updated_at', 'logo_format', 'logo_sha256', 'reply_to', 'sender_name', 'contact_person'):
        op.drop_column('organisation', column)
    op.drop_index(op.f('ix_invitation_staff_id'), table_name='invitation')
    op.drop_table('invitation')
    # Organisation admins have no place in the old coach table.
    op.execute("DELETE FROM staff WHERE role <> 'coach'")
    for column in ('password_set_at', 'password_hash', 'role'):
        op.drop_column('staff', column)
    op.execute('ALTER INDEX ix_staff_org_id RENAME TO ix_coach_org_id')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT staff_org_id_fkey TO coach_org_id_fkey')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT staff_email_key TO coach_email_key')
    op.execute('ALTER TABLE staff RENAME CONSTRAINT staff_pkey TO coach_pkey')
    op.rename_table('staff', 'coach')
    op.drop_table('logo')
    op.drop_index(op.f('ix_api_key_org_id'), table_name='api_key')
    op.drop_table('api_key')
    op.drop_table('login_throttle')
