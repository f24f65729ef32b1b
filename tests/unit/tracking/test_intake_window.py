"""When an intake answer is still the intake: before the participant's day-2 lesson was sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tracking.questionnaire import MOMENTS, intake_closed

DAY_2_SENT = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)


def test_the_intake_is_open_until_the_day_2_lesson_is_sent() -> None:
    assert not intake_closed("intake", DAY_2_SENT - timedelta(seconds=1), DAY_2_SENT)
    assert intake_closed("intake", DAY_2_SENT, DAY_2_SENT)
    assert intake_closed("intake", DAY_2_SENT + timedelta(days=30), DAY_2_SENT)


def test_the_intake_is_open_while_no_later_lesson_was_sent() -> None:
    # A participant who paused after day 1 has not had lesson 2 yet, however long ago day 1 was.
    assert not intake_closed("intake", DAY_2_SENT + timedelta(days=365), None)


@pytest.mark.parametrize("moment", [m for m in MOMENTS if m != "intake"])
def test_the_later_moments_are_not_closed_by_lessons(moment: str) -> None:
    assert not intake_closed(moment, DAY_2_SENT + timedelta(days=90), DAY_2_SENT)  # type: ignore[arg-type]
