"""delivery.sending_until: the lease a sender commits before its SMTP call

Revision ID: a3f0c6d2b915
Revises: 7b2e9c4d1f58
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'a3f0c6d2b915'
down_revision: str | None = '7b2e9c4d1f58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('delivery', sa.Column('sending_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('delivery', 'sending_until')
