"""One lesson per local day at the participant's own send time, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from services.mailer.scheduling import (
    RecipientSchedule,
    digest_is_due,
    local_send_moment,
    next_check_at,
    next_due_lesson,
    questionnaire_follow_up,
)


def schedule(**overrides: object) -> RecipientSchedule:
    values: dict[str, object] = {
        "start_date": date(2026, 3, 27),
        "send_time": time(8, 0),
        "timezone": "Europe/Amsterdam",
        "status": "active",
        "last_day": 0,
        "last_local_date": None,
    }
    values.update(overrides)
    return RecipientSchedule(**values)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_first_lesson_is_due_at_local_send_time_on_the_start_date() -> None:
    # Amsterdam is UTC+1 in March before the change: 08:00 local is 07:00 UTC.
    assert next_due_lesson(schedule(), utc(2026, 3, 27, 6, 59), programme_days=60) is None
    due = next_due_lesson(schedule(), utc(2026, 3, 27, 7, 0), programme_days=60)
    assert due is not None and due.day == 1 and due.local_date == date(2026, 3, 27)
    assert due.due_at == utc(2026, 3, 27, 7, 0)


def test_send_time_follows_the_clock_change_in_amsterdam() -> None:
    # On 29 March 2026 the clocks go forward: 08:00 local is then 06:00 UTC.
    after = schedule(last_day=2, last_local_date=date(2026, 3, 28))
    assert next_due_lesson(after, utc(2026, 3, 29, 5, 59), programme_days=60) is None
    due = next_due_lesson(after, utc(2026, 3, 29, 6, 0), programme_days=60)
    assert due is not None and due.day == 3 and due.due_at == utc(2026, 3, 29, 6, 0)


def test_two_time_zones_across_their_own_dst_changes() -> None:
    new_york = schedule(timezone="America/New_York", start_date=date(2026, 3, 7), send_time=time(9, 30))
    # New York moves to EDT on 8 March 2026: 09:30 is 14:30 UTC before, 13:30 UTC after.
    assert next_due_lesson(new_york, utc(2026, 3, 7, 14, 30), programme_days=60) is not None
    after = schedule(
        timezone="America/New_York",
        start_date=date(2026, 3, 7),
        send_time=time(9, 30),
        last_day=1,
        last_local_date=date(2026, 3, 7),
    )
    assert next_due_lesson(after, utc(2026, 3, 8, 13, 29), programme_days=60) is None
    assert next_due_lesson(after, utc(2026, 3, 8, 13, 30), programme_days=60) is not None


def test_send_time_inside_the_spring_gap_is_sent_after_the_gap() -> None:
    moment = local_send_moment(date(2026, 3, 29), time(2, 30), "Europe/Amsterdam")
    # 02:30 does not exist that night in Amsterdam; it becomes 01:30 UTC (03:30 CEST).
    assert moment == utc(2026, 3, 29, 1, 30)


def test_at_most_one_lesson_per_local_day() -> None:
    sent_today = schedule(last_day=1, last_local_date=date(2026, 3, 27))
    assert next_due_lesson(sent_today, utc(2026, 3, 27, 22, 0), programme_days=60) is None


def test_a_missed_day_is_not_skipped_but_sent_as_the_next_lesson() -> None:
    # The mailer was down on the 28th and 29th: on the 30th lesson 2 comes, not lesson 4.
    behind = schedule(last_day=1, last_local_date=date(2026, 3, 27))
    due = next_due_lesson(behind, utc(2026, 3, 30, 12, 0), programme_days=60)
    assert due is not None and due.day == 2 and due.local_date == date(2026, 3, 30)


@pytest.mark.parametrize("status", ["paused", "stopped", "completed"])
def test_no_lesson_unless_enrolled_or_active(status: str) -> None:
    assert next_due_lesson(schedule(status=status), utc(2026, 4, 1, 12, 0), programme_days=60) is None


def test_nothing_before_the_start_date_and_nothing_after_the_last_day() -> None:
    assert next_due_lesson(schedule(start_date=date(2026, 4, 1)), utc(2026, 3, 31, 12, 0), programme_days=60) is None
    done = schedule(last_day=60, last_local_date=date(2026, 5, 25))
    assert next_due_lesson(done, utc(2026, 6, 1, 12, 0), programme_days=60) is None


def test_digest_is_due_once_per_local_day_after_its_time() -> None:
    kwargs = {"local_time": time(7, 30), "timezone": "Europe/Amsterdam"}
    # 06:29 UTC is 07:29 in Amsterdam in winter.
    assert digest_is_due(None, utc(2026, 11, 23, 6, 29), **kwargs) is None  # type: ignore[arg-type]
    assert digest_is_due(None, utc(2026, 11, 23, 6, 30), **kwargs) == date(2026, 11, 23)  # type: ignore[arg-type]
    assert digest_is_due(date(2026, 11, 23), utc(2026, 11, 23, 15, 0), **kwargs) is None  # type: ignore[arg-type]
    assert digest_is_due(date(2026, 11, 23), utc(2026, 11, 24, 6, 30), **kwargs) == date(2026, 11, 24)  # type: ignore[arg-type]


def test_next_check_is_the_next_possible_send_moment() -> None:
    before_start = schedule(start_date=date(2026, 4, 1))
    assert next_check_at(before_start, utc(2026, 3, 20, 12, 0), programme_days=60) == utc(2026, 4, 1, 6, 0)
    sent_today = schedule(last_day=3, last_local_date=date(2026, 4, 3))
    assert next_check_at(sent_today, utc(2026, 4, 3, 9, 0), programme_days=60) == utc(2026, 4, 4, 6, 0)
    # Behind after an outage: the next chance is today's send time, not a day in the past.
    behind = schedule(last_day=3, last_local_date=date(2026, 4, 3))
    assert next_check_at(behind, utc(2026, 4, 10, 5, 0), programme_days=60) == utc(2026, 4, 10, 6, 0)
    assert next_check_at(schedule(status="paused"), utc(2026, 4, 10, 5, 0), programme_days=60) is None
    assert next_check_at(schedule(last_day=60), utc(2026, 4, 10, 5, 0), programme_days=60) is None
    # Each of those moments is exactly when next_due_lesson starts answering.
    moment = next_check_at(behind, utc(2026, 4, 10, 5, 0), programme_days=60)
    assert moment is not None
    assert next_due_lesson(behind, moment - timedelta(seconds=1), programme_days=60) is None
    assert next_due_lesson(behind, moment, programme_days=60) is not None


@pytest.mark.parametrize(
    ("completed", "follow_up"),
    [
        (datetime(2026, 11, 23, 8, tzinfo=UTC), datetime(2027, 2, 23, 8, tzinfo=UTC)),
        (datetime(2026, 11, 30, 8, tzinfo=UTC), datetime(2027, 2, 28, 8, tzinfo=UTC)),
        (datetime(2027, 11, 30, 8, tzinfo=UTC), datetime(2028, 2, 29, 8, tzinfo=UTC)),
        (datetime(2026, 9, 30, 8, tzinfo=UTC), datetime(2026, 12, 30, 8, tzinfo=UTC)),
        (datetime(2026, 10, 31, 8, tzinfo=UTC), datetime(2027, 1, 31, 8, tzinfo=UTC)),
    ],
)
def test_the_follow_up_questionnaire_comes_three_months_later_and_its_reminder_a_week_after(
    completed: datetime, follow_up: datetime
) -> None:
    assert questionnaire_follow_up(completed) == (follow_up, follow_up + timedelta(days=7))
