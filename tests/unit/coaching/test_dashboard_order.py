"""The dashboard's order and filters: the page and the JSON API show participants the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from services.coaching.dashboard import (
    DASHBOARD_FILTERS,
    Summarised,
    filter_counts,
    in_dashboard_order,
    matches,
)
from services.coaching.tables import AlertPublic, ParticipantSummary, PlannedCallPublic


def line(
    first_name: str | None,
    *,
    status: str = "active",
    alert: bool = False,
    call: str | None = None,
    participant_id: UUID | None = None,
) -> Summarised:
    summary = ParticipantSummary(
        participant_id=participant_id or uuid4(),
        org_id=uuid4(),
        coach_id=None,
        coach_name=None,
        first_name=first_name,
        phone=None,
        status=status,
        lesson_day=1,
        lesson_title=None,
        mails_sent=0,
        mails_opened=0,
        mails_opened_automated_only=0,
        mails_failed=0,
        open_rate=None,
        open_rate_7d=None,
        last_open_at=None,
        days_without_open=None,
        latest_reports=[],
        report_trend=None,
        calls_reached=0,
        calls_attempted=0,
        next_call=None
        if call is None
        else PlannedCallPublic(number=1, lesson_day=1, due_date=None, moved=False, status=call, done_at=None),
        alerts=[AlertPublic(code="no_open_3_days", message="Al drie dagen geen mail geopend.")] if alert else [],
        updated_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    return Summarised(summary=summary, planned=[], mails=[], reports=[])


def names(lines: list[Summarised]) -> list[str | None]:
    return [each.summary.first_name for each in lines]


def test_alerts_first_then_calls_due_then_the_rest_and_finished_ones_last() -> None:
    lines = [
        line("Anna", status="completed", alert=True),
        line("Bert"),
        line("Cor", call="overdue"),
        line("Dina", alert=True, call="due"),
        line("Els", status="stopped"),
        line("Fien", call="due"),
        line("Gijs", call="upcoming"),
        line("Henk", alert=True),
    ]
    assert names(in_dashboard_order(lines)) == ["Dina", "Henk", "Cor", "Fien", "Bert", "Gijs", "Anna", "Els"]


def test_within_a_rank_by_name_in_any_case_then_by_id_whatever_the_order_given() -> None:
    first, second = UUID(int=1), UUID(int=2)
    lines = [
        line("bert"),
        line("Ans", participant_id=second),
        line(None),
        line("ans", participant_id=first),
        line("Carla"),
    ]
    expected = [None, "ans", "Ans", "bert", "Carla"]
    assert names(in_dashboard_order(lines)) == expected
    assert names(in_dashboard_order(list(reversed(lines)))) == expected


def test_a_filter_keeps_the_order_and_counts_what_it_shows() -> None:
    lines = [
        line("Bert"),
        line("Cor", call="overdue"),
        line("Dina", alert=True, call="due"),
        line("Els", status="completed"),
        line("Fien", call="due", status="stopped"),
    ]
    assert names(in_dashboard_order(lines, "attention")) == ["Dina"]
    assert names(in_dashboard_order(lines, "call_due")) == ["Dina", "Cor", "Fien"]
    assert names(in_dashboard_order(lines, "finished")) == ["Els", "Fien"]
    assert names(in_dashboard_order(lines, "all")) == names(in_dashboard_order(lines))
    assert filter_counts(lines) == {"all": 5, "attention": 1, "call_due": 3, "finished": 2}
    for chosen in DASHBOARD_FILTERS:
        assert filter_counts(lines)[chosen] == sum(matches(each.summary, chosen) for each in lines)


def test_an_upcoming_or_done_call_is_not_due() -> None:
    for status in ("upcoming", "done", "cancelled", "unknown"):
        assert not matches(line("Ans", call=status).summary, "call_due")
    assert not matches(line("Ans").summary, "call_due")
