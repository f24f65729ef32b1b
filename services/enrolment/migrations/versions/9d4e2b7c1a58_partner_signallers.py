"""partner signallers: their own organisation on the staff row

Revision ID: 9d4e2b7c1a58
Revises: 3f6a1c9d2e47
Create Date: 2026-11-30 13:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '9d4e2b7c1a58'
down_revision: str | None = '3f6a1c9d2e47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('staff', sa.Column('partner_organisation', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True))


def downgrade() -> None:
    op.drop_column('staff', 'partner_organisation')
