"""Scheduling and sending mails.

The scheduler turns "this participant's next lesson is due" into a delivery row, unique
per (participant, day) and per (participant, local date). Sender workers each claim ONE
due row at a time with SELECT … FOR UPDATE SKIP LOCKED, send it, and in the same
transaction mark it sent and stage mail.sent in the outbox. Claiming one row per worker
(rather than a batch) keeps the crash window minimal: a worker killed mid-send releases its
row lock, another worker sends that mail again with the same Message-ID, so the only
possible repeats are the mails in flight at that moment — at most one per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiolimiter import AsyncLimiter
from sqlalchemy import delete, func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer import storage
from services.mailer.mail import (
    MailContext,
    MailSettings,
    message_id,
    render_programme_mail,
    render_transactional_mail,
    to_wire,
)
from services.mailer.metrics import DUE_BACKLOG, MAILS, OLDEST_DUE_SECONDS, SMTP_SECONDS
from services.mailer.programme import ProgrammePack
from services.mailer.scheduling import (
    COACH_CALL_DAYS,
    SCHEDULED_STATUSES,
    RecipientSchedule,
    digest_is_due,
    lesson_today,
    next_check_at,
    next_due_lesson,
)
from services.mailer.smtp import MailTransport, SmtpRefused, SmtpUnavailable
from services.mailer.tables import (
    CoachCopy,
    Delivery,
    OrganisationCopy,
    Recipient,
    StaffAccessCopy,
    TransactionalMail,
)
from shared.db import Database, DedicatedConnection
from shared.events import Envelope, MailFailed, MailSent, ProgrammeCompleted
from shared.logging import get_logger
from shared.outbox import RAW_INSERT_SQL, raw_outbox_row
from shared.tracking_tokens import TokenSigner

log = get_logger(__name__)

Clock = Callable[[], datetime]

MAX_SEND_ATTEMPTS = 8
WAIT_FOR_COPIES = timedelta(seconds=30)
"""A delivery whose organisation or coach the mailer has not heard of yet waits this long."""


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min … capped at one hour."""
    base = min(30 * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))  # noqa: S311 - jitter, not security


def _schedule_of(recipient: Recipient) -> RecipientSchedule:
    return RecipientSchedule(
        start_date=recipient.start_date,
        send_time=recipient.send_time,
        timezone=recipient.timezone,
        status=recipient.status,
        last_day=recipient.last_day,
        last_local_date=recipient.last_local_date,
    )


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


async def unschedule_due_deliveries(session: AsyncSession, recipient: Recipient) -> None:
    """Take back lessons scheduled but not sent (on pause), so resuming continues with them."""
    await session.execute(
        delete(Delivery).where(col(Delivery.participant_id) == recipient.participant_id, col(Delivery.status) == "due")
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
    database: Database, pack: ProgrammePack, now: datetime, *, local_time: Any, timezone: str
) -> int:
    """Queue today's "wie bel ik vandaag" mail for every coach who has someone to call."""
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
            recipients = (
                await session.execute(
                    select(Recipient).where(
                        col(Recipient.coach_id) == coach.coach_id, col(Recipient.status).in_(SCHEDULED_STATUSES)
                    )
                )
            ).scalars()
            calls = []
            for recipient in recipients:
                day = lesson_today(_schedule_of(recipient), today, programme_days=pack.days)
                if day in COACH_CALL_DAYS:
                    lesson = pack.lesson(recipient.variant, day)
                    calls.append(
                        {"first_name": recipient.first_name, "day": day, "days": pack.days, "title": lesson.title}
                    )
            if calls:
                session.add(
                    TransactionalMail(
                        kind="digest",
                        org_id=coach.org_id,
                        to_address=coach.email,
                        context={"coach_name": coach.name, "calls": calls, "date": today.strftime("%d-%m-%Y")},
                    )
                )
                queued += 1
        await session.commit()
    return queued


async def measure_backlog(database: Database, now: datetime) -> None:
    """Update the due-backlog gauges (what ops alert on when mails pile up)."""
    async with database.session() as session:
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(Delivery.due_at)).where(
                    col(Delivery.status) == "due", col(Delivery.due_at) <= now
                )
            )
        ).one()
    DUE_BACKLOG.set(count)
    OLDEST_DUE_SECONDS.set((now - oldest).total_seconds() if oldest else 0)


@dataclass
class RateLimits:
    """A global limit and one per organisation, so one big organisation cannot starve the rest."""

    per_second: float
    per_org_per_second: float
    _global: AsyncLimiter = field(init=False)
    _per_org: dict[Any, AsyncLimiter] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._global = AsyncLimiter(self.per_second, 1)

    async def acquire(self, org_id: Any) -> None:
        limiter = self._per_org.get(org_id)
        if limiter is None:
            limiter = self._per_org[org_id] = AsyncLimiter(self.per_org_per_second, 1)
        await limiter.acquire()
        await self._global.acquire()


@dataclass
class DeliveryWorker:
    """Sends due mails one at a time over its own SMTP and PostgreSQL connections."""

    database: Database
    connection: DedicatedConnection
    transport: MailTransport
    pack: ProgrammePack
    signer: TokenSigner
    mail_settings: MailSettings
    clock: Clock
    limits: RateLimits
    on_commit: Callable[[], None] = lambda: None
    """Told after a commit that staged events (wakes the outbox relay)."""
    _transactional_check_at: float = field(default=0.0, init=False)

    async def _send(self, raw: bytes, *, recipient: str, org_id: Any) -> None:
        await self.limits.acquire(org_id)
        started = time.perf_counter()
        await self.transport.send(raw, sender=self.mail_settings.from_address, recipient=recipient)
        SMTP_SECONDS.observe(time.perf_counter() - started)

    async def send_next(self) -> bool:
        """Claim and handle one due mail; False when idle. Transactional mails (confirmation links)
        go first, but are looked for at most once a second, so the daily batch is not slowed down."""
        if time.monotonic() >= self._transactional_check_at:
            if await self.send_next_transactional():
                return True
            self._transactional_check_at = time.monotonic() + 1.0
        return await self.send_next_delivery()

    async def send_next_delivery(self) -> bool:
        """Claim one due programme mail, send it, record the outcome; all in one transaction."""
        now = self.clock()
        raw = await self.connection.get()
        try:
            async with raw.transaction():
                claimed = await storage.claim_due_delivery(raw, now)
                if claimed is None:
                    return False
                staged = await self._deliver(raw, claimed, now)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            await self.connection.close()
            raise
        if staged:
            self.on_commit()
        return True

    async def _deliver(self, raw: asyncpg.Connection, claimed: storage.ClaimedDelivery, now: datetime) -> bool:
        """Handle one claimed delivery inside its transaction; True when events were staged."""
        if claimed.recipient_status not in SCHEDULED_STATUSES or claimed.email is None:
            await raw.execute(storage.CANCEL, claimed.id, claimed.attempts - 1)
            return False
        if claimed.organisation_name is None or claimed.coach_name is None:
            # Events from another topic may arrive later than the enrolment; wait for them.
            await raw.execute(storage.POSTPONE, claimed.id, claimed.attempts - 1, now + WAIT_FOR_COPIES, None)
            return False
        try:
            lesson = self.pack.lesson(claimed.variant or self.pack.default_variant, claimed.day)
            message = render_programme_mail(
                MailContext(
                    delivery_id=claimed.id,
                    participant_id=claimed.participant_id,
                    org_id=claimed.org_id,
                    to_address=claimed.email,
                    first_name=claimed.first_name or "",
                    coach_name=claimed.coach_name,
                    organisation_name=claimed.organisation_name,
                    branding=claimed.branding or {},
                    lesson=lesson,
                    day=claimed.day,
                    programme_days=self.pack.days,
                    sent_at=now,
                ),
                self.mail_settings,
                self.signer,
            )
        except Exception as error:  # noqa: BLE001 - a mail that cannot be rendered must not block the rest
            await self._fail(raw, claimed, f"cannot render: {type(error).__name__}", now, "render")
            return True
        try:
            await self._send(to_wire(message, self.mail_settings), recipient=claimed.email, org_id=claimed.org_id)
        except SmtpUnavailable as error:
            if claimed.attempts < MAX_SEND_ATTEMPTS:
                await raw.execute(
                    storage.POSTPONE,
                    claimed.id,
                    claimed.attempts,
                    now + retry_delay(claimed.attempts),
                    str(error)[:300],
                )
                MAILS.labels("programme", "retried", "unavailable").inc()
                log.warning("smtp unavailable; mail postponed", mail_id=str(claimed.id), attempts=claimed.attempts)
                return False
            await self._fail(raw, claimed, f"gave up after {claimed.attempts} attempts: {error}", now, "gave_up")
            return True
        except SmtpRefused as error:
            await self._fail(raw, claimed, str(error), now, f"smtp_{error.code}")
            return True
        sent_id = message_id(claimed.id, self.mail_settings.message_id_domain)
        await raw.execute(
            storage.MARK_SENT,
            claimed.id,
            claimed.attempts,
            now,
            sent_id,
            self.pack.name,
            self.pack.version,
            lesson.title,
        )
        events = [
            MailSent(
                delivery_id=claimed.id,
                day=claimed.day,
                lesson_title=lesson.title,
                pack=self.pack.name,
                pack_version=self.pack.version,
                message_id=sent_id,
                sent_at=now,
            )
        ]
        completed = claimed.day >= self.pack.days
        if completed:
            events.append(ProgrammeCompleted(days=self.pack.days, completed_at=now))  # type: ignore[arg-type]
        if completed or claimed.recipient_status == "enrolled":
            await raw.execute(
                storage.SET_RECIPIENT_STATUS, claimed.participant_id, "completed" if completed else "active", now
            )
        await raw.executemany(
            RAW_INSERT_SQL,
            [
                raw_outbox_row(Envelope.wrap(event, org_id=claimed.org_id, participant_id=claimed.participant_id))
                for event in events
            ],
        )
        MAILS.labels("programme", "sent", "").inc()
        return True

    async def _fail(
        self, raw: asyncpg.Connection, claimed: storage.ClaimedDelivery, reason: str, now: datetime, label: str
    ) -> None:
        await raw.execute(storage.MARK_FAILED, claimed.id, claimed.attempts, reason[:300])
        await raw.execute(
            RAW_INSERT_SQL,
            *raw_outbox_row(
                Envelope.wrap(
                    MailFailed(delivery_id=claimed.id, day=claimed.day, reason=reason[:300], failed_at=now),
                    org_id=claimed.org_id,
                    participant_id=claimed.participant_id,
                )
            ),
        )
        MAILS.labels("programme", "failed", label).inc()
        log.warning("mail failed", mail_id=str(claimed.id), reason=label)

    async def send_next_transactional(self) -> bool:
        now = self.clock()
        async with self.database.session() as session:
            claimed = (
                await session.execute(
                    select(TransactionalMail, OrganisationCopy)
                    .outerjoin(OrganisationCopy, col(OrganisationCopy.org_id) == col(TransactionalMail.org_id))
                    .where(col(TransactionalMail.status) == "due", col(TransactionalMail.due_at) <= now)
                    .order_by(col(TransactionalMail.due_at))
                    .limit(1)
                    .with_for_update(of=TransactionalMail, skip_locked=True)
                )
            ).first()
            if claimed is None:
                return False
            mail, organisation = claimed
            if organisation is None or mail.to_address is None:
                mail.due_at = now + WAIT_FOR_COPIES
                await session.commit()
                return True
            message = render_transactional_mail(
                kind=mail.kind,
                mail_id=mail.id,
                to_address=mail.to_address,
                organisation_name=organisation.name,
                branding=organisation.branding,
                context=mail.context or {},
                settings=self.mail_settings,
                sent_at=now,
            )
            mail.attempts += 1
            try:
                await self._send(to_wire(message, self.mail_settings), recipient=mail.to_address, org_id=mail.org_id)
            except (SmtpUnavailable, SmtpRefused) as error:
                if isinstance(error, SmtpUnavailable) and mail.attempts < MAX_SEND_ATTEMPTS:
                    mail.due_at, mail.error = now + retry_delay(mail.attempts), str(error)[:300]
                    MAILS.labels(mail.kind, "retried", "unavailable").inc()
                else:
                    mail.status, mail.error = "failed", str(error)[:300]
                    MAILS.labels(mail.kind, "failed", f"smtp_{getattr(error, 'code', 'gave_up')}").inc()
                await session.commit()
                return True
            # Keep that it was sent, not to whom or with which link.
            mail.status, mail.sent_at, mail.to_address, mail.context = "sent", now, None, None
            mail.message_id = message_id(mail.id, self.mail_settings.message_id_domain, mail.kind)
            await session.commit()
        MAILS.labels(mail.kind, "sent", "").inc()
        return True

    async def run(self, wake: asyncio.Event) -> None:
        """Send until cancelled; sleep until woken (or a second passes) when nothing is due."""
        try:
            while True:
                try:
                    handled = await self.send_next()
                except Exception as error:  # noqa: BLE001 - a database outage must not kill the worker
                    log.warning("delivery worker error; retrying", error=type(error).__name__)
                    handled = False
                    await asyncio.sleep(1.0)
                if not handled:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=1.0)
        finally:
            await self.transport.close()
            await self.connection.close()
