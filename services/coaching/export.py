"""Coaching's part of a subject-access export: every row of its own tables that names the
participant (the dashboard's view, the call log with the coach's notes, planned calls,
alerts and every version of the personal plan)."""

from __future__ import annotations

from services.coaching.tables import CoachingTable
from shared.db import Database
from shared.export_parts import export_part_handlers
from shared.kafka import EventHandler


def build_export_handlers(database: Database) -> dict[str, dict[str, EventHandler]]:
    """Coaching's handler of export.requested."""
    return export_part_handlers(database, service="coaching", metadata=CoachingTable.metadata)
