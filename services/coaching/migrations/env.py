"""Alembic environment of the coaching database."""

import services.coaching.intake_tables  # noqa: F401  (the intake tables join the metadata)
from services.coaching.tables import CoachingTable
from shared.migrations import run_env

run_env(CoachingTable.metadata)
