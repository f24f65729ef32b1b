"""The alerts that travel as events: what the coach's morning mail says from them is what the
dashboard shows at that moment, and the events say only what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.coaching.alerts import PUBLISHED_ALERTS, alerts_for, standing_alerts
from services.coaching.callplan import alert_events
from services.coaching.projection import failure_unresolved, mail_figures, without_open_since
from services.coaching.tables import MailSeen
from services.mailer.scheduling import attention_text, holding_alerts
from shared.events import AlertCleared, AlertRaised

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def mail(day: int, *, opened: bool = False, failed: bool = False) -> MailSeen:
    at = START + timedelta(days=day - 1)
    return MailSeen(
        delivery_id=uuid4(),
        participant_id=uuid4(),
        day=day,
        sent_at=None if failed else at,
        failed_at=at if failed else None,
        human_opened_at=at + timedelta(hours=2) if opened else None,
        human_last_opened_at=at + timedelta(hours=2) if opened else None,
    )


SCENARIOS = [
    ("active", [mail(1, opened=True), mail(2), mail(3)], [4, 3]),
    ("active", [mail(1), mail(2)], [2, 1]),
    ("active", [mail(1, opened=True), mail(2, failed=True)], [3]),
    ("active", [mail(1, opened=True), mail(2, failed=True), mail(3)], [1, 2, 5]),
    ("paused", [mail(1), mail(2)], [2, 2]),
    ("stopped", [mail(1), mail(2, failed=True)], [2, 2]),
    ("completed", [mail(d) for d in range(1, 61)], [5, 2]),
    ("erased", [mail(1), mail(2, failed=True)], [1, 1]),
    ("enrolled", [], []),
]


def told_after(told: dict[str, datetime | None], events: list[AlertRaised | AlertCleared]) -> None:
    """What the mailer's copy becomes after coaching's alert events."""
    for event in events:
        if isinstance(event, AlertRaised):
            told[event.code] = event.holds_from
        else:
            told.pop(event.code, None)


@pytest.mark.parametrize(("status", "mails", "scores"), SCENARIOS)
def test_the_mails_attention_line_holds_the_dashboards_alerts_at_every_moment(
    status: str, mails: list[MailSeen], scores: list[int]
) -> None:
    told: dict[str, datetime | None] = {}
    for hours in range(0, 24 * 12, 5):
        now = START + timedelta(hours=hours)
        # Coaching looks at every participant now and then (raise_due_no_open_alerts): here every 5 hours.
        standing = standing_alerts(
            status=status,
            without_open_since=without_open_since(mails),
            scores=scores,
            failure_unresolved=failure_unresolved(mails),
            now=now,
        )
        told_after(told, alert_events(told, standing))
        figures = mail_figures(mails, now)
        dashboard = alerts_for(
            status=status,
            days_without_open=figures.days_without_open,
            scores=scores,
            failure_unresolved=figures.failure_unresolved,
            planned=[],
            unsubscribe_requested_at=None,
            stopped_by=None,
        )
        shown = [alert.code for alert in dashboard if alert.code in PUBLISHED_ALERTS]
        assert sorted(holding_alerts(told, now)) == sorted(shown), f"{status} at +{hours}h"
        if "no_open_3_days" in shown:
            assert f"al {figures.days_without_open} dagen geen mail" in (attention_text(told, now) or "")


def test_opens_of_someone_who_opens_publish_nothing_and_an_open_after_three_days_clears_once() -> None:
    """Each human open moves the moment "no open for 3 days" would hold from; only its start
    (a clock) and the open that ends it travel."""
    events: list[AlertRaised | AlertCleared] = []
    told: dict[str, datetime | None] = {}
    opened: list[MailSeen] = []
    for day in range(1, 8):
        opened.append(mail(day, opened=day != 5))  # day 5's mail stays unopened: one day without is fine
        now = START + timedelta(days=day - 1, hours=3)
        standing = standing_alerts(
            status="active", without_open_since=without_open_since(opened), scores=[], failure_unresolved=False, now=now
        )
        found = alert_events(told, standing)
        told_after(told, found)
        events += found
    assert events == []
    silent = [mail(1, opened=True), mail(2), mail(3), mail(4), mail(5)]
    for hours in range(0, 24 * 5, 1):
        now = START + timedelta(hours=hours)
        standing = standing_alerts(
            status="active", without_open_since=without_open_since(silent), scores=[], failure_unresolved=False, now=now
        )
        found = alert_events(told, standing)
        told_after(told, found)
        events += found
    silent.append(mail(6, opened=True))
    now = START + timedelta(days=5, hours=3)
    standing = standing_alerts(
        status="active", without_open_since=without_open_since(silent), scores=[], failure_unresolved=False, now=now
    )
    events += alert_events(told, standing)
    assert [(type(e).__name__, e.code) for e in events] == [
        ("AlertRaised", "no_open_3_days"),
        ("AlertCleared", "no_open_3_days"),
    ]
    raised = events[0]
    assert isinstance(raised, AlertRaised) and raised.holds_from == START + timedelta(hours=2, days=3)


def test_alerts_are_raised_once_moved_when_their_moment_moves_and_cleared_when_gone() -> None:
    since = START + timedelta(days=3)
    first = alert_events({}, {"no_open_3_days": since, "low_scores": None})
    assert [(type(e), e.code) for e in first] == [(AlertRaised, "no_open_3_days"), (AlertRaised, "low_scores")]
    assert (
        alert_events({"no_open_3_days": since, "low_scores": None}, {"no_open_3_days": since, "low_scores": None}) == []
    )
    later = START + timedelta(days=5)
    (moved,) = alert_events({"no_open_3_days": since}, {"no_open_3_days": later})
    assert isinstance(moved, AlertRaised) and moved.holds_from == later
    (cleared,) = alert_events({"no_open_3_days": since, "low_scores": None}, {"no_open_3_days": since})
    assert isinstance(cleared, AlertCleared) and cleared.code == "low_scores"


def test_no_line_when_nothing_holds_yet() -> None:
    assert attention_text({"no_open_3_days": START + timedelta(days=1)}, START) is None
    assert attention_text({}, START) is None
    assert attention_text({"mail_failed": None}, START) == "een mail kwam niet aan (klopt het e-mailadres nog?)."
