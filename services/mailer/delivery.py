"""Scheduling and sending programme mails.

The scheduler turns "this participant's next lesson is due" into a delivery row, unique
per (participant, day). Sender workers each claim one due row at a time with
SELECT … FOR UPDATE SKIP LOCKED, send it, and in the same transaction mark it sent and
stage mail.sent in the outbox. A worker killed mid-send releases its row lock, so the
mail is sent again by another worker, with the same Message-ID: the only possible repeats
are the mails in flight at that moment, at most one per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer.mail import MailContext, MailSettings, message_id, render_programme_mail
from services.mailer.programme import ProgrammePack
from services.mailer.scheduling import SCHEDULED_STATUSES, RecipientSchedule, next_due_lesson
from services.mailer.smtp import MailTransport, SmtpRefused, SmtpUnavailable
from services.mailer.tables import CoachCopy, Delivery, OrganisationCopy, Recipient
from shared.db import Database
from shared.events import Envelope, MailFailed, MailSent
from shared.logging import get_logger
from shared.outbox import add_to_outbox
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


async def schedule_due_deliveries(database: Database, pack: ProgrammePack, now: datetime) -> int:
    """Create the delivery rows that are due now; returns how many were created."""
    created = 0
    async with database.session() as session:
        recipients = (
            await session.execute(
                select(Recipient)
                .where(col(Recipient.status).in_(SCHEDULED_STATUSES), col(Recipient.last_day) < pack.days)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
        for recipient in recipients:
            due = next_due_lesson(
                RecipientSchedule(
                    start_date=recipient.start_date,
                    send_time=recipient.send_time,
                    timezone=recipient.timezone,
                    status=recipient.status,
                    last_day=recipient.last_day,
                    last_local_date=recipient.last_local_date,
                ),
                now,
                programme_days=pack.days,
            )
            if due is None:
                continue
            result = await session.execute(
                insert(Delivery)
                .values(
                    participant_id=recipient.participant_id,
                    org_id=recipient.org_id,
                    day=due.day,
                    local_date=due.local_date,
                    due_at=due.due_at,
                    status="due",
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(col(Delivery.id))
            )
            created += len(result.all())
            recipient.last_day = due.day
            recipient.last_local_date = due.local_date
            session.add(recipient)
        await session.commit()
    return created


@dataclass
class DeliveryWorker:
    """Sends due deliveries one at a time over its own SMTP connection."""

    database: Database
    transport: MailTransport
    pack: ProgrammePack
    signer: TokenSigner
    mail_settings: MailSettings
    clock: Clock

    async def send_next(self) -> bool:
        """Claim and handle one due delivery; False when nothing is due."""
        now = self.clock()
        async with self.database.session() as session:
            delivery = (
                await session.execute(
                    select(Delivery)
                    .where(col(Delivery.status) == "due", col(Delivery.due_at) <= now)
                    .order_by(col(Delivery.due_at))
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if delivery is None:
                return False
            recipient = await session.get(Recipient, delivery.participant_id)
            organisation = await session.get(OrganisationCopy, delivery.org_id)
            coach = await session.get(CoachCopy, recipient.coach_id) if recipient else None
            if recipient is None or recipient.status not in SCHEDULED_STATUSES:
                delivery.status = "cancelled"
                await session.commit()
                return True
            if organisation is None or coach is None:
                # Events from another topic may arrive later than the enrolment; wait for them.
                delivery.due_at = now + WAIT_FOR_COPIES
                await session.commit()
                return True
            lesson = self.pack.lesson(recipient.variant, delivery.day)
            message = render_programme_mail(
                MailContext(
                    delivery_id=delivery.id,
                    participant_id=recipient.participant_id,
                    org_id=recipient.org_id,
                    to_address=recipient.email,
                    first_name=recipient.first_name,
                    coach_name=coach.name,
                    organisation_name=organisation.name,
                    branding=organisation.branding,
                    lesson=lesson,
                    day=delivery.day,
                    programme_days=self.pack.days,
                    sent_at=now,
                ),
                self.mail_settings,
                self.signer,
            )
            delivery.attempts += 1
            try:
                await self.transport.send(message, sender=self.mail_settings.from_address, recipient=recipient.email)
            except SmtpUnavailable as error:
                if delivery.attempts < MAX_SEND_ATTEMPTS:
                    delivery.due_at = now + retry_delay(delivery.attempts)
                    delivery.error = str(error)[:300]
                    await session.commit()
                    log.warning("smtp unavailable; delivery postponed", delivery_id=str(delivery.id),
                                attempts=delivery.attempts, error=str(error)[:100])  # fmt: skip
                    return True
                self._fail(session, delivery, f"gave up after {delivery.attempts} attempts: {error}", now)
                await session.commit()
                return True
            except SmtpRefused as error:
                self._fail(session, delivery, str(error), now)
                await session.commit()
                return True
            delivery.status = "sent"
            delivery.sent_at = now
            delivery.message_id = message_id(delivery.id, self.mail_settings.message_id_domain)
            delivery.pack, delivery.pack_version, delivery.lesson_title = (
                self.pack.name,
                self.pack.version,
                lesson.title,
            )
            delivery.error = None
            if recipient.status == "enrolled":
                recipient.status = "active"
            add_to_outbox(
                session,
                Envelope.wrap(
                    MailSent(
                        delivery_id=delivery.id,
                        day=delivery.day,
                        lesson_title=lesson.title,
                        pack=self.pack.name,
                        pack_version=self.pack.version,
                        message_id=delivery.message_id,
                        sent_at=now,
                    ),
                    org_id=delivery.org_id,
                    participant_id=delivery.participant_id,
                ),
            )
            await session.commit()
        return True

    @staticmethod
    def _fail(session: AsyncSession, delivery: Delivery, reason: str, now: datetime) -> None:
        delivery.status = "failed"
        delivery.error = reason[:300]
        add_to_outbox(
            session,
            Envelope.wrap(
                MailFailed(delivery_id=delivery.id, day=delivery.day, reason=reason[:300], failed_at=now),
                org_id=delivery.org_id,
                participant_id=delivery.participant_id,
            ),
        )
        log.warning("delivery failed", delivery_id=str(delivery.id), reason=reason.split(" ")[0])

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
