"""The mailer's part of a subject-access export: every row of its own tables that names
the participant (their copy as recipient, deliveries, transactional mails, planned calls
and alerts as the mailer knows them)."""

from __future__ import annotations

from services.mailer.tables import MailerTable
from shared.export_parts import export_part_handlers
from shared.kafka import Change

EXCLUDED_COLUMNS = {"transactional_mail": ("context",)}
"""A waiting transactional mail's context may hold a one-time link: never exported."""


def build_export_handlers() -> dict[str, dict[str, Change]]:
    """The mailer's change of export.requested."""
    return export_part_handlers(service="mailer", metadata=MailerTable.metadata, exclude_columns=EXCLUDED_COLUMNS)
