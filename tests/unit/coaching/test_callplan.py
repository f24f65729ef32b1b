"""The call plan coaching publishes: what the mailer lists from it is what the dashboard shows,
the events say only what changed, and the plan fits the lessons that announce the calls."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest

from services.coaching.callplan import Told, plan_events
from services.coaching.calls import (
    PLANNED_CALL_DAYS,
    CallFact,
    call_plan,
    planned_calls,
    to_call_today,
)
from services.mailer.programme import load_pack
from services.mailer.scheduling import call_urgency
from shared.events import CallCancelled, CallMoved, CallPlanned, CallSuspended

START = date(2026, 3, 2)


def sent(days: int, *, pause_after: int | None = None, pause_days: int = 0) -> dict[int, date]:
    """Lessons 1..days sent daily from START, with a pause of `pause_days` after lesson `pause_after`."""
    return {
        day: START + timedelta(days=day - 1 + (pause_days if pause_after is not None and day > pause_after else 0))
        for day in range(1, days + 1)
    }


SCENARIOS = [
    # (status, sent dates, moves, calls, completed_on)
    ("enrolled", {}, {}, [], None),
    ("active", sent(10), {}, [], None),
    ("active", sent(20, pause_after=8, pause_days=6), {2: START + timedelta(days=5)}, [], None),
    ("active", sent(40), {}, [CallFact(datetime(2026, 3, 4, 10), True, 1)], None),
    ("active", sent(40), {}, [CallFact(datetime(2026, 3, 4, 10), False, 1)], None),
    ("paused", sent(12), {}, [], None),
    ("paused", sent(12), {3: START + timedelta(days=20)}, [], None),
    ("paused", sent(30), {}, [], None),
    ("stopped", sent(16), {}, [], None),
    ("erased", sent(16), {}, [], None),
    ("completed", sent(60), {}, [], START + timedelta(days=59)),
    (
        "completed",
        sent(60, pause_after=30, pause_days=4),
        {4: START + timedelta(days=70)},
        [],
        START + timedelta(days=63),
    ),
]


@pytest.mark.parametrize(("status", "sent_dates", "moves", "calls", "completed_on"), SCENARIOS)
def test_the_mailers_list_from_the_published_plan_is_the_dashboards_list_on_every_day(
    status: str, sent_dates: dict[int, date], moves: dict[int, date], calls: list[CallFact], completed_on: date | None
) -> None:
    published = call_plan(
        start_date=START, sent_dates=sent_dates, moves=moves, calls=calls, status=status, completed_on=completed_on
    )
    for offset in range(-5, 100):
        today = START + timedelta(days=offset)
        dashboard = planned_calls(
            start_date=START,
            sent_dates=sent_dates,
            moves=moves,
            calls=calls,
            status=status,
            today=today,
            completed_on=completed_on,
        )
        shown = {(p.number, p.status == "overdue") for p in to_call_today(dashboard, today)}
        mailed = set()
        for entry in published:
            urgency = call_urgency(
                state=entry.state,
                due_date=entry.due_date,
                overdue_from=entry.overdue_from,
                lapses_after=entry.lapses_after,
                today=today,
            )
            if urgency is not None:
                mailed.add((entry.number, urgency == "overdue"))
        assert mailed == shown, f"{status} on day {offset}"


def test_a_plan_is_published_once_and_then_only_what_changed() -> None:
    plan = call_plan(start_date=START, sent_dates={}, moves={}, calls=[], status="enrolled")
    first = plan_events({}, plan)
    assert [type(e) for e in first] == [CallPlanned] * 4
    told = {entry.number: Told(entry.state, entry.due_date, entry.lapses_after) for entry in plan}
    assert plan_events(told, plan) == []

    moved = call_plan(start_date=START, sent_dates={}, moves={2: START}, calls=[], status="enrolled")
    (event,) = plan_events(told, moved, moved=2)
    assert isinstance(event, CallMoved) and event.number == 2 and event.due_date == START
    assert event.overdue_from == START + timedelta(days=4)


def test_pause_suspends_open_calls_and_stop_cancels_them_but_done_calls_send_nothing() -> None:
    active = call_plan(start_date=START, sent_dates=sent(3), moves={}, calls=[], status="active")
    told = {entry.number: Told(entry.state, entry.due_date, entry.lapses_after) for entry in active}
    done = [CallFact(datetime(2026, 3, 3, 9), True, 1)]
    paused = call_plan(start_date=START, sent_dates=sent(3), moves={}, calls=done, status="paused")
    assert [type(e) for e in plan_events(told, paused)] == [CallSuspended] * 3
    stopped = call_plan(start_date=START, sent_dates=sent(3), moves={}, calls=done, status="stopped")
    assert [(type(e), e.number) for e in plan_events(told, stopped)] == [  # type: ignore[attr-defined]
        (CallCancelled, 2),
        (CallCancelled, 3),
        (CallCancelled, 4),
    ]


CALL_ANNOUNCEMENT = re.compile(r"belt \{coach\}|\{coach\} belt je")
"""How a lesson tells the participant that their coach will call ("Deze week belt {coach} je …")."""


@pytest.mark.parametrize("variant", load_pack().variants)
def test_each_planned_call_falls_in_the_week_its_lesson_announces_it(variant: str) -> None:
    pack = load_pack()
    announcing = [
        day for day in range(1, pack.days + 1) if CALL_ANNOUNCEMENT.search(pack.lesson(variant, day).body_markdown)
    ]
    assert len(announcing) == len(PLANNED_CALL_DAYS), f"{variant}: lessons announcing a call: {announcing}"
    for (number, lesson_day), announced in zip(sorted(PLANNED_CALL_DAYS.items()), announcing, strict=True):
        assert announced <= lesson_day < announced + 7, f"{variant}: call {number} at lesson {lesson_day}"
        assert lesson_day <= pack.days
