"""Alembic environment of the coaching database."""

from services.coaching.tables import CoachingTable
from shared.migrations import run_env

run_env(CoachingTable.metadata)
