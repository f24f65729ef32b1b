"""What an organisation admin sees: figures per coach and the open rate by week, without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from services.coaching.calls import PlannedCall, calls_due_so_far
from services.coaching.projection import RECENT_WINDOW
from services.coaching.tables import DashboardRow, MailSeen

WEEKS = 8


@dataclass(frozen=True)
class ParticipantFacts:
    """One participant's rows and planned calls, as the overview needs them."""

    row: DashboardRow
    mails: Sequence[MailSeen]
    planned: Sequence[PlannedCall]
    alerts: int


@dataclass(frozen=True)
class CoachLine:
    """One coach's line in the overview."""

    coach_id: UUID | None
    coach_name: str | None
    participants: int
    active: int
    calls_due_so_far: int
    calls_done: int
    calls_done_ratio: float | None
    open_rate: float | None
    open_rate_7d: float | None
    alerts: int


@dataclass(frozen=True)
class WeekLine:
    """The organisation's open rate over the mails sent in one week (Monday to Sunday)."""

    week_start: date
    mails_sent: int
    mails_opened: int
    open_rate: float | None


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def coach_lines(
    facts: Sequence[ParticipantFacts], coach_names: Mapping[UUID, str | None], *, now: datetime, today: date
) -> list[CoachLine]:
    """Per coach (also coaches without participants yet): participants, calls done ratio, open rates."""
    by_coach: dict[UUID | None, list[ParticipantFacts]] = {coach_id: [] for coach_id in coach_names}
    for fact in facts:
        by_coach.setdefault(fact.row.coach_id, []).append(fact)
    lines = []
    for coach_id, group in by_coach.items():
        done = due = sent = opened = sent_7d = opened_7d = 0
        for fact in group:
            fact_done, fact_due = calls_due_so_far(fact.planned, today)
            done, due = done + fact_done, due + fact_due
            for mail in fact.mails:
                if mail.sent_at is None:
                    continue
                sent += 1
                opened += mail.human_opened_at is not None
                if now - RECENT_WINDOW < mail.sent_at <= now:
                    sent_7d += 1
                    opened_7d += mail.human_opened_at is not None
        lines.append(
            CoachLine(
                coach_id=coach_id,
                coach_name=coach_names.get(coach_id) if coach_id else None,
                participants=len(group),
                active=sum(1 for fact in group if fact.row.status in ("active", "paused", "enrolled")),
                calls_due_so_far=due,
                calls_done=done,
                calls_done_ratio=_rate(done, due),
                open_rate=_rate(opened, sent),
                open_rate_7d=_rate(opened_7d, sent_7d),
                alerts=sum(fact.alerts for fact in group),
            )
        )
    return sorted(lines, key=lambda line: ((line.coach_name or "~").lower(), str(line.coach_id)))


def weekly_open_rate(mails: Sequence[MailSeen], *, today: date, tz: ZoneInfo, weeks: int = WEEKS) -> list[WeekLine]:
    """The open rate of the mails sent in each of the last `weeks` weeks, oldest first."""
    this_monday = today - timedelta(days=today.weekday())
    starts = [this_monday - timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]
    sent = dict.fromkeys(starts, 0)
    opened = dict.fromkeys(starts, 0)
    for mail in mails:
        if mail.sent_at is None:
            continue
        local = mail.sent_at.astimezone(tz).date()
        monday = local - timedelta(days=local.weekday())
        if monday in sent:
            sent[monday] += 1
            opened[monday] += mail.human_opened_at is not None
    return [WeekLine(start, sent[start], opened[start], _rate(opened[start], sent[start])) for start in starts]
