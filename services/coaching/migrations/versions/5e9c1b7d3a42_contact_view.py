"""contact view: names and phones from meer.contact (tombstones delete them)

Revision ID: 5e9c1b7d3a42
Revises: 84d1ac4007cc
Create Date: 2026-11-30 09:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '5e9c1b7d3a42'
down_revision: str | None = '84d1ac4007cc'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('contact_view',
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('person_id')
    )
    op.create_index(op.f('ix_contact_view_org_id'), 'contact_view', ['org_id'], unique=False)
    # Existing participants and coaches: their details as the old events brought them.
    op.execute(
        "INSERT INTO contact_view (person_id, org_id, kind, name, phone) "
        "SELECT participant_id, org_id, 'participant', first_name, phone FROM dashboard_row "
        "WHERE first_name IS NOT NULL"
    )
    op.execute(
        "INSERT INTO contact_view (person_id, org_id, kind, name, phone) "
        "SELECT coach_id, org_id, 'staff', name, NULL FROM coach_view WHERE name IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_contact_view_org_id'), table_name='contact_view')
    op.drop_table('contact_view')
