"""Enrolment's database access: keyword-only functions that take the session."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment.domain import ACTIVE_STATUSES
from services.enrolment.tables import (
    ApiKey,
    Invitation,
    LoginLimit,
    Logo,
    Organisation,
    Participant,
    SignupCounter,
    StaffMember,
)
from shared.db import utcnow
from shared.events import Envelope
from shared.outbox import outbox_values

# --- organisations ----------------------------------------------------------------------------


async def get_organisation(*, session: AsyncSession, org_id: UUID, for_update: bool = False) -> Organisation | None:
    """The organisation; with for_update its row stays locked until commit, which makes
    enrolments into one organisation take turns (so two cannot both take the last place)."""
    return await session.get(Organisation, org_id, with_for_update=for_update)


async def organisation_by_slug(*, session: AsyncSession, slug: str) -> Organisation | None:
    """The organisation with this short sign-up address, if any."""
    result = await session.execute(select(Organisation).where(col(Organisation.slug) == slug))
    return result.scalars().first()


async def list_organisations(*, session: AsyncSession, limit: int, offset: int) -> tuple[list[Organisation], int]:
    """One page of organisations by name, and the total."""
    total = (await session.execute(select(func.count()).select_from(Organisation))).scalar_one()
    rows = await session.execute(
        select(Organisation).order_by(col(Organisation.name), col(Organisation.id)).limit(limit).offset(offset)
    )
    return list(rows.scalars()), int(total)


async def participants_per_status(*, session: AsyncSession, org_id: UUID) -> dict[str, int]:
    """How many participants of the organisation have each status."""
    rows = await session.execute(
        select(col(Participant.status), func.count())
        .where(col(Participant.org_id) == org_id)
        .group_by(col(Participant.status))
    )
    return {status: int(count) for status, count in rows.all()}


async def running_count(*, session: AsyncSession, org_id: UUID) -> int:
    """Enrolled, active and paused participants: what the licence counts."""
    counts = await participants_per_status(session=session, org_id=org_id)
    return sum(counts.get(status, 0) for status in ACTIVE_STATUSES)


async def get_logo(*, session: AsyncSession, org_id: UUID, sha256: str) -> Logo | None:
    """One stored logo by its hash."""
    return await session.get(Logo, (org_id, sha256))


async def add_logo(*, session: AsyncSession, logo: Logo) -> None:
    """Store a logo once; uploading the same image again keeps the first row."""
    await session.execute(
        insert(Logo)
        .values(
            org_id=logo.org_id,
            sha256=logo.sha256,
            format=logo.format,
            width=logo.width,
            height=logo.height,
            data=logo.data,
            created_at=logo.created_at,
        )
        .on_conflict_do_nothing()
    )


# --- API keys -------------------------------------------------------------------------------------


async def org_of_api_key(*, session: AsyncSession, key_hash: str) -> UUID | None:
    """The organisation of a current (not revoked) API key."""
    row = await session.execute(
        select(col(ApiKey.org_id)).where(col(ApiKey.key_hash) == key_hash, col(ApiKey.revoked_at).is_(None))
    )
    return row.scalar_one_or_none()


async def current_api_key(*, session: AsyncSession, org_id: UUID) -> ApiKey | None:
    """The organisation's current API key row, if any."""
    rows = await session.execute(
        select(ApiKey)
        .where(col(ApiKey.org_id) == org_id, col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.created_at).desc())
    )
    return rows.scalars().first()


async def revoke_api_keys(*, session: AsyncSession, org_id: UUID, now: datetime) -> int:
    """Revoke every current key of the organisation; returns how many."""
    result = await session.execute(
        update(ApiKey)
        .where(col(ApiKey.org_id) == org_id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
        .returning(col(ApiKey.id))
    )
    return len(result.all())


# --- staff ---------------------------------------------------------------------------------------------


async def get_staff(*, session: AsyncSession, staff_id: UUID, for_update: bool = False) -> StaffMember | None:
    """A staff member by id (locked until commit, and read afresh, with for_update)."""
    if for_update:
        return await session.get(StaffMember, staff_id, with_for_update=True, populate_existing=True)
    return await session.get(StaffMember, staff_id)


async def get_staff_by_email(*, session: AsyncSession, email: str) -> StaffMember | None:
    """A staff member by (lower-cased) e-mail address."""
    rows = await session.execute(select(StaffMember).where(col(StaffMember.email) == email))
    return rows.scalars().first()


async def list_staff(
    *, session: AsyncSession, org_id: UUID, role: str | None, limit: int, offset: int, active_only: bool = False
) -> tuple[list[StaffMember], int]:
    """One page of the organisation's staff by name, and the total."""
    where = [col(StaffMember.org_id) == org_id]
    if role is not None:
        where.append(col(StaffMember.role) == role)
    if active_only:
        where += [col(StaffMember.deactivated_at).is_(None), col(StaffMember.removed_at).is_(None)]
    total = (await session.execute(select(func.count()).select_from(StaffMember).where(*where))).scalar_one()
    rows = await session.execute(
        select(StaffMember)
        .where(*where)
        .order_by(col(StaffMember.name), col(StaffMember.id))
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars()), int(total)


async def active_participants_per_coach(*, session: AsyncSession, org_id: UUID) -> dict[UUID, int]:
    """Every coach of the organisation with their number of running participants (0 included)."""
    running = (
        select(col(Participant.coach_id), func.count().label("n"))
        .where(col(Participant.org_id) == org_id, col(Participant.status).in_(ACTIVE_STATUSES))
        .group_by(col(Participant.coach_id))
        .subquery()
    )
    rows = await session.execute(
        select(col(StaffMember.id), func.coalesce(running.c.n, 0))
        .outerjoin(running, running.c.coach_id == col(StaffMember.id))
        .where(
            col(StaffMember.org_id) == org_id,
            col(StaffMember.role) == "coach",
            col(StaffMember.deactivated_at).is_(None),
            col(StaffMember.removed_at).is_(None),
        )
    )
    return {coach_id: int(count) for coach_id, count in rows.all()}


async def coach_lookup(*, session: AsyncSession, org_id: UUID) -> dict[str, UUID]:
    """The organisation's coaches by lower-cased e-mail address and by id as text."""
    rows = await session.execute(
        select(col(StaffMember.id), col(StaffMember.email)).where(
            col(StaffMember.org_id) == org_id,
            col(StaffMember.role) == "coach",
            col(StaffMember.deactivated_at).is_(None),
            col(StaffMember.removed_at).is_(None),
        )
    )
    lookup: dict[str, UUID] = {}
    for coach_id, email in rows.all():
        if email is not None:
            lookup[email.lower()] = coach_id
        lookup[str(coach_id)] = coach_id
    return lookup


async def get_invitation(*, session: AsyncSession, token_hash: str) -> Invitation | None:
    """An invitation by its token hash, locked until commit (single use)."""
    return await session.get(Invitation, token_hash, with_for_update=True)


async def retire_invitations(*, session: AsyncSession, staff_id: UUID, now: datetime) -> None:
    """Older links stop working once a new one is sent or one is used."""
    await session.execute(
        update(Invitation)
        .where(col(Invitation.staff_id) == staff_id, col(Invitation.used_at).is_(None))
        .values(used_at=now)
    )


async def login_limits(*, session: AsyncSession, keys: Iterable[str]) -> dict[str, LoginLimit]:
    """The limit rows of these keys, created if needed and locked until commit (in key
    order, so parallel attempts wait for each other and never deadlock)."""
    ordered = sorted(set(keys))
    await session.execute(insert(LoginLimit).values([{"key": key} for key in ordered]).on_conflict_do_nothing())
    rows = await session.execute(
        select(LoginLimit)
        .where(col(LoginLimit.key).in_(ordered))
        .order_by(col(LoginLimit.key))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.key: row for row in rows.scalars()}


async def delete_stale_login_limits(*, session: AsyncSession, before: datetime) -> None:
    """Forget limits whose window and block both ended before `before`."""
    await session.execute(
        delete(LoginLimit).where(
            or_(col(LoginLimit.window_started_at).is_(None), col(LoginLimit.window_started_at) < before),
            or_(col(LoginLimit.blocked_until).is_(None), col(LoginLimit.blocked_until) < before),
        )
    )


async def participants_to_reassign(
    *, session: AsyncSession, org_id: UUID, limit: int, offset: int
) -> tuple[list[Participant], int]:
    """Running participants whose coach was deactivated or removed, oldest first."""
    inactive = select(col(StaffMember.id)).where(
        col(StaffMember.org_id) == org_id,
        or_(col(StaffMember.deactivated_at).is_not(None), col(StaffMember.removed_at).is_not(None)),
    )
    where = [
        col(Participant.org_id) == org_id,
        col(Participant.status).in_(ACTIVE_STATUSES),
        col(Participant.coach_id).in_(inactive),
    ]
    total = (await session.execute(select(func.count()).select_from(Participant).where(*where))).scalar_one()
    rows = await session.execute(
        select(Participant)
        .where(*where)
        .order_by(col(Participant.created_at), col(Participant.id))
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars()), int(total)


async def active_admins(*, session: AsyncSession, org_id: UUID) -> int:
    """How many active organisation admins the organisation has."""
    query = (
        select(func.count())
        .select_from(StaffMember)
        .where(
            col(StaffMember.org_id) == org_id,
            col(StaffMember.role) == "org_admin",
            col(StaffMember.deactivated_at).is_(None),
            col(StaffMember.removed_at).is_(None),
        )
    )
    return int((await session.execute(query)).scalar_one())


async def count_signup(*, session: AsyncSession, key: str, window_start: datetime) -> int:
    """Count one sign-up against a counter and return its new value; the row stays locked
    until commit, so parallel sign-ups are counted one after the other."""
    statement = (
        insert(SignupCounter)
        .values(key=key, window_start=window_start, count=1)
        .on_conflict_do_update(index_elements=["key", "window_start"], set_={"count": col(SignupCounter.count) + 1})
        .returning(col(SignupCounter.count))
    )
    return int((await session.execute(statement)).scalar_one())


async def signup_count(*, session: AsyncSession, key: str, window_start: datetime) -> int:
    """The count of a counter in one window (0 when nothing was counted there)."""
    query = select(col(SignupCounter.count)).where(
        col(SignupCounter.key) == key, col(SignupCounter.window_start) == window_start
    )
    return int((await session.execute(query)).scalar_one_or_none() or 0)


async def delete_signup_counters(*, session: AsyncSession, started_before: datetime) -> int:
    """Delete the counters of windows that started before the given moment."""
    result = await session.execute(delete(SignupCounter).where(col(SignupCounter.window_start) < started_before))
    return int(getattr(result, "rowcount", 0) or 0)


# --- participants -------------------------------------------------------------------------------------


async def get_participant(
    *, session: AsyncSession, participant_id: UUID, for_update: bool = False
) -> Participant | None:
    """A participant by id (optionally locked until commit)."""
    return await session.get(Participant, participant_id, with_for_update=for_update)


async def participant_from_signal(*, session: AsyncSession, org_id: UUID, signal_id: UUID) -> Participant | None:
    """The organisation's participant enrolled from this signal (uq_participant_signal: at most one)."""
    rows = await session.execute(
        select(Participant).where(col(Participant.org_id) == org_id, col(Participant.consent_signal_id) == signal_id)
    )
    return rows.scalars().first()


async def participant_by_confirm_token(*, session: AsyncSession, token_hash: str) -> Participant | None:
    """The sign-up behind a confirmation link, locked until commit."""
    rows = await session.execute(
        select(Participant).where(col(Participant.confirm_token_hash) == token_hash).with_for_update()
    )
    return rows.scalars().first()


async def list_participants(
    *,
    session: AsyncSession,
    org_id: UUID,
    status: str | None,
    coach_id: UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[Participant], int]:
    """One page of the organisation's participants, oldest first, and the total."""
    where = [col(Participant.org_id) == org_id]
    if status is not None:
        where.append(col(Participant.status) == status)
    if coach_id is not None:
        where.append(col(Participant.coach_id) == coach_id)
    total = (await session.execute(select(func.count()).select_from(Participant).where(*where))).scalar_one()
    rows = await session.execute(
        select(Participant)
        .where(*where)
        .order_by(col(Participant.created_at), col(Participant.id))
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars()), int(total)


async def has_running_enrolment(
    *, session: AsyncSession, org_id: UUID, email: str, other_than: UUID | None = None
) -> bool:
    """Whether the address has an enrolled, active or paused enrolment here."""
    where = [
        col(Participant.org_id) == org_id,
        col(Participant.email) == email,
        col(Participant.status).in_(ACTIVE_STATUSES),
    ]
    if other_than is not None:
        where.append(col(Participant.id) != other_than)
    row = await session.execute(select(col(Participant.id)).where(*where).limit(1))
    return row.first() is not None


async def running_emails(*, session: AsyncSession, org_id: UUID) -> frozenset[str]:
    """The addresses of the organisation's running participants."""
    rows = await session.execute(
        select(col(Participant.email)).where(
            col(Participant.org_id) == org_id, col(Participant.status).in_(ACTIVE_STATUSES)
        )
    )
    return frozenset(email for (email,) in rows.all() if email)


async def pending_signups(*, session: AsyncSession, org_id: UUID, email: str) -> list[Participant]:
    """Unconfirmed sign-ups of one address in one organisation."""
    rows = await session.execute(
        select(Participant)
        .where(col(Participant.org_id) == org_id, col(Participant.email) == email, col(Participant.status) == "pending")
        .with_for_update()
    )
    return list(rows.scalars())


async def expired_signups(*, session: AsyncSession, expired_before: datetime, limit: int = 500) -> list[Participant]:
    """Sign-ups whose link expired before the given moment; rows another replica holds are skipped."""
    rows = await session.execute(
        select(Participant)
        .where(col(Participant.status) == "pending", col(Participant.confirm_expires_at) < expired_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def insert_participants(*, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Many participants in one statement batch (the CSV import, enrolments through the API)."""
    if rows:
        await session.execute(insert(Participant), list(rows))


# --- enrolments through the API (a plain asyncpg connection: see enrolment_batches) --------------


@dataclass(frozen=True)
class LicenceTerms:
    """What an organisation's enrolments are checked against, from its locked row."""

    valid_from: date
    valid_until: date
    maximum: int
    variants: tuple[str, ...]


@dataclass(frozen=True)
class EnrolmentCounts:
    """What an enrolment decides on: the licence's running participants and each coach's
    running participants (0 included)."""

    running: int
    per_coach: dict[UUID, int]


_RUNNING_STATUSES_SQL = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
"""The running statuses as SQL literals (constants of the domain, never input). A statement that
takes them as a parameter cannot use the partial index uq_participant_active_email in the
generic plan PostgreSQL may choose for a prepared statement after five runs; that plan read every
participant of the organisation: 14 ms in an organisation of 25,000, against 0.06 ms."""

_RUNNING_EMAILS_AMONG = f"""
SELECT email FROM participant
 WHERE org_id = $1 AND status IN ({_RUNNING_STATUSES_SQL}) AND email = ANY($2::text[])
"""  # noqa: S608 - the statuses are the domain's constants


async def running_emails_among(
    *, connection: asyncpg.Connection, org_id: UUID, emails: Sequence[str]
) -> frozenset[str]:
    """Which of these addresses already run in the organisation."""
    rows = await connection.fetch(_RUNNING_EMAILS_AMONG, org_id, list(emails))
    return frozenset(row["email"] for row in rows)


_LOCK_ORGANISATION = """
SELECT licence_valid_from, licence_valid_until, max_active_participants, variants
  FROM organisation WHERE id = $1 FOR UPDATE
"""


async def lock_organisation(*, connection: asyncpg.Connection, org_id: UUID) -> LicenceTerms | None:
    """The organisation's licence terms, its row locked until commit (enrolments into one
    organisation take turns); None when there is no such organisation."""
    row = await connection.fetchrow(_LOCK_ORGANISATION, org_id)
    if row is None:
        return None
    return LicenceTerms(
        valid_from=row["licence_valid_from"],
        valid_until=row["licence_valid_until"],
        maximum=row["max_active_participants"],
        variants=tuple(row["variants"]),
    )


# A statement of its own after the lock: in READ COMMITTED each statement reads what was
# committed when it started, so counts read in the locking statement would miss the batch that
# held the lock just before. running_participants is kept by triggers on participant (migration
# e4b9c2d7a1f3): a row per coach instead of counting every running participant each time.
_ENROLMENT_COUNTS = """
SELECT s.id AS coach_id, coalesce(r.running, 0) AS n
FROM (SELECT coach_id, running FROM running_participants WHERE org_id = $1 AND running <> 0) AS r
FULL JOIN (SELECT id FROM staff
           WHERE org_id = $1 AND role = 'coach' AND deactivated_at IS NULL AND removed_at IS NULL) AS s
       ON s.id = r.coach_id
"""
"""Per active coach their running participants (0 included), and a row without a coach for the
participants of no active coach: all count for the licence, only active coaches get new ones."""


async def enrolment_counts(*, connection: asyncpg.Connection, org_id: UUID) -> EnrolmentCounts:
    """The counts enrolments decide on, in one round trip (the hot path of the enrolment API)."""
    rows = await connection.fetch(_ENROLMENT_COUNTS, org_id)
    return EnrolmentCounts(
        running=sum(int(row["n"]) for row in rows),
        per_coach={row["coach_id"]: int(row["n"]) for row in rows if row["coach_id"] is not None},
    )


_PARTICIPANT_COLUMNS = (
    "id",
    "coach_id",
    "first_name",
    "email",
    "phone",
    "start_date",
    "send_time",
    "timezone",
    "variant",
    "status",
    "source",
    "consented_at",
    "consent_via",
    "consent_signal_id",
    "created_at",
    "updated_at",
)
"""The columns of new_participant's rows ($2 to $17 below, org_id is $1)."""

# One statement for the participants and their outbox rows: a data-modifying WITH always runs,
# and a unique index that refuses one participant fails the whole statement.
_INSERT_PARTICIPANTS_WITH_EVENTS = """
WITH p AS (
  INSERT INTO participant (org_id, id, coach_id, first_name, email, phone, start_date, send_time, timezone, variant,
                           status, source, consented_at, consent_via, consent_signal_id, created_at, updated_at)
  SELECT $1, r.*
    FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::date[], $8::time[], $9::text[],
                $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::text[], $15::uuid[],
                $16::timestamptz[], $17::timestamptz[])
      AS r(id, coach_id, first_name, email, phone, start_date, send_time, timezone, variant, status, source,
           consented_at, consent_via, consent_signal_id, created_at, updated_at)
)
INSERT INTO outbox (event_id, topic, key, value, created_at)
SELECT e.event_id, e.topic, e.key, e.value, $22
  FROM unnest($18::text[], $19::text[], $20::text[], $21::bytea[]) WITH ORDINALITY AS e(event_id, topic, key, value, n)
 ORDER BY e.n
"""


async def insert_participants_with_events(
    *, connection: asyncpg.Connection, org_id: UUID, rows: Sequence[dict[str, Any]], events: Sequence[Envelope]
) -> None:
    """New participants of one organisation and their events' outbox rows (in the given order,
    which the relay keeps), in one statement. The caller wakes the relay after its commit."""
    if not rows:
        return
    encoded = [outbox_values(envelope) for envelope in events]
    await connection.execute(
        _INSERT_PARTICIPANTS_WITH_EVENTS,
        org_id,
        *([row[name] for row in rows] for name in _PARTICIPANT_COLUMNS),
        *([values[n] for values in encoded] for n in range(4)),
        utcnow(),
    )
