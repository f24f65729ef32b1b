"""The dashboard projection's rules: what one participant's row says, from their mails.
No I/O: the handlers load the rows, call these, and store the result."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.coaching.tables import DashboardRow, MailSeen


def summarise_mails(row: DashboardRow, mails: Iterable[MailSeen]) -> DashboardRow:
    """Recount sent and opened mails; recounting (not incrementing) keeps redeliveries harmless."""
    mails = list(mails)
    sent = [m for m in mails if m.sent_at is not None]
    row.mails_sent = len(sent)
    row.mails_opened = sum(1 for m in mails if m.human_opened_at is not None)
    row.mails_opened_automated_only = sum(
        1 for m in mails if m.automated_opened_at is not None and m.human_opened_at is None
    )
    opens = [t for m in mails for t in (m.human_opened_at,) if t is not None]
    row.last_open_at = max(opens, default=None)
    latest = max(sent, key=lambda m: m.day, default=None)
    if latest is not None:
        row.lesson_day, row.lesson_title = latest.day, latest.lesson_title
    return row


def record_open(mail: MailSeen, opened_at: datetime, *, likely_automated: bool) -> MailSeen:
    """Keep the earliest open of each kind."""
    if likely_automated:
        if mail.automated_opened_at is None or opened_at < mail.automated_opened_at:
            mail.automated_opened_at = opened_at
    elif mail.human_opened_at is None or opened_at < mail.human_opened_at:
        mail.human_opened_at = opened_at
    return mail
