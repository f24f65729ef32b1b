"""Publishing what the coach's morning mail needs: the call plan and the alerts.

After every change that can move a planned call, coaching compares the four calls with
what it last told the other services and puts the differences in the outbox
(call.planned, call.moved, call.suspended, call.cancelled). A call that is done needs no
event of its own: call.logged (reached, with its planned call) says so. In the same way
the dashboard's alerts that travel (no open for 3 days, two low scores, a failed mail)
go out as alert.raised and alert.cleared. The events carry ids, codes and dates only.
"No open for 3 days" is raised when it starts to hold (a clock: raise_due_no_open_alerts)
and cleared by the open that ends it, so the opens of someone who reads their mails
publish nothing.
"""

from __future__ import annotations

import asyncio
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.alerts import NO_OPEN_DURATION, standing_alerts
from services.coaching.calls import PLANNED_CALL_DAYS, CallFact, CallPlanEntry, call_plan
from services.coaching.projection import reports_in_order
from services.coaching.storage import Children
from services.coaching.tables import (
    DashboardRow,
)
from shared.db import Database, utcnow
from shared.events import (
    AlertCleared,
    AlertRaised,
    CallCancelled,
    CallMoved,
    CallPlanned,
    CallSuspended,
    Envelope,
    Payload,
)
from shared.logging import get_logger
from shared.outbox import add_to_outbox_raw

log = get_logger(__name__)


@dataclass(frozen=True)
class Publish:
    """What may have changed after an event: the call plan, the alerts, or both."""

    plan: bool
    alerts: bool

    def __bool__(self) -> bool:
        return self.plan or self.alerts


EVERYTHING = Publish(plan=True, alerts=True)


@dataclass(frozen=True)
class Told:
    """What was last published about one planned call."""

    state: str
    due_date: date | None
    lapses_after: date | None


def plan_events(told: Mapping[int, Told], plan: Sequence[CallPlanEntry], *, moved: int | None = None) -> list[Payload]:
    """The events that bring the other services from `told` to `plan` (nothing when nothing changed)."""
    found: list[Payload] = []
    for entry in plan:
        before = told.get(entry.number)
        if before == Told(entry.state, entry.due_date, entry.lapses_after):
            continue
        if entry.state == "done" or (before is None and entry.state == "cancelled"):
            continue  # call.logged tells it; or nobody ever heard of this call
        fields = {
            "number": entry.number,
            "lesson_day": entry.lesson_day,
            "due_date": entry.due_date,
            "overdue_from": entry.overdue_from,
            "lapses_after": entry.lapses_after,
        }
        if entry.state == "cancelled":
            found.append(CallCancelled(**fields))
        elif entry.state == "suspended":
            found.append(CallSuspended(**fields))
        elif entry.number == moved:
            found.append(CallMoved(**fields))
        else:
            found.append(CallPlanned(**fields))
    return found


def current_plan(row: DashboardRow, kids: Children, tz: ZoneInfo) -> list[CallPlanEntry]:
    """The four calls of one participant from the stored rows, with the dashboard's own inputs."""
    ended = row.completed_at or row.programme_completed_at
    return call_plan(
        start_date=row.start_date,
        sent_dates={
            m.day: m.sent_at.astimezone(tz).date()
            for m in kids.mails.get(row.participant_id, [])
            if m.sent_at is not None
        },
        moves={move.number: move.due_date for move in kids.moves.get(row.participant_id, [])},
        calls=[CallFact(c.called_at, c.reached, c.planned_call) for c in kids.calls.get(row.participant_id, [])],
        status=row.status,
        completed_on=ended.astimezone(tz).date() if ended else None,
    )


def sends_keep_plan(told: Mapping[int, Told], sent_on: Sequence[tuple[int, date]], *, paused: bool) -> bool:
    """True when mails sent for the first time (lesson day, local date sent) leave the plan
    `told` as it is, so it need not be computed again from the tables.

    `told` is the plan computed from the tables the last time an input changed (every change
    of an input recomputes it), so only the calls whose lesson day such a mail may be the
    latest sent mail for can move, and if it is, their due date becomes its date projected to
    the lesson day (calls.expected_lesson_date; while paused only the lesson day's own mail
    counts). When that is the date told, the plan is the same whether or not the mail is the
    latest; any other case (a call never told, another date, a move) is left to the full rules.
    """
    for day, sent_date in sent_on:
        for number, lesson_day in PLANNED_CALL_DAYS.items():
            if day > lesson_day or (paused and day != lesson_day):
                continue
            before = told.get(number)
            if before is None or before.due_date != sent_date + timedelta(days=lesson_day - day):
                return False
    return True


def no_open_only(
    told: Mapping[str, datetime | None], *, status: str, without_open_since: datetime | None, now: datetime
) -> tuple[dict[str, datetime | None], dict[str, datetime | None]]:
    """What was told and what stands of "no open for 3 days" alone, for a participant of whom
    only the moment without opens changed: the other published alerts read what did not
    change, so what was told of them still stands (as `told` is the rules' result from the
    last change of their inputs)."""
    standing = standing_alerts(
        status=status, without_open_since=without_open_since, scores=(), failure_unresolved=False, now=now
    )
    return (
        {code: holds for code, holds in told.items() if code == NO_OPEN_CODE},
        {code: holds for code, holds in standing.items() if code == NO_OPEN_CODE},
    )


NO_OPEN_CODE = "no_open_3_days"


@dataclass(frozen=True)
class PlanRequest:
    """What to recompute for one participant, as of when (the last event that asked)."""

    what: Publish
    now: datetime
    moved: int | None = None
    sends: tuple[tuple[int, datetime], ...] | None = None
    """Set when the plan is asked for only because of these mails, sent for the first time
    (lesson day, sent at): the plan told is tried first (sends_keep_plan)."""
    opens_only: bool = False
    """The alerts are asked for only because the moment without opens changed (no_open_only)."""


_PLANNED_LESSON_DAYS = sorted(set(PLANNED_CALL_DAYS.values()))

_READS: dict[str, str] = {
    # The plan reads, per planned call, the mail of its lesson day or else the last one sent
    # before it (calls.expected_lesson_date): per participant and lesson day only the latest
    # sent mail up to that day, at most four rows however long the programme has run.
    "mails": """
SELECT p.participant_id, m.day, m.sent_at
FROM unnest($1::uuid[]) AS p (participant_id)
CROSS JOIN unnest($2::int[]) AS lesson (day)
CROSS JOIN LATERAL (
  SELECT mail.day, mail.sent_at FROM mail_seen AS mail
  WHERE mail.participant_id = p.participant_id AND mail.day <= lesson.day AND mail.sent_at IS NOT NULL
  ORDER BY mail.day DESC, mail.sent_at DESC, mail.delivery_id LIMIT 1
) AS m""",
    # The alerts read the last two scores (projection.two_low_scores_in_a_row).
    "reports": """
SELECT p.participant_id, r.day, r.score
FROM unnest($1::uuid[]) AS p (participant_id)
CROSS JOIN LATERAL (
  SELECT report.day, report.score FROM report_seen AS report
  WHERE report.participant_id = p.participant_id ORDER BY report.day DESC LIMIT 2
) AS r""",
    "calls": "SELECT participant_id, called_at, reached, planned_call FROM call_seen WHERE participant_id = ANY($1)",
    "moves": "SELECT participant_id, number, due_date FROM planned_call_move WHERE participant_id = ANY($1)",
    "told_calls": "SELECT participant_id, number, state, due_date, lapses_after FROM published_call "
    "WHERE participant_id = ANY($1)",
    "told_alerts": "SELECT participant_id, code, holds_from FROM published_alert WHERE participant_id = ANY($1)",
}
"""What the rules read, per kind: only the columns (and rows) they use, as plain rows."""


_ROWS: dict[str, Any] = {}
"""A named tuple per kind of _READS: rows whose columns the rules read as attributes, at the
cost of a tuple (no ORM object per row)."""


async def _grouped(connection: asyncpg.Connection, kind: str, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
    """The rows of one kind (_READS) of these participants, by participant. Call after a flush."""
    grouped: dict[UUID, list[Any]] = {participant_id: [] for participant_id in ids}
    if ids:
        extra = (_PLANNED_LESSON_DAYS,) if kind == "mails" else ()
        found = await connection.fetch(_READS[kind], list(ids), *extra)
        if found:
            row = _ROWS.get(kind) or _ROWS.setdefault(kind, namedtuple(f"{kind}_row", found[0].keys()))
            for values in found:
                grouped[values[0]].append(row._make(values))
    return grouped


async def publish_call_plan(
    session: AsyncSession,
    *,
    participant_id: UUID,
    tz: ZoneInfo,
    now: datetime,
    moved: int | None = None,
    what: Publish = EVERYTHING,
) -> int:
    """Stage the events for what changed in a participant's call plan and alerts; returns how many."""
    return await publish_call_plans(session, {participant_id: PlanRequest(what, now, moved)}, tz=tz)


async def publish_call_plans(
    session: AsyncSession,
    requests: Mapping[UUID, PlanRequest],
    *,
    tz: ZoneInfo,
    rows: Mapping[UUID, Any] | None = None,
) -> int:
    """publish_call_plan for many participants at once (a consumer batch): what the rules read
    is loaded for all of them in a few queries, each participant is compared alone, and what
    was told is written in one statement per table. `rows`: the participants' rows as the
    caller holds them (the consumer's records, already written); else they are read here."""
    found: dict[UUID, Any] = {}
    for participant_id in sorted(requests):
        row = rows.get(participant_id) if rows is not None else await session.get(DashboardRow, participant_id)
        if not requests[participant_id].what or row is None or (row.start_date is None and row.status != "erased"):
            continue  # not enrolled yet (a mail may arrive before the enrolment): nothing to tell
        found[participant_id] = row
    if not found:
        return 0
    await session.flush()  # the rows below are read with plain SQL: this unit of work's changes first
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    ids = list(found)
    told_calls = await _grouped(raw, "told_calls", [p for p in ids if requests[p].what.plan])
    plans = [
        p
        for p in ids
        if requests[p].what.plan
        and not (
            requests[p].sends is not None
            and sends_keep_plan(
                {t.number: Told(t.state, t.due_date, t.lapses_after) for t in told_calls[p]},
                [(day, sent_at.astimezone(tz).date()) for day, sent_at in requests[p].sends or ()],
                paused=found[p].status == "paused",
            )
        )
    ]
    alerts = [p for p in ids if requests[p].what.alerts]
    told_alerts = await _grouped(raw, "told_alerts", alerts)
    # Plain rows stand in for the tables' objects: the rules only read their columns.
    kids = Children(
        mails=await _grouped(raw, "mails", plans),
        reports=await _grouped(raw, "reports", [p for p in alerts if not requests[p].opens_only]),
        calls=await _grouped(raw, "calls", plans),
        moves=await _grouped(raw, "moves", plans),
    )
    calls: list[dict[str, Any]] = []
    alerts_held: list[dict[str, Any]] = []
    alerts_gone: list[tuple[UUID, str]] = []
    events: list[Envelope] = []
    for participant_id in alerts:
        row, now = found[participant_id], requests[participant_id].now
        stored = {told.code: told.holds_from for told in told_alerts[participant_id]}
        if requests[participant_id].opens_only:
            stored, standing = no_open_only(
                stored, status=row.status, without_open_since=row.last_open_at or row.first_sent_at, now=now
            )
        else:
            standing = _standing_alerts(row, kids, now)
        for payload in alert_events(stored, standing):
            events.append(Envelope.wrap(payload, org_id=row.org_id, participant_id=participant_id, occurred_at=now))
        alerts_held += [
            {"participant_id": participant_id, "code": code, "holds_from": holds_from}
            for code, holds_from in standing.items()
            if code not in stored or stored[code] != holds_from
        ]
        alerts_gone += [(participant_id, code) for code in stored if code not in standing]
    for participant_id in plans:
        row, request = found[participant_id], requests[participant_id]
        plan = current_plan(row, kids, tz)
        told = {t.number: Told(t.state, t.due_date, t.lapses_after) for t in told_calls[participant_id]}
        if row.status != "erased":  # participant.erased itself tells the other services to forget the plan
            for call in plan_events(told, plan, moved=request.moved):
                events.append(
                    Envelope.wrap(call, org_id=row.org_id, participant_id=participant_id, occurred_at=request.now)
                )
        calls += [
            {
                "participant_id": participant_id,
                "number": entry.number,
                "state": entry.state,
                "due_date": entry.due_date,
                "lapses_after": entry.lapses_after,
            }
            for entry in plan
            if told.get(entry.number) != Told(entry.state, entry.due_date, entry.lapses_after)
        ]
    await _write_told(raw, calls, alerts_held, alerts_gone)
    if events:
        await add_to_outbox_raw(raw, events)
        session.info["wrote_outbox"] = True  # the relay is woken after the commit
    return len(events)


def _standing_alerts(row: Any, kids: Children, now: datetime) -> dict[str, datetime | None]:
    # The row keeps the mails' latest moments (projection.apply_mail_change), so the mails
    # themselves need not be read.
    return dict(
        standing_alerts(
            status=row.status,
            without_open_since=row.last_open_at or row.first_sent_at,
            scores=[report.score for report in reports_in_order(kids.reports.get(row.participant_id, []))],
            failure_unresolved=row.last_failed_at is not None
            and (row.last_sent_at is None or row.last_sent_at < row.last_failed_at),
            now=now,
        )
    )


_NO_OPEN_DUE_SQL = """
SELECT participant.participant_id FROM dashboard_row AS participant
WHERE participant.status = 'active' AND participant.start_date IS NOT NULL
  AND COALESCE(participant.last_open_at, participant.first_sent_at) <= $1
  AND NOT EXISTS (
    SELECT 1 FROM published_alert AS told
    WHERE told.participant_id = participant.participant_id AND told.code = 'no_open_3_days')
ORDER BY participant.participant_id
LIMIT $2
FOR UPDATE OF participant SKIP LOCKED
"""


async def keep_raising_due_no_open_alerts(database: Database, *, tz: ZoneInfo, interval_s: float) -> None:
    """Every `interval_s`, raise the "no open for 3 days" alerts that started to hold (a
    background loop of every replica; they skip each other's participants)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            while True:
                async with database.session() as session:
                    raised = await raise_due_no_open_alerts(session, tz=tz, now=utcnow())
                if raised < DUE_BATCH:
                    break
        except Exception as error:  # noqa: BLE001 - PostgreSQL away: the next round catches up
            log.warning("due alerts not raised this round", error=type(error).__name__)


DUE_BATCH = 500


async def raise_due_no_open_alerts(
    session: AsyncSession, *, tz: ZoneInfo, now: datetime, limit: int = DUE_BATCH
) -> int:
    """Raise "no open for 3 days" for the participants in whom it started to hold by `now`
    (a clock, not an event, makes it hold); the number of participants. Their rows are locked
    and the locked ones skipped, so the consumer and other replicas never wait for this.
    Commits."""
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    due = [row["participant_id"] for row in await raw.fetch(_NO_OPEN_DUE_SQL, now - NO_OPEN_DURATION, limit)]
    if due:
        alerts_only = Publish(plan=False, alerts=True)
        await publish_call_plans(session, {p: PlanRequest(alerts_only, now) for p in due}, tz=tz)
    await session.commit()
    return len(due)


_TELL_CALLS_SQL = """
INSERT INTO published_call (participant_id, number, state, due_date, lapses_after)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::date[], $5::date[])
ON CONFLICT (participant_id, number) DO UPDATE
SET state = EXCLUDED.state, due_date = EXCLUDED.due_date, lapses_after = EXCLUDED.lapses_after"""
_TELL_ALERTS_SQL = """
INSERT INTO published_alert (participant_id, code, holds_from)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
ON CONFLICT (participant_id, code) DO UPDATE SET holds_from = EXCLUDED.holds_from"""
_FORGET_ALERTS_SQL = """
DELETE FROM published_alert WHERE (participant_id, code) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))"""


async def _write_told(
    connection: asyncpg.Connection,
    calls: Sequence[dict[str, Any]],
    alerts_held: Sequence[dict[str, Any]],
    alerts_gone: Sequence[tuple[UUID, str]],
) -> None:
    """Remember what was told, in one statement per table (only what changed)."""
    if calls:
        columns = ("participant_id", "number", "state", "due_date", "lapses_after")
        await connection.execute(_TELL_CALLS_SQL, *([call[name] for call in calls] for name in columns))
    if alerts_held:
        names = ("participant_id", "code", "holds_from")
        await connection.execute(_TELL_ALERTS_SQL, *([alert[name] for alert in alerts_held] for name in names))
    if alerts_gone:
        await connection.execute(_FORGET_ALERTS_SQL, [p for p, _ in alerts_gone], [code for _, code in alerts_gone])


def alert_events(
    told: Mapping[str, datetime | None], standing: Mapping[str, datetime | None]
) -> list[AlertRaised | AlertCleared]:
    """The events that bring the other services from the alerts `told` to those `standing`."""
    found: list[AlertRaised | AlertCleared] = []
    for code, holds_from in standing.items():
        if code not in told or told[code] != holds_from:
            found.append(AlertRaised(code=code, holds_from=holds_from))
    found += [AlertCleared(code=code) for code in told if code not in standing]
    return found
