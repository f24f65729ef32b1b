"""The mailer's hot-path SQL, on a plain asyncpg connection: claiming due deliveries,
recording what happened to them, and scheduling lessons in bulk. Ten thousand mails a
morning make the ORM's per-statement cost the largest part of sending one. Also, on the
consumer's session, the batch writes of the copies other services' events keep."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer.domain import Contact, CopyWrites
from shared.db import column_arrays
from shared.ids import time_ordered_ids

CLAIM_DUE_DELIVERY = """
SELECT d.id, d.participant_id, d.org_id, d.day, d.attempts + 1 AS attempts,
       r.status, r.email, r.first_name, r.variant, o.name AS organisation_name, o.branding, c.name AS coach_name,
       lo.offers AS local_offers, d.sending_until IS NOT NULL AS interrupted
  FROM delivery d
  LEFT JOIN recipient r ON r.participant_id = d.participant_id
  LEFT JOIN organisation_copy o ON o.org_id = d.org_id
  LEFT JOIN local_offers_copy lo ON lo.org_id = d.org_id
  LEFT JOIN coach_copy c ON c.coach_id = r.coach_id
 WHERE d.status = 'due' AND d.due_at <= $1 AND (d.sending_until IS NULL OR d.sending_until <= $1)
 ORDER BY d.due_at
 LIMIT 1
   FOR UPDATE OF d SKIP LOCKED
"""

CLAIM_DELIVERY_AGAIN = """
SELECT d.id, d.participant_id, d.org_id, d.day, d.attempts + 1 AS attempts,
       NULL AS status, NULL AS email, NULL AS first_name, NULL AS variant, NULL AS organisation_name,
       NULL::jsonb AS branding, NULL AS coach_name, NULL::jsonb AS local_offers, FALSE AS interrupted
  FROM delivery d
 WHERE d.id = $1 AND d.status = 'due'
   FOR UPDATE SKIP LOCKED
"""

LEASE = "UPDATE delivery SET attempts = $2, sending_until = $3 WHERE id = $1"
"""The sending mark, committed before the SMTP call: until it expires no other sender claims the
mail, and a mail claimed with an expired mark was interrupted mid-send (it may have gone out)."""
MARK_SENT = """
UPDATE delivery SET status = 'sent', attempts = $2, sent_at = $3, error = NULL, message_id = $4,
       pack = $5, pack_version = $6, lesson_title = $7, sending_until = NULL
 WHERE id = $1 AND status = 'due' AND sending_until = $8
RETURNING id
"""
"""Only while the sender's own lease holds it: after an expiry another sender may have sent and recorded it."""
RECORD_SENT = """
WITH sent AS (
    UPDATE delivery SET status = 'sent', attempts = $2, sent_at = $3, error = NULL, message_id = $4,
           pack = $5, pack_version = $6, lesson_title = $7, sending_until = NULL
     WHERE id = $1 AND status = 'due' AND sending_until = $8
    RETURNING participant_id
), recipient_status AS (
    UPDATE recipient SET status = 'active', updated_at = $3
     WHERE participant_id = (SELECT participant_id FROM sent) AND status = 'enrolled'
)
INSERT INTO outbox (event_id, topic, key, value, created_at)
SELECT e.event_id, e.topic, e.key, e.value, e.created_at
  FROM unnest($9::text[], $10::text[], $11::text[], $12::bytea[], $13::timestamptz[])
    AS e(event_id, topic, key, value, created_at)
 WHERE EXISTS (SELECT 1 FROM sent)
RETURNING 1
"""
"""MARK_SENT, the first lesson's recipient status and the outbox rows in one statement (atomic on
its own): between the SMTP server's acceptance and this record a crash repeats the mail, so the
record is one round trip, its rows encoded before the SMTP call."""
MARK_FAILED = "UPDATE delivery SET status = 'failed', attempts = $2, error = $3, sending_until = NULL WHERE id = $1"
POSTPONE = "UPDATE delivery SET attempts = $2, due_at = $3, error = $4, sending_until = NULL WHERE id = $1"
CANCEL = "UPDATE delivery SET status = 'cancelled', attempts = $2, sending_until = NULL WHERE id = $1"
SET_RECIPIENT_STATUS = """
UPDATE recipient SET status = $2, updated_at = $3 WHERE participant_id = $1 AND status = ANY($4::text[])
"""
"""After a send: only from a scheduled status, so a stop or pause that came in while the mail was
on its way (the lease leaves the recipient unlocked) is not undone."""

RECIPIENTS_TO_CHECK = """
SELECT participant_id, org_id, start_date, send_time, timezone, status, last_day, last_local_date
  FROM recipient
 WHERE status = ANY($1::text[]) AND (next_check_at IS NULL OR next_check_at <= $2)
 LIMIT $3
   FOR UPDATE SKIP LOCKED
"""

INSERT_DELIVERIES = """
INSERT INTO delivery (id, participant_id, org_id, day, local_date, due_at, status, attempts, created_at)
SELECT n.id, n.participant_id, n.org_id, n.day, n.local_date, n.due_at, 'due', 0, $7
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::integer[], $5::date[], $6::timestamptz[])
    AS n(id, participant_id, org_id, day, local_date, due_at)
ON CONFLICT DO NOTHING
RETURNING id
"""

UPDATE_SCHEDULES = """
UPDATE recipient r SET last_day = u.last_day, last_local_date = u.last_local_date, next_check_at = u.next_check_at
  FROM unnest($1::uuid[], $2::integer[], $3::date[], $4::timestamptz[])
    AS u(participant_id, last_day, last_local_date, next_check_at)
 WHERE r.participant_id = u.participant_id
"""


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery, locked by this transaction, with what its mail is made of."""

    id: UUID
    participant_id: UUID
    org_id: UUID
    day: int
    attempts: int
    """Including this attempt."""
    recipient_status: str | None
    email: str | None
    first_name: str | None
    variant: str | None
    organisation_name: str | None
    branding: dict[str, Any] | None
    coach_name: str | None
    local_offers: list[dict[str, Any]] | None = None
    interrupted: bool = False
    """An earlier send of this mail took the lease and never recorded an outcome (a crash)."""


async def claim_due_delivery(connection: asyncpg.Connection, now: datetime) -> ClaimedDelivery | None:
    """Lock the delivery that is due first (a postponed one is due later, so others go first)."""
    return _claimed(await connection.fetchrow(CLAIM_DUE_DELIVERY, now))


async def claim_delivery_again(connection: asyncpg.Connection, delivery_id: UUID) -> ClaimedDelivery | None:
    """Lock one delivery by id, still due, with its attempts (recipient and copies left out)."""
    return _claimed(await connection.fetchrow(CLAIM_DELIVERY_AGAIN, delivery_id))


def _claimed(row: asyncpg.Record | None) -> ClaimedDelivery | None:
    if row is None:
        return None
    return ClaimedDelivery(
        id=row["id"], participant_id=row["participant_id"], org_id=row["org_id"], day=row["day"],
        attempts=row["attempts"], recipient_status=row["status"], email=row["email"], first_name=row["first_name"],
        variant=row["variant"], organisation_name=row["organisation_name"], branding=row["branding"],
        coach_name=row["coach_name"], local_offers=row["local_offers"], interrupted=row["interrupted"],
    )  # fmt: skip


@dataclass(frozen=True)
class ScheduledLesson:
    participant_id: UUID
    org_id: UUID
    day: int
    local_date: date
    due_at: datetime


@dataclass(frozen=True)
class ScheduleUpdate:
    participant_id: UUID
    last_day: int
    last_local_date: date | None
    next_check_at: datetime | None


async def insert_deliveries(connection: asyncpg.Connection, lessons: Sequence[ScheduledLesson], now: datetime) -> int:
    """Insert due deliveries in one statement; an existing (participant, day) is left alone.

    Their ids are time-ordered: a delivery id keys the mailer's deliveries and, downstream,
    coaching's mail rows, which every open of the mail looks up; a morning's mails then sit
    together at the edge of those indexes instead of on cold pages all over them."""
    if not lessons:
        return 0
    rows = await connection.fetch(
        INSERT_DELIVERIES,
        time_ordered_ids(len(lessons)),
        [lesson.participant_id for lesson in lessons],
        [lesson.org_id for lesson in lessons],
        [lesson.day for lesson in lessons],
        [lesson.local_date for lesson in lessons],
        [lesson.due_at for lesson in lessons],
        now,
    )
    return len(rows)


async def update_schedules(connection: asyncpg.Connection, updates: Sequence[ScheduleUpdate]) -> None:
    if updates:
        await connection.execute(
            UPDATE_SCHEDULES,
            [u.participant_id for u in updates],
            [u.last_day for u in updates],
            [u.last_local_date for u in updates],
            [u.next_check_at for u in updates],
        )


INSERT_TRANSACTIONAL = """
INSERT INTO transactional_mail
    (id, kind, org_id, participant_id, contact_id, context, status, attempts, due_at, created_at)
VALUES ($1, $2, $3, $4, $4, $5, 'due', 0, $6, $7)
"""
"""A transactional mail due later (the follow-up questionnaire and its reminder); the address and
first name are read from the contact copy when it goes."""


# The copies other services' events keep (services.mailer.domain.fold_copies): one statement per
# table and batch, the same text every time, rows sorted by key so that two replicas writing
# the same rows take their locks in the same order.
_LOAD_CONTACTS = text("""
SELECT person_id, org_id, kind, name, email FROM contact_copy WHERE person_id = ANY(CAST(:ids AS uuid[]))
""")
_UPSERT_CONTACTS = text("""
INSERT INTO contact_copy (person_id, org_id, kind, name, email, updated_at)
SELECT c.person_id, c.org_id, c.kind, c.name, c.email, :now
  FROM unnest(CAST(:person_id AS uuid[]), CAST(:org_id AS uuid[]), CAST(:kind AS text[]),
              CAST(:name AS text[]), CAST(:email AS text[])) AS c(person_id, org_id, kind, name, email)
ON CONFLICT (person_id) DO UPDATE
   SET org_id = excluded.org_id, kind = excluded.kind, name = excluded.name, email = excluded.email,
       updated_at = excluded.updated_at
""")
_UPSERT_RECIPIENTS = text("""
INSERT INTO recipient (participant_id, org_id, coach_id, first_name, email, start_date, send_time, timezone,
                       variant, status, last_day, next_check_at, updated_at)
SELECT r.participant_id, r.org_id, r.coach_id, r.first_name, r.email, r.start_date, r.send_time, r.timezone,
       r.variant, 'enrolled', 0, NULL, :now
  FROM unnest(CAST(:participant_id AS uuid[]), CAST(:org_id AS uuid[]), CAST(:coach_id AS uuid[]),
              CAST(:first_name AS text[]), CAST(:email AS text[]), CAST(:start_date AS date[]),
              CAST(:send_time AS time[]), CAST(:timezone AS text[]), CAST(:variant AS text[]))
    AS r(participant_id, org_id, coach_id, first_name, email, start_date, send_time, timezone, variant)
ON CONFLICT (participant_id) DO UPDATE
   SET org_id = excluded.org_id, coach_id = excluded.coach_id, first_name = excluded.first_name,
       email = excluded.email, start_date = excluded.start_date, send_time = excluded.send_time,
       timezone = excluded.timezone, variant = excluded.variant, next_check_at = NULL,
       updated_at = excluded.updated_at
""")
_UPDATE_RECIPIENT_CONTACTS = text("""
UPDATE recipient r SET first_name = u.name, email = u.email, next_check_at = NULL, updated_at = :now
  FROM unnest(CAST(:id AS uuid[]), CAST(:name AS text[]), CAST(:email AS text[])) AS u(id, name, email)
 WHERE r.participant_id = u.id
""")
_UPDATE_COACH_CONTACTS = text("""
UPDATE coach_copy c SET name = u.name, email = u.email
  FROM unnest(CAST(:id AS uuid[]), CAST(:name AS text[]), CAST(:email AS text[])) AS u(id, name, email)
 WHERE c.coach_id = u.id
""")
# Lessons postponed for the address (not backing off after an error) go now.
_ADDRESSED_DELIVERIES = text("""
UPDATE delivery SET due_at = :now
 WHERE participant_id = ANY(CAST(:ids AS uuid[])) AND status = 'due' AND error IS NULL AND due_at > :now
""")
# Only mails postponed for the address; the follow-up questionnaire keeps its own day, months ahead.
_ADDRESSED_TRANSACTIONAL_MAILS = text("""
UPDATE transactional_mail SET due_at = :now
 WHERE contact_id = ANY(CAST(:ids AS uuid[])) AND status = 'due' AND to_address IS NULL AND due_at <= :waited
""")
_UPSERT_PLANNED_CALLS = text("""
INSERT INTO planned_call_copy (participant_id, number, org_id, lesson_day, state, due_date, overdue_from,
                               lapses_after, updated_at)
SELECT c.participant_id, c.number, c.org_id, c.lesson_day, c.state, c.due_date, c.overdue_from, c.lapses_after, :now
  FROM unnest(CAST(:participant_id AS uuid[]), CAST(:number AS integer[]), CAST(:org_id AS uuid[]),
              CAST(:lesson_day AS integer[]), CAST(:state AS text[]), CAST(:due_date AS date[]),
              CAST(:overdue_from AS date[]), CAST(:lapses_after AS date[]))
    AS c(participant_id, number, org_id, lesson_day, state, due_date, overdue_from, lapses_after)
ON CONFLICT (participant_id, number) DO UPDATE
   SET org_id = excluded.org_id, lesson_day = excluded.lesson_day, state = excluded.state,
       due_date = excluded.due_date, overdue_from = excluded.overdue_from, lapses_after = excluded.lapses_after,
       updated_at = excluded.updated_at
""")
_MARK_CALLS_DONE = text("""
UPDATE planned_call_copy p SET state = 'done', updated_at = :now
  FROM unnest(CAST(:participant_id AS uuid[]), CAST(:number AS integer[])) AS d(participant_id, number)
 WHERE p.participant_id = d.participant_id AND p.number = d.number
""")
_UPSERT_ALERTS = text("""
INSERT INTO alert_copy (participant_id, code, org_id, holds_from)
SELECT a.participant_id, a.code, a.org_id, a.holds_from
  FROM unnest(CAST(:participant_id AS uuid[]), CAST(:code AS text[]), CAST(:org_id AS uuid[]),
              CAST(:holds_from AS timestamptz[])) AS a(participant_id, code, org_id, holds_from)
ON CONFLICT (participant_id, code) DO UPDATE SET org_id = excluded.org_id, holds_from = excluded.holds_from
""")
_DELETE_ALERTS = text("""
DELETE FROM alert_copy a
 USING unnest(CAST(:participant_id AS uuid[]), CAST(:code AS text[])) AS d(participant_id, code)
 WHERE a.participant_id = d.participant_id AND a.code = d.code
""")


async def load_contacts(*, session: AsyncSession, person_ids: Collection[UUID]) -> dict[UUID, Contact]:
    """The stored contact copies of these people (one statement)."""
    if not person_ids:
        return {}
    result = await session.execute(_LOAD_CONTACTS, {"ids": sorted(person_ids)})
    return {row[0]: Contact(row[1], row[2], row[3], row[4]) for row in result}


async def write_copies(*, session: AsyncSession, writes: CopyWrites, now: datetime, waited: datetime) -> None:
    """Write a folded run: one statement per table and kind of write that has rows. `waited`:
    a transactional mail due before it was postponed for its address (now + WAIT_FOR_COPIES)."""
    if writes.contacts:
        contacts = [(i, c.org_id, c.kind, c.name, c.email) for i, c in sorted(writes.contacts.items())]
        params = column_arrays(contacts, "person_id", "org_id", "kind", "name", "email")
        await session.execute(_UPSERT_CONTACTS, {**params, "now": now})
    if writes.recipients:
        recipients = [writes.recipients[i] for i in sorted(writes.recipients)]
        await session.execute(_UPSERT_RECIPIENTS, {**column_arrays(recipients), "now": now})
    for statement, named, extra in (
        (_UPDATE_RECIPIENT_CONTACTS, writes.recipient_contacts, {"now": now}),
        (_UPDATE_COACH_CONTACTS, writes.coach_contacts, {}),
    ):
        if named:
            rows = [(i, *named[i]) for i in sorted(named)]
            await session.execute(statement, {**column_arrays(rows, "id", "name", "email"), **extra})
    if writes.addressed_participants:
        await session.execute(_ADDRESSED_DELIVERIES, {"ids": sorted(writes.addressed_participants), "now": now})
    if writes.addressed_contacts:
        await session.execute(
            _ADDRESSED_TRANSACTIONAL_MAILS, {"ids": sorted(writes.addressed_contacts), "now": now, "waited": waited}
        )
    if writes.planned_calls:
        calls = [writes.planned_calls[key] for key in sorted(writes.planned_calls)]
        await session.execute(_UPSERT_PLANNED_CALLS, {**column_arrays(calls), "now": now})
    if writes.calls_done:
        done = column_arrays(sorted(writes.calls_done), "participant_id", "number")
        await session.execute(_MARK_CALLS_DONE, {**done, "now": now})
    if writes.alerts:
        alerts = [writes.alerts[key] for key in sorted(writes.alerts)]
        await session.execute(_UPSERT_ALERTS, column_arrays(alerts))
    if writes.alerts_cleared:
        await session.execute(_DELETE_ALERTS, column_arrays(sorted(writes.alerts_cleared), "participant_id", "code"))
