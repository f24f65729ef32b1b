"""organisation slug

Revision ID: 18a51e8bb373
Revises: 41c97570ab2c
Create Date: 2026-11-30 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '18a51e8bb373'
down_revision: str | None = '41c97570ab2c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('organisation', sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
    op.create_unique_constraint('organisation_slug_key', 'organisation', ['slug'])


def downgrade() -> None:
    op.drop_constraint('organisation_slug_key', 'organisation', type_='unique')
    op.drop_column('organisation', 'slug')
