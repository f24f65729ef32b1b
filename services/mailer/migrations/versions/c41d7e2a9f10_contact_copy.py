"""contact copy from meer.contact; recipient and coach names and addresses wait for it (nullable)

Revision ID: c41d7e2a9f10
Revises: 9d4b2e6f1a87
Create Date: 2026-11-30 09:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c41d7e2a9f10'
down_revision: str | None = '9d4b2e6f1a87'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('contact_copy',
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('person_id')
    )
    # Existing participants and coaches: their details as the old events brought them.
    op.execute(
        "INSERT INTO contact_copy (person_id, org_id, kind, name, email, updated_at) "
        "SELECT participant_id, org_id, 'participant', first_name, email, now() FROM recipient"
    )
    op.execute(
        "INSERT INTO contact_copy (person_id, org_id, kind, name, email, updated_at) "
        "SELECT coach_id, org_id, 'staff', name, email, now() FROM coach_copy WHERE name <> ''"
    )
    op.add_column('transactional_mail', sa.Column('contact_id', sa.Uuid(), nullable=True))
    op.create_index(op.f('ix_transactional_mail_contact_id'), 'transactional_mail', ['contact_id'], unique=False)
    op.alter_column('recipient', 'first_name', existing_type=sa.VARCHAR(), nullable=True)
    op.alter_column('recipient', 'email', existing_type=sa.VARCHAR(), nullable=True)
    op.alter_column('coach_copy', 'name', existing_type=sa.VARCHAR(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM recipient WHERE first_name IS NULL OR email IS NULL")
    op.execute("UPDATE coach_copy SET name = '' WHERE name IS NULL")
    op.alter_column('coach_copy', 'name', existing_type=sa.VARCHAR(), nullable=False)
    op.alter_column('recipient', 'email', existing_type=sa.VARCHAR(), nullable=False)
    op.alter_column('recipient', 'first_name', existing_type=sa.VARCHAR(), nullable=False)
    op.drop_index(op.f('ix_transactional_mail_contact_id'), table_name='transactional_mail')
    op.drop_column('transactional_mail', 'contact_id')
    op.drop_table('contact_copy')
