"""When a participant's next lesson is due: one lesson per local calendar day, at the
participant's own send time, in their own time zone (zoneinfo handles DST). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

SCHEDULED_STATUSES = ("enrolled", "active")


@dataclass(frozen=True)
class RecipientSchedule:
    """What the schedule needs to know about one participant."""

    start_date: date
    send_time: time
    timezone: str
    status: str
    last_day: int
    """Highest lesson already scheduled (0 before the first)."""
    last_local_date: date | None
    """Local calendar date of the last scheduled lesson."""


@dataclass(frozen=True)
class DueLesson:
    day: int
    local_date: date
    due_at: datetime


def local_send_moment(local_date: date, send_time: time, timezone: str) -> datetime:
    """The UTC instant of send_time on local_date; a time skipped by DST falls after the gap."""
    local = datetime.combine(local_date, send_time, tzinfo=ZoneInfo(timezone))
    # Round-tripping through UTC normalises a wall time that does not exist (spring forward).
    return local.astimezone(UTC)


def next_due_lesson(schedule: RecipientSchedule, now: datetime, *, programme_days: int) -> DueLesson | None:
    """The lesson to schedule now, or None.

    Lessons are never skipped: after a pause or an outage the next lesson is simply the
    one after the last, and at most one lesson is scheduled per local calendar day.
    """
    if schedule.status not in SCHEDULED_STATUSES or schedule.last_day >= programme_days:
        return None
    today = now.astimezone(ZoneInfo(schedule.timezone)).date()
    if today < schedule.start_date:
        return None
    if schedule.last_local_date is not None and schedule.last_local_date >= today:
        return None
    due_at = local_send_moment(today, schedule.send_time, schedule.timezone)
    if now < due_at:
        return None
    return DueLesson(day=schedule.last_day + 1, local_date=today, due_at=due_at)


def next_check_at(schedule: RecipientSchedule, now: datetime, *, programme_days: int) -> datetime | None:
    """The earliest moment from `now` on that the next lesson can be due, so the scheduler
    skips everyone else until then. None when no lesson comes without a change (paused,
    stopped, finished)."""
    if schedule.status not in SCHEDULED_STATUSES or schedule.last_day >= programme_days:
        return None
    earliest = max(schedule.start_date, now.astimezone(ZoneInfo(schedule.timezone)).date())
    if schedule.last_local_date is not None:
        earliest = max(earliest, schedule.last_local_date + timedelta(days=1))
    return local_send_moment(earliest, schedule.send_time, schedule.timezone)


def digest_is_due(last_digest_date: date | None, now: datetime, *, local_time: time, timezone: str) -> date | None:
    """The local date a coach's daily digest is due for now, or None if it was sent already."""
    local_now = now.astimezone(ZoneInfo(timezone))
    if local_now.time() < local_time:
        return None
    if last_digest_date is not None and last_digest_date >= local_now.date():
        return None
    return local_now.date()


CallUrgency = Literal["today", "open", "overdue"]


def call_urgency(
    *, state: str, due_date: date | None, overdue_from: date | None, lapses_after: date | None, today: date
) -> CallUrgency | None:
    """Whether a planned call (as coaching published it) is on a coach's list on `today`:
    due today, due earlier and still open, overdue; None when it is not (yet) to be made."""
    if state != "planned" or due_date is None or due_date > today:
        return None
    if lapses_after is not None and today > lapses_after:
        return None
    if overdue_from is not None and today >= overdue_from:
        return "overdue"
    return "today" if due_date == today else "open"


ALERT_TEXTS = {
    "mail_failed": "een mail kwam niet aan (klopt het e-mailadres nog?)",
    "no_open_3_days": "heeft al {days} dagen geen mail geopend",
    "low_scores": "de laatste twee opdrachten gingen moeilijk",
}
"""What the coach's morning mail says per alert code, in the dashboard's order."""
NO_OPEN_DAYS = 3


def holding_alerts(alerts: Mapping[str, datetime | None], now: datetime) -> list[str]:
    """The codes of the alerts (as coaching published them) that hold at `now`, in the dashboard's order."""
    return [
        code for code in ALERT_TEXTS if code in alerts and ((holds_from := alerts[code]) is None or holds_from <= now)
    ]


def attention_text(alerts: Mapping[str, datetime | None], now: datetime) -> str | None:
    """One line about a participant's alerts that hold at `now`, or None."""
    parts = []
    for code in holding_alerts(alerts, now):
        holds_from = alerts[code]
        days = NO_OPEN_DAYS + ((now - holds_from) // timedelta(days=1) if holds_from is not None else 0)
        parts.append(ALERT_TEXTS[code].format(days=days))
    return "; ".join(parts) + "." if parts else None


FOLLOW_UP_MONTHS = 3
FOLLOW_UP_REMINDER_AFTER = timedelta(days=7)


def questionnaire_follow_up(completed_at: datetime) -> tuple[datetime, datetime]:
    """When the follow-up questionnaire mail goes out (three calendar months after the last
    lesson, at the same time of day; the 31st falls back to the month's last day), and when
    its one reminder goes out unless the participant answered before."""
    month_index = completed_at.month - 1 + FOLLOW_UP_MONTHS
    year, month = completed_at.year + month_index // 12, month_index % 12 + 1
    next_month_first = date(year + month // 12, month % 12 + 1, 1)
    day = min(completed_at.day, (next_month_first - timedelta(days=1)).day)
    follow_up = completed_at.replace(year=year, month=month, day=day)
    return follow_up, follow_up + FOLLOW_UP_REMINDER_AFTER
