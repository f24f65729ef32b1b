"""The four planned calls: when each is due, and whether it is done, due or overdue.

Each call belongs to a moment in the programme (a lesson day), not to a calendar date,
so a pause moves the calls with it: once the mail of that day was sent, its date is the
due date; before that, the date is projected from the last mail sent (or the start).
A coach may move a call to another day. Only a call in which the participant was
reached completes a planned call; an unreached attempt is logged but does not count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

CallStatus = Literal["done", "upcoming", "due", "overdue", "cancelled", "unknown"]

PLANNED_CALL_DAYS: Mapping[int, int] = {1: 2, 2: 14, 3: 35, 4: 58}
"""Call number → the lesson day it goes with: around the start, day 14, day 35, near the end."""
DUE_FROM = timedelta(days=3)
"""A call shows as due this many days before its day."""
OVERDUE_AFTER = timedelta(days=3)
"""And as overdue this many days after it."""
AFTER_COMPLETION = timedelta(days=14)
"""How long after the last lesson a call that was not done still counts (then it lapses)."""


@dataclass(frozen=True)
class CallFact:
    """A logged call, as far as the plan needs it."""

    called_at: datetime
    reached: bool
    planned_call: int | None


@dataclass(frozen=True)
class PlannedCall:
    """One of the four planned calls of a participant, for a given day."""

    number: int
    lesson_day: int
    due_date: date | None
    moved: bool
    status: CallStatus
    done_at: datetime | None


def expected_lesson_date(
    day: int, *, start_date: date | None, sent_dates: Mapping[int, date], paused: bool, today: date
) -> date | None:
    """The date the mail of a lesson day was sent, or is expected to be sent."""
    if day in sent_dates:
        return sent_dates[day]
    earlier = [d for d in sent_dates if d < day]
    if earlier:
        last = max(earlier)
        base, offset = sent_dates[last], day - last
    elif start_date is not None:
        base, offset = start_date, day - 1
    else:
        return None
    if paused:
        # Nothing is sent while paused; the earliest the programme can go on is today.
        base = max(base, today)
    return base + timedelta(days=offset)


def _lapsed(status: str, completed_on: date | None, today: date) -> bool:
    return status == "completed" and completed_on is not None and today > completed_on + AFTER_COMPLETION


def planned_calls(
    *,
    start_date: date | None,
    sent_dates: Mapping[int, date],
    moves: Mapping[int, date],
    calls: Sequence[CallFact],
    status: str,
    today: date,
    completed_on: date | None = None,
) -> list[PlannedCall]:
    """The four planned calls with their due dates and status on `today`."""
    planned: list[PlannedCall] = []
    for number, lesson_day in PLANNED_CALL_DAYS.items():
        done = [c.called_at for c in calls if c.reached and c.planned_call == number]
        if number in moves:
            due: date | None = moves[number]
        else:
            due = expected_lesson_date(
                lesson_day, start_date=start_date, sent_dates=sent_dates, paused=status == "paused", today=today
            )
        state: CallStatus
        if done:
            state = "done"
        elif status in ("stopped", "erased") or _lapsed(status, completed_on, today):
            state = "cancelled"
        elif due is None:
            state = "unknown"
        elif today > due + OVERDUE_AFTER:
            state = "overdue"
        elif today >= due - DUE_FROM:
            state = "due"
        else:
            state = "upcoming"
        planned.append(
            PlannedCall(
                number=number,
                lesson_day=lesson_day,
                due_date=due,
                moved=number in moves,
                status=state,
                done_at=min(done) if done else None,
            )
        )
    return planned


def next_call(planned: Sequence[PlannedCall]) -> PlannedCall | None:
    """The first planned call still to do (overdue ones first, as they are the earliest)."""
    return next((p for p in planned if p.status in ("overdue", "due", "upcoming", "unknown")), None)


def suggested_planned_call(planned: Sequence[PlannedCall]) -> int | None:
    """Which planned call a new call most likely is: the next one still to do."""
    upcoming = next_call(planned)
    return upcoming.number if upcoming else None


def calls_due_so_far(planned: Sequence[PlannedCall], today: date) -> tuple[int, int]:
    """(done, due so far): done calls, and calls that are done or whose day has come."""
    done = sum(1 for p in planned if p.status == "done")
    come = sum(
        1
        for p in planned
        if p.status == "overdue" or (p.status == "due" and p.due_date is not None and p.due_date <= today)
    )
    return done, done + come


PlanState = Literal["planned", "done", "suspended", "cancelled"]


@dataclass(frozen=True)
class CallPlanEntry:
    """A planned call as coaching tells other services: a state and dates, no clock needed.

    What the dashboard decides at read time follows from it: a call is on the day's list when
    it is planned, its day has come and it has not lapsed, and overdue from `overdue_from`.
    """

    number: int
    lesson_day: int
    state: PlanState
    due_date: date | None
    overdue_from: date | None
    lapses_after: date | None
    moved: bool


def call_plan(
    *,
    start_date: date | None,
    sent_dates: Mapping[int, date],
    moves: Mapping[int, date],
    calls: Sequence[CallFact],
    status: str,
    completed_on: date | None = None,
) -> list[CallPlanEntry]:
    """The four calls as published: the same rules as `planned_calls`, without a 'today'.

    While paused, a call whose day is neither moved nor already sent has no fixed day (the
    dashboard projects it from today, never earlier than tomorrow): it is suspended.
    """
    entries: list[CallPlanEntry] = []
    for number, lesson_day in PLANNED_CALL_DAYS.items():
        done = any(c.reached and c.planned_call == number for c in calls)
        due: date | None
        if number in moves:
            due = moves[number]
        elif status == "paused":
            due = sent_dates.get(lesson_day)
        else:
            # Not paused: the projection does not depend on today.
            due = expected_lesson_date(
                lesson_day, start_date=start_date, sent_dates=sent_dates, paused=False, today=date.min
            )
        state: PlanState
        if done:
            state = "done"
        elif status in ("stopped", "erased"):
            state = "cancelled"
        elif status == "paused" and due is None:
            state = "suspended"
        else:
            state = "planned"
        entries.append(
            CallPlanEntry(
                number=number,
                lesson_day=lesson_day,
                state=state,
                due_date=due,
                overdue_from=due + OVERDUE_AFTER + timedelta(days=1) if due is not None else None,
                lapses_after=completed_on + AFTER_COMPLETION
                if status == "completed" and completed_on is not None
                else None,
                moved=number in moves,
            )
        )
    return entries


def to_call_today(planned: Sequence[PlannedCall], today: date) -> list[PlannedCall]:
    """The dashboard's calls to make on `today`: due or overdue, and their day has come."""
    return [p for p in planned if p.status in ("due", "overdue") and p.due_date is not None and p.due_date <= today]
