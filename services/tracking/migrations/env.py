"""Alembic environment of the tracking database."""

from services.tracking.tables import TrackingTable
from shared.migrations import run_env

run_env(TrackingTable.metadata)
