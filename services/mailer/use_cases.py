"""The mailer's write paths besides sending: turning "this participant's next lesson is due"
into a delivery row (unique per (participant, day) and per (participant, local date)),
taking due mails back when a participant stops or pauses, and planning the coaches' morning
mail. The Kafka changes (handlers.py) and the scheduler loop (app.py) call these; the
sender (delivery.py) only claims and sends what they scheduled."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer import storage
from services.mailer.metrics import DUE_BACKLOG, OLDEST_DUE_SECONDS
from services.mailer.programme import ProgrammePack
from services.mailer.scheduling import (
    SCHEDULED_STATUSES,
    RecipientSchedule,
    attention_text,
    call_urgency,
    digest_is_due,
    next_check_at,
    next_due_lesson,
)
from services.mailer.tables import (
    AlertCopy,
    CoachCopy,
    Delivery,
    PlannedCallCopy,
    Recipient,
    StaffAccessCopy,
    TransactionalMail,
)
from shared.db import Database, DedicatedConnection
from shared.logging import get_logger

log = get_logger(__name__)


async def schedule_due_deliveries(
    connection: DedicatedConnection, pack: ProgrammePack, now: datetime, *, batch: int = 1000
) -> int:
    """Create the delivery rows that are due now; returns how many were created.

    Only recipients whose next_check_at has come (or is unknown after a change) are read, in
    batches locked with SKIP LOCKED, so replicas share the work and a tick stays cheap.
    """
    created = 0
    while True:
        raw = await connection.get()
        async with raw.transaction():
            rows = await raw.fetch(storage.RECIPIENTS_TO_CHECK, list(SCHEDULED_STATUSES), now, batch)
            lessons, updates = [], []
            for row in rows:
                schedule = RecipientSchedule(
                    start_date=row["start_date"],
                    send_time=row["send_time"],
                    timezone=row["timezone"],
                    status=row["status"],
                    last_day=row["last_day"],
                    last_local_date=row["last_local_date"],
                )
                due = next_due_lesson(schedule, now, programme_days=pack.days)
                if due is not None:
                    lessons.append(
                        storage.ScheduledLesson(
                            row["participant_id"], row["org_id"], due.day, due.local_date, due.due_at
                        )
                    )
                    schedule = replace(schedule, last_day=due.day, last_local_date=due.local_date)
                # Not read again until the next lesson can be due (or never, e.g. when finished).
                updates.append(
                    storage.ScheduleUpdate(
                        row["participant_id"],
                        schedule.last_day,
                        schedule.last_local_date,
                        next_check_at(schedule, now, programme_days=pack.days),
                    )
                )
            created += await storage.insert_deliveries(raw, lessons, now)
            await storage.update_schedules(raw, updates)
        if len(rows) < batch:
            return created


def not_being_sent() -> ColumnElement[bool]:
    """Due deliveries no sender has leased. A mail being sent is left to its sender, which records
    it as sent (or postpones it, and the next claim cancels it for the participant's new status),
    as the claim's row lock did when sending happened inside one transaction; so is one whose
    send was interrupted: the sender that claims it after the lease settles it the same way."""
    return col(Delivery.sending_until).is_(None)


async def unschedule_due_deliveries(session: AsyncSession, recipient: Recipient) -> None:
    """Take back lessons scheduled but not sent (on pause), so resuming continues with them."""
    await session.execute(
        delete(Delivery).where(
            col(Delivery.participant_id) == recipient.participant_id, col(Delivery.status) == "due", not_being_sent()
        )
    )
    last = (
        await session.execute(
            select(func.max(Delivery.day), func.max(Delivery.local_date)).where(
                col(Delivery.participant_id) == recipient.participant_id
            )
        )
    ).one()
    recipient.last_day, recipient.last_local_date = last[0] or 0, last[1]
    recipient.next_check_at = None


async def schedule_digests(
    database: Database,
    pack: ProgrammePack,
    now: datetime,
    *,
    local_time: Any,
    timezone: str,
    coaching_base_url: str = "",
) -> int:
    """Queue today's "wie bel ik vandaag" mail for every coach who has a call to make: the
    planned calls due today, still open or overdue, from the mailer's copy of coaching's call plan."""
    queued = 0
    async with database.session() as session:
        coaches = (
            await session.execute(
                select(CoachCopy)
                .where(
                    col(CoachCopy.email).is_not(None),
                    # A deactivated coach gets no more names of participants.
                    col(CoachCopy.coach_id).not_in(
                        select(col(StaffAccessCopy.staff_id)).where(col(StaffAccessCopy.active).is_(False))
                    ),
                )
                .with_for_update(skip_locked=True)
            )
        ).scalars()
        for coach in coaches:
            today = digest_is_due(coach.last_digest_date, now, local_time=local_time, timezone=timezone)
            if today is None:
                continue
            coach.last_digest_date = today
            rows = (
                await session.execute(
                    select(PlannedCallCopy, Recipient)
                    .join(Recipient, col(Recipient.participant_id) == col(PlannedCallCopy.participant_id))
                    .where(
                        col(Recipient.coach_id) == coach.coach_id,
                        col(PlannedCallCopy.state) == "planned",
                        col(PlannedCallCopy.due_date) <= today,
                    )
                    .order_by(col(PlannedCallCopy.due_date), col(PlannedCallCopy.number))
                )
            ).all()
            calls = []
            for planned, recipient in rows:
                urgency = call_urgency(
                    state=planned.state,
                    due_date=planned.due_date,
                    overdue_from=planned.overdue_from,
                    lapses_after=planned.lapses_after,
                    today=today,
                )
                if urgency is None or planned.due_date is None:
                    continue
                calls.append(
                    {
                        "first_name": recipient.first_name or "",
                        "number": planned.number,
                        "urgency": urgency,
                        "due_date": planned.due_date.strftime("%d-%m"),
                        "day": recipient.last_day,
                        "days": pack.days,
                        "url": f"{coaching_base_url}/deelnemers/{recipient.participant_id}",
                    }
                )
            calls.sort(key=lambda call: call["urgency"] != "overdue")
            attention = await _attention(session, coach.coach_id, now, coaching_base_url)
            if calls or attention:
                session.add(
                    TransactionalMail(
                        kind="digest",
                        org_id=coach.org_id,
                        to_address=coach.email,
                        context={
                            "coach_name": coach.name,
                            "calls": calls,
                            "attention": attention,
                            "date": today.strftime("%d-%m-%Y"),
                        },
                    )
                )
                queued += 1
        await session.commit()
    return queued


async def _attention(
    session: AsyncSession, coach_id: Any, now: datetime, coaching_base_url: str
) -> list[dict[str, str]]:
    """One line per participant of this coach with an alert that holds now (from the alert copy)."""
    rows = (
        await session.execute(
            select(AlertCopy, Recipient)
            .join(Recipient, col(Recipient.participant_id) == col(AlertCopy.participant_id))
            .where(col(Recipient.coach_id) == coach_id)
        )
    ).all()
    alerts: dict[Any, dict[str, datetime | None]] = {}
    recipients: dict[Any, Recipient] = {}
    for alert, recipient in rows:
        alerts.setdefault(recipient.participant_id, {})[alert.code] = alert.holds_from
        recipients[recipient.participant_id] = recipient
    lines = []
    for participant_id, codes in alerts.items():
        text = attention_text(codes, now)
        if text is not None:
            lines.append(
                {
                    "first_name": recipients[participant_id].first_name or "",
                    "text": text,
                    "url": f"{coaching_base_url}/deelnemers/{participant_id}",
                }
            )
    return sorted(lines, key=lambda line: line["first_name"])


async def measure_backlog(database: Database, now: datetime) -> None:
    """Update the due-backlog gauges (what ops alert on when mails pile up). A mail's age counts
    from when it was scheduled (when it first fell due), not from its current due time: a mail
    postponed again and again (waiting for an address or a coach's name that never comes, or
    for an SMTP server that keeps refusing) must not look fresh at every postponement."""
    async with database.session() as session:
        count, oldest = (
            await session.execute(
                select(func.count().filter(col(Delivery.due_at) <= now), func.min(Delivery.created_at)).where(
                    col(Delivery.status) == "due", col(Delivery.created_at) <= now
                )
            )
        ).one()
    DUE_BACKLOG.set(count)
    OLDEST_DUE_SECONDS.set((now - oldest).total_seconds() if oldest else 0)
