"""The live consumer weighs a batch's first sends and opens against what was told, without
reading the tables: for random histories and batches, that gives what the rules give when
applied to all the stored rows (and it takes that shortcut often, or it would be no use)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from services.coaching.alerts import standing_alerts
from services.coaching.callplan import NO_OPEN_CODE, Told, alert_events, current_plan, no_open_only, sends_keep_plan
from services.coaching.calls import PLANNED_CALL_DAYS
from services.coaching.memory_store import RECORDS, LiveBatchStore, Written
from services.coaching.storage import Children
from services.coaching.tables import DashboardRow, MailSeen

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 3, 2)
STATUSES = ("active", "active", "active", "paused", "stopped", "completed", "erased")


def _moment(day: int, rng: random.Random, late: int) -> datetime:
    """When the mail of `day` goes out: daily from the start, `late` days later after a pause,
    at a time that may fall on the next local day (the plan reads local dates)."""
    return datetime.combine(START, datetime.min.time(), UTC) + timedelta(
        days=day - 1 + late, hours=rng.choice((5, 7, 22, 23))
    )


def _history(rng: random.Random) -> tuple[Any, list[Any], dict[int, date], list[Any]]:
    """A participant's row, sent mails (with gaps, pauses and resends), moves and calls."""
    participant_id = uuid4()
    status = rng.choice(STATUSES)
    late, mails = 0, []
    for day in range(1, rng.randint(0, 62) + 1):
        if rng.random() < 0.05:
            late += rng.randint(1, 6)  # a pause: the next mails go out later
        if rng.random() < 0.08:
            continue  # a lesson not sent (yet)
        for _ in range(2 if rng.random() < 0.05 else 1):  # a resend of the same lesson
            mails.append(SimpleNamespace(day=day, sent_at=_moment(day, rng, late + rng.randint(0, 1))))
    moves = {n: START + timedelta(days=rng.randint(0, 70)) for n in PLANNED_CALL_DAYS if rng.random() < 0.1}
    calls = [
        SimpleNamespace(called_at=datetime(2026, 3, 5, tzinfo=UTC), reached=rng.random() < 0.7, planned_call=n)
        for n in PLANNED_CALL_DAYS
        if rng.random() < 0.15
    ]
    row = SimpleNamespace(
        participant_id=participant_id,
        start_date=START,
        status=status,
        completed_at=datetime(2026, 5, 1, tzinfo=UTC) if status == "completed" else None,
        programme_completed_at=None,
    )
    return row, mails, moves, calls


def _plan(row: Any, mails: list[Any], moves: dict[int, date], calls: list[Any]) -> dict[int, Told]:
    """The rules on the stored rows: every mail of the participant, as the tables hold them."""
    ordered = sorted(mails, key=lambda m: (m.day, m.sent_at))  # the latest send of a day counts last
    kids = Children(
        mails={row.participant_id: ordered},
        reports={},
        calls={row.participant_id: calls},
        moves={row.participant_id: [SimpleNamespace(number=n, due_date=d) for n, d in moves.items()]},  # type: ignore[misc]
    )
    return {e.number: Told(e.state, e.due_date, e.lapses_after) for e in current_plan(row, kids, TZ)}


def test_first_sends_leave_the_plan_told_only_when_the_rules_on_the_tables_say_so() -> None:
    rng = random.Random(15)
    kept = 0
    for _ in range(4000):
        row, mails, moves, calls = _history(rng)
        told = _plan(row, mails, moves, calls)
        after_last = max((m.day for m in mails), default=0)
        # The batch: first sends of the next lessons (usually), or of a lesson skipped or resent.
        new = [
            SimpleNamespace(day=day, sent_at=_moment(day, rng, rng.choice((0, 0, 0, 1, 5))))
            for day in rng.sample(range(1, after_last + 4), k=min(rng.randint(1, 3), after_last + 3))
        ]
        sends = [(m.day, m.sent_at.astimezone(TZ).date()) for m in new]
        if sends_keep_plan(told, sends, paused=row.status == "paused"):
            kept += 1
            assert _plan(row, mails + new, moves, calls) == told
    assert kept > 400  # the shortcut is taken often enough to test it (and is the usual case live)


def test_an_open_weighs_only_no_open_against_what_was_told_and_publishes_what_the_full_rules_do() -> None:
    rng = random.Random(7)
    quiet = 0
    base = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for _ in range(4000):
        status = rng.choice(STATUSES)
        scores = [rng.randint(1, 5) for _ in range(rng.randint(0, 4))]
        failure = rng.random() < 0.2
        since_before = base + timedelta(hours=rng.randint(0, 24 * 10))
        # What was told: the rules at the last change, or the clock's raise of "no open" since.
        told_at = since_before + timedelta(hours=rng.randint(0, 24 * 6))
        told = dict(
            standing_alerts(
                status=status, without_open_since=since_before, scores=scores, failure_unresolved=failure, now=told_at
            )
        )
        now = told_at + timedelta(hours=rng.randint(0, 48))
        since_after = since_before + timedelta(hours=rng.randint(1, 24 * 6))  # the batch's opens
        full = alert_events(
            told,
            standing_alerts(
                status=status, without_open_since=since_after, scores=scores, failure_unresolved=failure, now=now
            ),
        )
        quick = alert_events(*no_open_only(told, status=status, without_open_since=since_after, now=now))
        assert quick == full
        quiet += not full
    assert 500 < quiet < 4000  # both kinds of batch were tried


def _record(table: type, **values: Any) -> Any:
    return RECORDS[table](**values)


@pytest.mark.parametrize(
    ("earlier_sent", "now_sent", "expected"),
    [
        (None, datetime(2026, 3, 2, 7, tzinfo=UTC), "sends"),
        (datetime(2026, 3, 3, 7, tzinfo=UTC), datetime(2026, 3, 2, 7, tzinfo=UTC), "full"),
        (None, None, "nothing"),
    ],
)
def test_a_mail_sent_for_the_first_time_is_weighed_against_the_plan_told_and_an_earlier_send_is_not(
    earlier_sent: datetime | None, now_sent: datetime | None, expected: str
) -> None:
    participant_id, delivery_id = uuid4(), uuid4()
    before = _record(MailSeen, delivery_id=delivery_id, participant_id=participant_id, day=3, sent_at=earlier_sent)
    after = _record(MailSeen, delivery_id=delivery_id, participant_id=participant_id, day=3, sent_at=now_sent)
    written = Written()
    LiveBatchStore._note(MailSeen, before, after, written)
    found = (
        "full" if participant_id in written.plan_changed else "sends" if participant_id in written.sends else "nothing"
    )
    assert found == expected
    if expected == "sends":
        assert written.sends[participant_id] == [(3, now_sent)]


def test_only_an_open_on_the_row_is_weighed_as_an_open_and_anything_else_by_the_full_rules() -> None:
    org_id, participant_id = uuid4(), uuid4()
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    row = dict(participant_id=participant_id, org_id=org_id, updated_at=at, status="active", start_date=START)
    before = _record(DashboardRow, **row, first_sent_at=at)
    opened = _record(DashboardRow, **row, first_sent_at=at, last_open_at=at + timedelta(hours=1))
    written = Written()
    LiveBatchStore._note(DashboardRow, before, opened, written)
    assert written.opened == {participant_id} and not written.alerts_changed and not written.plan_changed

    failed = _record(DashboardRow, **row, first_sent_at=at, last_open_at=at, last_failed_at=at)
    written = Written()
    LiveBatchStore._note(DashboardRow, before, failed, written)
    assert written.alerts_changed == {participant_id} and not written.opened

    written = Written()
    LiveBatchStore._note(DashboardRow, None, opened, written)  # a new row: everything from the rules
    assert written.alerts_changed == written.plan_changed == {participant_id}
    assert NO_OPEN_CODE == "no_open_3_days"


def test_a_new_start_weighs_the_alerts_by_the_full_rules_too() -> None:
    org_id, participant_id = uuid4(), uuid4()
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    row = dict(participant_id=participant_id, org_id=org_id, updated_at=at, status="active", first_sent_at=at)
    before = _record(DashboardRow, **row)  # mails and reports came before the enrolment
    enrolled = _record(DashboardRow, **row, start_date=START, last_open_at=at + timedelta(hours=1))
    written = Written()
    LiveBatchStore._note(DashboardRow, before, enrolled, written)
    assert written.alerts_changed == written.plan_changed == {participant_id} and not written.opened
