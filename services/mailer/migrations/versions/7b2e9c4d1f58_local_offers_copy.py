"""local offers copy from organisation.local_offers_changed

Revision ID: 7b2e9c4d1f58
Revises: c41d7e2a9f10
Create Date: 2026-11-30 12:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '7b2e9c4d1f58'
down_revision: str | None = 'c41d7e2a9f10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('local_offers_copy',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('offers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('org_id')
    )


def downgrade() -> None:
    op.drop_table('local_offers_copy')
