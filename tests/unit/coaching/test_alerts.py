"""Alerts a coach can act on."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.coaching.alerts import alerts_for
from services.coaching.calls import PlannedCall

CALM = {
    "status": "active",
    "days_without_open": 1,
    "scores": [4, 3],
    "failure_unresolved": False,
    "planned": [],
    "unsubscribe_requested_at": None,
    "stopped_by": None,
}


def codes(**changes: object) -> list[str]:
    return [alert.code for alert in alerts_for(**{**CALM, **changes})]  # type: ignore[arg-type]


def test_nothing_to_act_on() -> None:
    assert codes() == []


def test_no_open_for_three_days_only_while_the_mails_go_out() -> None:
    assert codes(days_without_open=3) == ["no_open_3_days"]
    assert codes(days_without_open=2) == []
    assert codes(days_without_open=5, status="paused") == ["paused"]
    assert codes(days_without_open=5, status="completed") == []


def test_two_low_scores_in_a_row() -> None:
    assert codes(scores=[5, 2, 1]) == ["low_scores"]
    assert codes(scores=[2, 4, 1]) == []


def test_a_failed_mail() -> None:
    assert codes(failure_unresolved=True) == ["mail_failed"]


def test_an_overdue_call_names_the_call_and_its_day() -> None:
    overdue = PlannedCall(2, 14, date(2026, 3, 15), False, "overdue", None)
    alerts = alerts_for(**{**CALM, "planned": [overdue]})  # type: ignore[arg-type]
    assert [a.code for a in alerts] == ["call_overdue"]
    assert "Gesprek 2" in alerts[0].message and "15-03" in alerts[0].message


def test_paused_stopped_and_wanting_to_stop() -> None:
    assert codes(status="paused") == ["paused"]
    assert codes(status="stopped", stopped_by="participant") == ["stopped"]
    assert codes(unsubscribe_requested_at=datetime(2026, 3, 1, tzinfo=UTC)) == ["wants_to_stop"]
