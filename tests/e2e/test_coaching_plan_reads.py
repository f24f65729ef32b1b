"""Call plans and alerts read from PostgreSQL only what the rules use (callplan._READS: per
lesson day the latest sent mail, the last two scores): what they publish equals the rules
applied to every row of the participant, on a history with late, missing and unsent mails."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.coaching.alerts import standing_alerts
from services.coaching.callplan import publish_call_plan
from services.coaching.calls import call_plan
from services.coaching.projection import reports_in_order
from services.coaching.tables import DashboardRow, MailSeen, ReportSeen
from shared.db import Database, asyncpg_dsn
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

TZ = ZoneInfo("Europe/Amsterdam")
START = date(2026, 3, 2)


def sent_moment(day: int) -> datetime | None:
    """Day 1 to 40 sent at 08:00 local on their day, but from day 6 on three days late (a
    pause), day 35 never sent (it failed), day 14 twice (a resend); no mail after day 40."""
    if day == 35:
        return None
    late = timedelta(days=3) if day >= 6 else timedelta(0)
    return datetime(2026, 3, 2, 7, tzinfo=UTC) + timedelta(days=day - 1) + late


@pytest.mark.parametrize("status", ["active", "paused"])
async def test_published_plan_and_alerts_equal_the_rules_on_every_row(infrastructure: None, status: str) -> None:
    participant, org = uuid.uuid4(), uuid.uuid4()
    mails = [
        MailSeen(delivery_id=uuid.uuid4(), participant_id=participant, day=day, sent_at=sent_moment(day))
        for day in range(1, 41)
    ]
    resend = sent_moment(14)
    assert resend is not None
    mails.append(MailSeen(delivery_id=uuid.uuid4(), participant_id=participant, day=14, sent_at=resend))
    scores = [5, 1, 4, 2, 1, 5, 2, 2]  # by day 1..8, stored in another order: the last two are low
    reports = [
        ReportSeen(
            participant_id=participant,
            day=day,
            delivery_id=uuid.uuid4(),
            score=score,
            reported_at=datetime(2026, 3, 10, tzinfo=UTC),
            event_id=uuid.uuid4(),
        )
        for day, score in reversed(list(enumerate(scores, start=1)))
    ]
    now = datetime(2026, 4, 20, 12, tzinfo=UTC)
    row = DashboardRow(
        participant_id=participant,
        org_id=org,
        status=status,
        start_date=START,
        first_sent_at=sent_moment(1),
        last_sent_at=sent_moment(40),
        last_open_at=datetime(2026, 4, 10, tzinfo=UTC),
    )
    async with fresh_database("coaching") as url:
        database = Database(url, pool_size=1)
        try:
            async with database.session() as session:
                session.add_all([row, *mails, *reports])
                await session.commit()
            async with database.session() as session:
                staged = await publish_call_plan(session, participant_id=participant, tz=TZ, now=now)
                await session.commit()
            connection = await asyncpg.connect(asyncpg_dsn(url))
            try:
                told_calls = await connection.fetch(
                    "SELECT number, state, due_date, lapses_after FROM published_call ORDER BY number"
                )
                told_alerts = await connection.fetch("SELECT code, holds_from FROM published_alert ORDER BY code")
            finally:
                await connection.close()
        finally:
            await database.dispose()

    plan = call_plan(
        start_date=START,
        sent_dates={m.day: m.sent_at.astimezone(TZ).date() for m in mails if m.sent_at is not None},
        moves={},
        calls=[],
        status=status,
    )
    standing = standing_alerts(
        status=status,
        without_open_since=row.last_open_at,
        scores=[r.score for r in reports_in_order(reports)],
        failure_unresolved=False,
        now=now,
    )
    assert [(c["number"], c["state"], c["due_date"], c["lapses_after"]) for c in told_calls] == [
        (e.number, e.state, e.due_date, e.lapses_after) for e in plan
    ]
    assert {a["code"]: a["holds_from"] for a in told_alerts} == dict(standing)
    assert "low_scores" in standing and staged > 0
    # The late days moved the calls; call 3 goes by day 34 (35 failed) unless paused.
    assert plan[1].due_date == date(2026, 3, 18)
    assert plan[2].due_date == (date(2026, 4, 8) if status == "active" else None)
