"""Tracking's part of a subject-access export: every row of its own tables that names the
participant (opens, link hits, assignment reports, unsubscribe requests, sent mails)."""

from __future__ import annotations

from services.tracking.tables import TrackingTable
from shared.export_parts import export_part_handlers
from shared.kafka import Change


def build_export_handlers() -> dict[str, dict[str, Change]]:
    """Tracking's change of export.requested."""
    return export_part_handlers(service="tracking", metadata=TrackingTable.metadata)
