"""The dashboard projection's rules, without I/O.

Write side: how one event changes a participant's rows. Every rule is a recount or a
min/max, so a redelivery or another order of events (they come from several topics)
ends in the same state, and a rebuild from the topics gives the same rows.

Read side: the figures that need a clock (open rate of the last 7 days, days without an
open), computed for the moment of reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from services.coaching.tables import CallSeen, DashboardRow, MailSeen, ReportSeen

Status = Literal["unknown", "enrolled", "active", "paused", "stopped", "completed", "erased"]
Lifecycle = Literal["unknown", "enrolled", "running", "paused", "stopped", "completed", "erased"]
Trend = Literal["up", "down", "steady"]

LOW_SCORE = 2
"""A report with this score or lower means the assignment did not go well."""
RECENT_WINDOW = timedelta(days=7)


# --- write side -------------------------------------------------------------------------


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    return candidate if current is None or (candidate is not None and candidate > current) else current


def _earlier(current: datetime | None, candidate: datetime | None) -> datetime | None:
    return candidate if current is None or (candidate is not None and candidate < current) else current


def touch(row: DashboardRow, occurred_at: datetime) -> DashboardRow:
    """Remember the latest event time (a max, so the order of events does not matter)."""
    if occurred_at > row.updated_at:
        row.updated_at = occurred_at
    return row


def record_sent(mail: MailSeen, *, title: str, sent_at: datetime) -> MailSeen:
    """The mail was accepted by the SMTP server."""
    mail.lesson_title = title
    mail.sent_at = sent_at if mail.sent_at is None else min(mail.sent_at, sent_at)
    return mail


def record_failure(mail: MailSeen, *, failed_at: datetime, reason: str) -> MailSeen:
    """The mail could not be delivered; keep the last word on why."""
    if mail.failed_at is None or failed_at >= mail.failed_at:
        mail.failed_at, mail.failure_reason = failed_at, reason
    return mail


def record_open(mail: MailSeen, opened_at: datetime, *, likely_automated: bool) -> MailSeen:
    """Count the open and keep the earliest open of each kind (and a person's latest)."""
    if likely_automated:
        mail.automated_opens += 1
        mail.automated_opened_at = _earlier(mail.automated_opened_at, opened_at)
    else:
        mail.human_opens += 1
        mail.human_opened_at = _earlier(mail.human_opened_at, opened_at)
        mail.human_last_opened_at = _later(mail.human_last_opened_at, opened_at)
    return mail


def record_click(mail: MailSeen, clicked_at: datetime) -> MailSeen:
    """A person followed a link in the mail (which also means they opened it)."""
    mail.clicks += 1
    if mail.first_clicked_at is None or clicked_at < mail.first_clicked_at:
        mail.first_clicked_at = clicked_at
    return mail


@dataclass(frozen=True)
class MailCounts:
    """What one mail adds to its participant's counts."""

    sent: int
    opened: int
    automated_only: int
    failed: int
    clicks: int


def mail_counts(mail: MailSeen) -> MailCounts:
    """One mail's share of the row's counts (a function of the mail alone, so any order adds up the same)."""
    return MailCounts(
        sent=int(mail.sent_at is not None),
        opened=int(mail.human_opened_at is not None),
        automated_only=int(mail.automated_opened_at is not None and mail.human_opened_at is None),
        failed=int(mail.failed_at is not None and mail.sent_at is None),
        clicks=mail.clicks,
    )


def apply_mail_change(row: DashboardRow, before: MailCounts, mail: MailSeen) -> DashboardRow:
    """Add what changed in one mail to the row: the same result as `summarise_mails` over all
    mails, without loading them (each event touches one mail; the unit tests hold the two equal)."""
    after = mail_counts(mail)
    if after != before:
        row.mails_sent += after.sent - before.sent
        row.mails_opened += after.opened - before.opened
        row.mails_opened_automated_only += after.automated_only - before.automated_only
        row.mails_failed += after.failed - before.failed
        row.clicks += after.clicks - before.clicks
    if mail.human_last_opened_at is not None:
        row.last_open_at = _later(row.last_open_at, mail.human_last_opened_at)
    if mail.sent_at is not None:
        row.first_sent_at = _earlier(row.first_sent_at, mail.sent_at)
        row.last_sent_at = _later(row.last_sent_at, mail.sent_at)
    if mail.failed_at is not None:
        row.last_failed_at = _later(row.last_failed_at, mail.failed_at)
    if mail.sent_at is not None and (mail.day, mail.lesson_title or "") > (row.lesson_day, row.lesson_title or ""):
        row.lesson_day, row.lesson_title = mail.day, mail.lesson_title
    return row


def summarise_mails(row: DashboardRow, mails: Iterable[MailSeen]) -> DashboardRow:
    """Recount sent, opened and failed mails from all of them: the definition `apply_mail_change` keeps."""
    mails = list(mails)
    sent = [m for m in mails if m.sent_at is not None]
    row.mails_sent = len(sent)
    row.mails_opened = sum(1 for m in mails if m.human_opened_at is not None)
    row.mails_opened_automated_only = sum(
        1 for m in mails if m.automated_opened_at is not None and m.human_opened_at is None
    )
    row.mails_failed = sum(1 for m in mails if m.failed_at is not None and m.sent_at is None)
    row.clicks = sum(m.clicks for m in mails)
    row.last_open_at = max((m.human_last_opened_at for m in mails if m.human_last_opened_at is not None), default=None)
    row.first_sent_at = min((m.sent_at for m in sent if m.sent_at is not None), default=None)
    row.last_sent_at = max((m.sent_at for m in sent if m.sent_at is not None), default=None)
    row.last_failed_at = max((m.failed_at for m in mails if m.failed_at is not None), default=None)
    latest = max(sent, key=lambda m: (m.day, m.lesson_title or ""), default=None)
    if latest is not None:
        row.lesson_day, row.lesson_title = latest.day, latest.lesson_title
    return row


@dataclass(frozen=True)
class ReportAnswer:
    """One answer on how a day's assignment went."""

    delivery_id: UUID
    score: int
    note: str | None
    reported_at: datetime
    event_id: UUID


def record_report(current: ReportSeen, answer: ReportAnswer) -> ReportSeen:
    """A later answer replaces an earlier one; equal moments are decided by event id, so any
    order of arrival keeps the same answer."""
    if (answer.reported_at, str(answer.event_id)) > (current.reported_at, str(current.event_id)):
        current.delivery_id, current.score, current.note = answer.delivery_id, answer.score, answer.note
        current.reported_at, current.event_id = answer.reported_at, answer.event_id
    return current


def count_report(row: DashboardRow, reported_at: datetime, *, new_day: bool) -> DashboardRow:
    """Count a report: one per day answered, and the latest moment anything was reported."""
    row.reports += int(new_day)
    row.last_report_at = _later(row.last_report_at, reported_at)
    return row


def summarise_reports(row: DashboardRow, reports: Iterable[ReportSeen]) -> DashboardRow:
    """Recount the assignment reports."""
    reports = list(reports)
    row.reports = len(reports)
    row.last_report_at = max((r.reported_at for r in reports), default=None)
    return row


def summarise_calls(row: DashboardRow, calls: Iterable[CallSeen]) -> DashboardRow:
    """Recount calls: only a call in which the participant was reached counts as a contact."""
    calls = list(calls)
    row.calls_attempted = len(calls)
    row.calls_reached = sum(1 for c in calls if c.reached)
    row.last_call_at = max((c.called_at for c in calls), default=None)
    return row


def apply_lifecycle(row: DashboardRow, event_type: str, at: datetime, *, by: str | None = None) -> DashboardRow:
    """Follow the participant topic (its events keep their order) and recompute the status."""
    if row.lifecycle == "erased":
        return derive_status(row)
    match event_type:
        case "participant.enrolled":
            row.enrolled_at = at
            if row.lifecycle == "unknown":
                row.lifecycle = "enrolled"
        case "participant.paused":
            row.lifecycle, row.paused_at = "paused", at
        case "participant.resumed":
            row.lifecycle, row.paused_at = "running", None
        case "participant.stopped":
            row.lifecycle, row.stopped_at, row.stopped_by = "stopped", at, by
        case "participant.completed":
            row.lifecycle, row.completed_at = "completed", at
        case "participant.erased":
            row.lifecycle, row.erased_at = "erased", at
    return derive_status(row)


def derive_status(row: DashboardRow) -> DashboardRow:
    """One status from the participant topic and the mail topic, whichever came first."""
    status: Status
    if row.lifecycle in ("erased", "stopped"):
        status = "erased" if row.lifecycle == "erased" else "stopped"
    elif row.lifecycle == "completed" or row.programme_completed_at is not None:
        status = "completed"
    elif row.lifecycle == "paused":
        status = "paused"
    elif row.mails_sent > 0:
        status = "active"
    elif row.lifecycle != "unknown":
        status = "enrolled"
    else:
        status = "unknown"
    row.status = status
    return row


def erase_personal_data(row: DashboardRow) -> DashboardRow:
    """The right to be forgotten: keep anonymous counts, drop what identifies the person."""
    row.first_name = None
    row.phone = None
    return row


# --- read side --------------------------------------------------------------------------


@dataclass(frozen=True)
class MailFigures:
    """What the mails say about one participant at a given moment."""

    open_rate: float | None
    open_rate_7d: float | None
    days_without_open: int | None
    failure_unresolved: bool


def open_rate(mails: Iterable[MailSeen]) -> float | None:
    """Share of sent mails that a person opened; None before the first mail."""
    sent = [m for m in mails if m.sent_at is not None]
    if not sent:
        return None
    return sum(1 for m in sent if m.human_opened_at is not None) / len(sent)


def mail_figures(mails: Sequence[MailSeen], now: datetime) -> MailFigures:
    """Open rates (all and last 7 days), whole days since the last human open, an unresolved failure."""
    recent = [m for m in mails if m.sent_at is not None and now - RECENT_WINDOW < m.sent_at <= now]
    since = without_open_since(mails)
    days_without_open = max(0, (now - since) // timedelta(days=1)) if since is not None else None
    return MailFigures(
        open_rate=open_rate(mails),
        open_rate_7d=open_rate(recent),
        days_without_open=days_without_open,
        failure_unresolved=failure_unresolved(mails),
    )


def without_open_since(mails: Sequence[MailSeen]) -> datetime | None:
    """Since when the participant opened nothing: the latest human open, else the first mail sent."""
    last_open = max((m.human_last_opened_at for m in mails if m.human_last_opened_at is not None), default=None)
    first_sent = min((m.sent_at for m in mails if m.sent_at is not None), default=None)
    return last_open or first_sent


def failure_unresolved(mails: Sequence[MailSeen]) -> bool:
    """A mail failed and no mail was sent after it."""
    last_failed = max((m.failed_at for m in mails if m.failed_at is not None), default=None)
    last_sent = max((m.sent_at for m in mails if m.sent_at is not None), default=None)
    return last_failed is not None and (last_sent is None or last_sent < last_failed)


def reports_in_order(reports: Iterable[ReportSeen]) -> list[ReportSeen]:
    """Reports by programme day."""
    return sorted(reports, key=lambda r: r.day)


def report_trend(scores: Sequence[int]) -> Trend | None:
    """Compare the latest scores (up to 3) with the ones before them; None with fewer than two."""
    if len(scores) < 2:
        return None
    size = min(3, len(scores) // 2)
    recent, earlier = scores[-size:], scores[-2 * size : -size]
    difference = sum(recent) / len(recent) - sum(earlier) / len(earlier)
    if difference >= 0.5:
        return "up"
    if difference <= -0.5:
        return "down"
    return "steady"


def two_low_scores_in_a_row(scores: Sequence[int]) -> bool:
    """The last two reports both went badly."""
    return len(scores) >= 2 and all(score <= LOW_SCORE for score in scores[-2:])


def participant_ids(rows: Iterable[DashboardRow]) -> list[UUID]:
    """The ids of some rows, for loading their details in one query."""
    return [row.participant_id for row in rows]
