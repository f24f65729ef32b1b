"""The four planned calls follow the lessons, can be moved, and only a reached call completes one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.coaching.calls import (
    CallFact,
    calls_due_so_far,
    expected_lesson_date,
    next_call,
    planned_calls,
    suggested_planned_call,
)

START = date(2026, 3, 2)


def sent(days: int, *, shift: int = 0, from_day: int = 1) -> dict[int, date]:
    """Lessons 1..days sent daily from START; lessons from `from_day` on `shift` days later (a pause)."""
    return {day: START + timedelta(days=day - 1 + (shift if day >= from_day else 0)) for day in range(1, days + 1)}


def test_calls_are_planned_around_the_start_day_14_day_35_and_near_the_end() -> None:
    planned = planned_calls(start_date=START, sent_dates={}, moves={}, calls=[], status="enrolled", today=START)
    assert [(p.number, p.lesson_day) for p in planned] == [(1, 2), (2, 14), (3, 35), (4, 58)]
    assert [p.due_date for p in planned] == [START + timedelta(days=d - 1) for d in (2, 14, 35, 58)]


def test_a_pause_moves_the_calls_that_are_still_to_come() -> None:
    # Lessons 1..20 sent, with a 5-day pause before lesson 11.
    dates = sent(20, shift=5, from_day=11)
    planned = planned_calls(start_date=START, sent_dates=dates, moves={}, calls=[], status="active", today=dates[20])
    assert planned[1].due_date == dates[14]
    assert planned[2].due_date == dates[20] + timedelta(days=15)


def test_while_paused_the_next_lessons_are_expected_from_today_on() -> None:
    dates = sent(10)
    today = dates[10] + timedelta(days=8)
    assert expected_lesson_date(14, start_date=START, sent_dates=dates, paused=True, today=today) == today + timedelta(
        days=4
    )
    assert expected_lesson_date(14, start_date=START, sent_dates=dates, paused=False, today=today) == dates[
        10
    ] + timedelta(days=4)


def test_due_overdue_and_upcoming_on_a_given_day() -> None:
    dates = sent(20)
    planned = planned_calls(start_date=START, sent_dates=dates, moves={}, calls=[], status="active", today=dates[17])
    assert [p.status for p in planned] == ["overdue", "due", "upcoming", "upcoming"]
    assert next_call(planned) is planned[0]
    later = planned_calls(start_date=START, sent_dates=dates, moves={}, calls=[], status="active", today=dates[18])
    assert later[1].status == "overdue"


def test_an_unreached_attempt_does_not_complete_a_planned_call() -> None:
    dates = sent(5)
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    attempts = [CallFact(at, reached=False, planned_call=1)]
    planned = planned_calls(
        start_date=START, sent_dates=dates, moves={}, calls=attempts, status="active", today=dates[5]
    )
    assert planned[0].status == "due"
    reached = [*attempts, CallFact(at + timedelta(days=1), reached=True, planned_call=1)]
    planned = planned_calls(
        start_date=START, sent_dates=dates, moves={}, calls=reached, status="active", today=dates[5]
    )
    assert planned[0].status == "done" and planned[0].done_at == at + timedelta(days=1)
    assert suggested_planned_call(planned) == 2


def test_a_moved_call_is_due_on_its_new_day() -> None:
    dates = sent(20)
    moved = {2: dates[20] + timedelta(days=2)}
    planned = planned_calls(start_date=START, sent_dates=dates, moves=moved, calls=[], status="active", today=dates[20])
    assert planned[1].due_date == moved[2] and planned[1].moved and planned[1].status == "due"


def test_calls_of_a_stopped_participant_lapse_and_after_completion_they_lapse_later() -> None:
    dates = sent(20)
    stopped = planned_calls(start_date=START, sent_dates=dates, moves={}, calls=[], status="stopped", today=dates[20])
    assert {p.status for p in stopped} == {"cancelled"}
    end = START + timedelta(days=59)
    soon = planned_calls(
        start_date=START, sent_dates=sent(60), moves={}, calls=[], status="completed", today=end, completed_on=end
    )
    assert soon[3].status == "due"
    late = planned_calls(
        start_date=START,
        sent_dates=sent(60),
        moves={},
        calls=[],
        status="completed",
        today=end + timedelta(days=15),
        completed_on=end,
    )
    assert late[3].status == "cancelled"


def test_calls_done_against_calls_whose_day_has_come() -> None:
    dates = sent(20)
    at = datetime(2026, 3, 3, 10, tzinfo=UTC)
    planned = planned_calls(
        start_date=START,
        sent_dates=dates,
        moves={},
        calls=[CallFact(at, reached=True, planned_call=1)],
        status="active",
        today=dates[14],
    )
    assert calls_due_so_far(planned, dates[14]) == (1, 2)
    assert calls_due_so_far(planned, dates[13]) == (1, 1)


def test_unknown_without_any_date() -> None:
    planned = planned_calls(start_date=None, sent_dates={}, moves={}, calls=[], status="unknown", today=START)
    assert {p.status for p in planned} == {"unknown"}
