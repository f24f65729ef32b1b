"""Sending mails.

Sender workers each claim ONE due row (scheduled by use_cases.py) at a time with
SELECT … FOR UPDATE SKIP LOCKED, render it, and commit a short "sending" lease on it
(delivery.sending_until) before the SMTP call; after the call they record the outcome (sent
and mail.sent in the outbox, postponed, or failed) in a second transaction. No transaction is
open while the SMTP server works, and no other sender claims a leased mail.

A sender that loses PostgreSQL after the SMTP server accepted a mail keeps that fact and
records it once PostgreSQL is back, as long as its lease holds: a database outage repeats no
mail. A sender killed between the server's acceptance and that record leaves the lease to
expire; the next claim sees an interrupted send and sends it again with the same Message-ID.
That window (the record's few milliseconds, per mail in flight) is the one repeat left; a
crash anywhere else resends nothing (before the lease commit nothing was sent) or nothing
twice (after the record the mail is no longer due).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiolimiter import AsyncLimiter
from cryptography.fernet import MultiFernet
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer import storage
from services.mailer.mail import (
    MailContext,
    MailSettings,
    message_id,
    questionnaire_url,
    render_programme_mail,
    render_transactional_mail,
    to_wire,
    with_opened_link,
)
from services.mailer.metrics import MAILS, SMTP_SECONDS
from services.mailer.programme import ProgrammePack
from services.mailer.scheduling import (
    SCHEDULED_STATUSES,
    questionnaire_follow_up,
)
from services.mailer.smtp import MailTransport, SmtpRefused, SmtpUnavailable
from services.mailer.tables import (
    ContactCopy,
    OrganisationCopy,
    TransactionalMail,
)
from shared.db import POSTGRES_UNREACHABLE, Database, DedicatedConnection
from shared.events import (
    Envelope,
    MailFailed,
    MailSent,
    Payload,
    ProgrammeCompleted,
    TransactionalMailFailed,
)
from shared.ids import uuid7
from shared.logging import get_logger
from shared.outbox import add_to_outbox, add_to_outbox_raw, outbox_row
from shared.tracking_tokens import TokenSigner

log = get_logger(__name__)

Clock = Callable[[], datetime]

MAX_SEND_ATTEMPTS = 8
WAIT_FOR_COPIES = timedelta(seconds=30)
"""A delivery whose organisation or coach the mailer has not heard of yet waits this long."""
_DATABASE_AWAY: tuple[type[BaseException], ...] = (*POSTGRES_UNREACHABLE, OperationalError, InterfaceError)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min … capped at one hour."""
    base = min(30 * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))  # noqa: S311 - jitter, not security


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


@dataclass(frozen=True, slots=True)
class _Leased:
    """A rendered mail whose lease is committed: what the send and its record need."""

    wire: bytes
    lesson_title: str
    lease_until: datetime
    record_by: float
    """time.monotonic() after which a record no longer waits for PostgreSQL."""
    events: list[Envelope]
    """mail.sent (and programme.completed after the last lesson), built before the SMTP call."""


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
    link_keys: MultiFernet
    """Open the one-time links enrolment sealed for the mailer (shared/mailer_links.py)."""
    lease_s: float = 300.0
    """How long a sender's lease holds a mail it is sending (MEER_SENDING_LEASE_S)."""
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
        """Claim one due programme mail and lease it (one transaction), send it, record the outcome."""
        now = self.clock()
        raw = await self.connection.get()
        claimed: storage.ClaimedDelivery | None = None
        leased = False
        try:
            async with raw.transaction():
                claimed = await storage.claim_due_delivery(raw, now)
                if claimed is None:
                    return False
                outcome = await self._deliver(raw, claimed, now)
            if isinstance(outcome, _Leased):
                leased = True
                outcome = await self._send_leased(claimed, outcome, now)
            staged = outcome
        except POSTGRES_UNREACHABLE:
            await self.connection.close()
            raise
        except Exception as error:
            if claimed is None:
                # Not about a mail (asyncpg's InternalClientError after PostgreSQL went away, say):
                # the connection's state is unknown, so the next try starts on a new one.
                await self.connection.close()
                raise
            # Whatever went wrong with this one mail, it must not be claimed first again and again.
            staged = await self._count_failed_attempt(claimed.id, error, now, counted=leased)
        if staged:
            self.on_commit()
        return True

    async def _count_failed_attempt(
        self, delivery_id: Any, error: Exception, now: datetime, *, counted: bool = False
    ) -> bool:
        """After an unexpected error (its transaction rolled back): count the attempt and try again
        later (behind the other due mails), or fail the delivery after MAX_SEND_ATTEMPTS.
        `counted`: the lease committed already counted this attempt."""
        reason = f"error: {type(error).__name__}"
        raw = await self.connection.get()
        async with raw.transaction():
            claimed = await storage.claim_delivery_again(raw, delivery_id)
            if claimed is None:  # another worker has it, or it is no longer due
                return False
            if counted:
                claimed = replace(claimed, attempts=claimed.attempts - 1)
            if claimed.attempts < MAX_SEND_ATTEMPTS:
                await raw.execute(
                    storage.POSTPONE, claimed.id, claimed.attempts, now + retry_delay(claimed.attempts), reason
                )
                MAILS.labels("programme", "retried", "error").inc()
                log.warning("mail attempt failed; postponed", mail_id=str(claimed.id), error=type(error).__name__)
                return False
            await self._fail(raw, claimed, f"gave up after {claimed.attempts} attempts: {reason}", now, "error")
            return True

    async def _deliver(
        self, raw: asyncpg.Connection, claimed: storage.ClaimedDelivery, now: datetime
    ) -> _Leased | bool:
        """Inside the claim's transaction: settle a mail that cannot go (True when events were
        staged), or render it and take the lease (committed with the claim) for _send_leased."""
        if claimed.recipient_status not in SCHEDULED_STATUSES:
            await raw.execute(storage.CANCEL, claimed.id, claimed.attempts - 1)
            return False
        if claimed.email is None or claimed.organisation_name is None or claimed.coach_name is None:
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
                    local_offers=claimed.local_offers or (),
                ),
                self.mail_settings,
                self.signer,
            )
            wire = to_wire(message, self.mail_settings)
        except Exception as error:  # noqa: BLE001 - a mail that cannot be rendered must not block the rest
            # Rendering is deterministic: the same data fails again, so this attempt is the last.
            await self._fail(raw, claimed, f"cannot render: {type(error).__name__}", now, "render")
            return True
        if claimed.interrupted:
            # The same Message-ID as the interrupted send: a mail that did go out then is one mail twice.
            MAILS.labels("programme", "interrupted", "").inc()
            log.warning("interrupted send retried", mail_id=str(claimed.id))
        lease_until = self.clock() + timedelta(seconds=self.lease_s)
        await raw.execute(storage.LEASE, claimed.id, claimed.attempts, lease_until)
        # Records wait for PostgreSQL no longer than the lease holds, with a margin for the record itself.
        record_by = time.monotonic() + self.lease_s * 0.8
        return _Leased(wire, lesson.title, lease_until, record_by, self._sent_events(claimed, lesson.title, now))

    def _sent_events(self, claimed: storage.ClaimedDelivery, lesson_title: str, now: datetime) -> list[Envelope]:
        events: list[Payload] = [
            MailSent(
                delivery_id=claimed.id,
                day=claimed.day,
                lesson_title=lesson_title,
                pack=self.pack.name,
                pack_version=self.pack.version,
                message_id=message_id(claimed.id, self.mail_settings.message_id_domain),
                sent_at=now,
            )
        ]
        if claimed.day >= self.pack.days:
            events.append(ProgrammeCompleted(days=self.pack.days, completed_at=now))
        return [Envelope.wrap(event, org_id=claimed.org_id, participant_id=claimed.participant_id) for event in events]

    async def _send_leased(self, claimed: storage.ClaimedDelivery, leased: _Leased, now: datetime) -> bool:
        """Send a leased mail and record what the SMTP server said; True when events were staged."""
        assert claimed.email is not None
        try:
            await self._send(leased.wire, recipient=claimed.email, org_id=claimed.org_id)
        except SmtpUnavailable as error:
            if claimed.attempts < MAX_SEND_ATTEMPTS:
                retry_at, why = now + retry_delay(claimed.attempts), str(error)[:300]

                async def postpone(raw: asyncpg.Connection) -> bool:
                    await raw.execute(storage.POSTPONE, claimed.id, claimed.attempts, retry_at, why)
                    return False

                staged = await self._record(postpone, leased)
                MAILS.labels("programme", "retried", "unavailable").inc()
                log.warning("smtp unavailable; mail postponed", mail_id=str(claimed.id), attempts=claimed.attempts)
                return staged
            reason = f"gave up after {claimed.attempts} attempts: {error}"
            return await self._record(functools.partial(self._fail_staged, claimed, reason, now, "gave_up"), leased)
        except SmtpRefused as error:
            label = f"smtp_{error.code}"
            return await self._record(functools.partial(self._fail_staged, claimed, str(error), now, label), leased)
        if claimed.day < self.pack.days:
            return await self._record(functools.partial(self._record_sent, claimed, leased, now), leased, atomic=False)
        return await self._record(functools.partial(self._mark_sent, claimed, leased, now), leased)

    async def _record(
        self, action: Callable[[asyncpg.Connection], Awaitable[bool]], leased: _Leased, *, atomic: bool = True
    ) -> bool:
        """Run `action` (in a transaction of its own, unless it is one statement: `atomic=False`).
        Only this worker knows what the SMTP server said, so while PostgreSQL is away it tries
        again, until shortly before the lease ends."""
        delay = 0.25
        while True:
            try:
                raw = await self.connection.get()
                if not atomic:
                    return await action(raw)
                async with raw.transaction():
                    return await action(raw)
            except POSTGRES_UNREACHABLE as error:
                await self.connection.close()
                if time.monotonic() + delay > leased.record_by:
                    raise
                log.warning("cannot record a sent mail yet; retrying", error=type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record_sent(
        self, claimed: storage.ClaimedDelivery, leased: _Leased, now: datetime, raw: asyncpg.Connection
    ) -> bool:
        """Record a mail the SMTP server accepted (a lesson before the last) in one statement."""
        rows = [outbox_row(envelope) for envelope in leased.events]
        recorded = await raw.fetch(
            storage.RECORD_SENT,
            claimed.id,
            claimed.attempts,
            now,
            message_id(claimed.id, self.mail_settings.message_id_domain),
            self.pack.name,
            self.pack.version,
            leased.lesson_title,
            leased.lease_until,
            [row.event_id for row in rows],
            [row.topic for row in rows],
            [row.key for row in rows],
            [row.value for row in rows],
            [row.created_at for row in rows],
        )
        if not recorded:
            log.warning("mail sent after its lease ended; another sender took it over", mail_id=str(claimed.id))
            return False
        MAILS.labels("programme", "sent", "").inc()
        return True

    async def _fail_staged(
        self, claimed: storage.ClaimedDelivery, reason: str, now: datetime, label: str, raw: asyncpg.Connection
    ) -> bool:
        await self._fail(raw, claimed, reason, now, label)
        return True

    async def _mark_sent(
        self, claimed: storage.ClaimedDelivery, leased: _Leased, now: datetime, raw: asyncpg.Connection
    ) -> bool:
        """Record the last lesson the SMTP server accepted, with mail.sent and programme.completed,
        the participant completed and the follow-up questionnaire planned (in the caller's transaction)."""
        sent_id = message_id(claimed.id, self.mail_settings.message_id_domain)
        recorded = await raw.fetchval(
            storage.MARK_SENT,
            claimed.id,
            claimed.attempts,
            now,
            sent_id,
            self.pack.name,
            self.pack.version,
            leased.lesson_title,
            leased.lease_until,
        )
        if recorded is None:
            # The lease ended before this record: another sender has (or will have) sent and recorded it.
            log.warning("mail sent after its lease ended; another sender took it over", mail_id=str(claimed.id))
            return False
        await self._schedule_follow_up_questionnaire(raw, claimed, now)
        await raw.execute(
            storage.SET_RECIPIENT_STATUS, claimed.participant_id, "completed", now, list(SCHEDULED_STATUSES)
        )
        await add_to_outbox_raw(raw, leased.events)
        MAILS.labels("programme", "sent", "").inc()
        return True

    async def _schedule_follow_up_questionnaire(
        self, raw: asyncpg.Connection, claimed: storage.ClaimedDelivery, now: datetime
    ) -> None:
        """Three months after the last lesson one mail asks the questionnaire again, and a week
        later one reminder (cancelled when questionnaire.answered for the follow-up comes in)."""
        follow_up_at, reminder_at = questionnaire_follow_up(now)
        url = questionnaire_url(
            self.mail_settings,
            self.signer,
            participant_id=claimed.participant_id,
            org_id=claimed.org_id,
            moment="follow_up",
        )
        context = {"questionnaire_url": url}
        await raw.executemany(
            storage.INSERT_TRANSACTIONAL,
            [
                (uuid7(), kind, claimed.org_id, claimed.participant_id, context, due_at, now)
                for kind, due_at in (("questionnaire_follow_up", follow_up_at), ("questionnaire_reminder", reminder_at))
            ],
        )

    async def _fail(
        self, raw: asyncpg.Connection, claimed: storage.ClaimedDelivery, reason: str, now: datetime, label: str
    ) -> None:
        await raw.execute(storage.MARK_FAILED, claimed.id, claimed.attempts, reason[:300])
        await add_to_outbox_raw(
            raw,
            [
                Envelope.wrap(
                    MailFailed(delivery_id=claimed.id, day=claimed.day, reason=reason[:300], failed_at=now),
                    org_id=claimed.org_id,
                    participant_id=claimed.participant_id,
                )
            ],
        )
        MAILS.labels("programme", "failed", label).inc()
        log.warning("mail failed", mail_id=str(claimed.id), reason=label)

    async def send_next_transactional(self) -> bool:
        """Claim one due transactional mail, send it, record the outcome; all in one transaction."""
        now = self.clock()
        claimed_id: Any = None
        try:
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
                claimed_id = mail.id
                await self._send_transactional(session, mail, organisation, now)
        except _DATABASE_AWAY:
            raise  # PostgreSQL is away: nothing to say about this mail
        except Exception as error:
            if claimed_id is None:
                raise
            await self._count_failed_transactional_attempt(claimed_id, error, now)
        return True

    async def _send_transactional(
        self, session: AsyncSession, mail: TransactionalMail, organisation: OrganisationCopy | None, now: datetime
    ) -> None:
        if mail.to_address is None and mail.contact_id is not None:
            contact = await session.get(ContactCopy, mail.contact_id)
            if contact is not None and contact.email is not None:
                # Address and name are read when the mail goes: the newest, never from an event.
                name_field = "first_name" if contact.kind == "participant" else "name"
                mail.to_address, mail.context = contact.email, {**(mail.context or {}), name_field: contact.name}
        if organisation is None or mail.to_address is None:
            mail.due_at = now + WAIT_FOR_COPIES
            await session.commit()
            return
        mail.attempts += 1
        try:
            message = render_transactional_mail(
                kind=mail.kind,
                mail_id=mail.id,
                to_address=mail.to_address,
                organisation_name=organisation.name,
                branding=organisation.branding,
                context=with_opened_link(mail.kind, mail.context or {}, keys=self.link_keys, now=now),
                settings=self.mail_settings,
                sent_at=now,
            )
            wire = to_wire(message, self.mail_settings)
        except Exception as error:  # noqa: BLE001 - a mail that cannot be rendered must not block the rest
            self._fail_transactional(session, mail, f"cannot render: {type(error).__name__}", now, "render")
            await session.commit()
            return
        try:
            await self._send(wire, recipient=mail.to_address, org_id=mail.org_id)
        except (SmtpUnavailable, SmtpRefused) as error:
            if isinstance(error, SmtpUnavailable) and mail.attempts < MAX_SEND_ATTEMPTS:
                mail.due_at, mail.error = now + retry_delay(mail.attempts), str(error)[:300]
                MAILS.labels(mail.kind, "retried", "unavailable").inc()
            else:
                label = f"smtp_{getattr(error, 'code', 'gave_up')}"
                self._fail_transactional(session, mail, str(error), now, label)
            await session.commit()
            return
        # Keep that it was sent, not to whom or with which link.
        mail.status, mail.sent_at, mail.to_address, mail.context = "sent", now, None, None
        mail.message_id = message_id(mail.id, self.mail_settings.message_id_domain, mail.kind)
        await session.commit()
        MAILS.labels(mail.kind, "sent", "").inc()

    def _fail_transactional(
        self, session: AsyncSession, mail: TransactionalMail, reason: str, now: datetime, label: str
    ) -> None:
        """Give the mail up (the address and link are dropped) and stage transactional_mail.failed."""
        mail.status, mail.error, mail.to_address, mail.context = "failed", reason[:300], None, None
        add_to_outbox(
            session,
            Envelope.wrap(
                TransactionalMailFailed(mail_id=mail.id, kind=mail.kind, reason=reason[:300], failed_at=now),
                org_id=mail.org_id,
                participant_id=mail.participant_id,
            ),
        )
        MAILS.labels(mail.kind, "failed", label).inc()
        log.warning("mail failed", mail_id=str(mail.id), kind=mail.kind, reason=label)

    async def _count_failed_transactional_attempt(self, mail_id: Any, error: Exception, now: datetime) -> None:
        """Like _count_failed_attempt, for a transactional mail."""
        reason = f"error: {type(error).__name__}"
        async with self.database.session() as session:
            mail = (
                await session.execute(
                    select(TransactionalMail)
                    .where(col(TransactionalMail.id) == mail_id, col(TransactionalMail.status) == "due")
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if mail is None:
                return
            mail.attempts += 1
            if mail.attempts < MAX_SEND_ATTEMPTS:
                mail.due_at, mail.error = now + retry_delay(mail.attempts), reason
                MAILS.labels(mail.kind, "retried", "error").inc()
                log.warning("mail attempt failed; postponed", mail_id=str(mail.id), error=type(error).__name__)
            else:
                gave_up = f"gave up after {mail.attempts} attempts: {reason}"
                self._fail_transactional(session, mail, gave_up, now, "error")
            await session.commit()

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
