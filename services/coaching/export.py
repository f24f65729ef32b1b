"""Coaching's part of a subject-access export: every row of its own tables that names the
participant (the dashboard's view, the call log with the coach's notes, planned calls,
alerts and every version of the personal plan)."""

from __future__ import annotations

from services.coaching.tables import CoachingTable
from shared.export_parts import export_part_handlers
from shared.kafka import Change


def build_export_handlers() -> dict[str, dict[str, Change]]:
    """Coaching's change of export.requested."""
    return export_part_handlers(service="coaching", metadata=CoachingTable.metadata)
