"""local offers in the coach's work: the offer a call referred to, the offers a plan's goals name

Revision ID: d7a2e5c91f03
Revises: c4e18a0b7d52
Create Date: 2026-11-30 14:56:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd7a2e5c91f03'
down_revision: str | None = 'c4e18a0b7d52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('call_log', sa.Column('offer_id', sa.Uuid(), nullable=True))
    op.add_column('plan_version', sa.Column('offer_ids', sa.JSON(), server_default='[]', nullable=False))


def downgrade() -> None:
    op.drop_column('plan_version', 'offer_ids')
    op.drop_column('call_log', 'offer_id')
