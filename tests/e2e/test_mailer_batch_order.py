"""The mailer's changes in one batch end as the same events applied one by one, on real
PostgreSQL: random runs of a few people's contact details, enrolments, pauses, resumes, stops,
coach changes, erasures, contact tombstones, planned calls, call logs and alerts, on rows that
already exist (recipients, coach copies, lessons and transactional mails waiting for an address),
are applied to two fresh mailer databases, once as one unit of work and once as one unit of work
per event, and every table the mailer's consumer writes must then hold the same rows.

The changes run in this process on fresh databases of their own (the running mailer does not see them)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer.handlers import build_handlers, build_tombstone_handlers, take_turns_per_person
from shared.db import Database, asyncpg_dsn
from shared.events import (
    AlertCleared,
    AlertRaised,
    CallLogged,
    CallMoved,
    CallPlanned,
    CallSuspended,
    ContactDetailsSet,
    Envelope,
    ParticipantCoachChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
)
from shared.kafka import Subscription, apply_events
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

ORG = uuid4()
AT = datetime(2026, 3, 2, 8, tzinfo=UTC)

COMPARED = {
    "recipient": "participant_id, org_id, coach_id, first_name, email, start_date, send_time, timezone, variant, "
    "status, last_day, last_local_date, next_check_at",
    "contact_copy": "person_id, org_id, kind, name, email",
    "coach_copy": "coach_id, org_id, name, email",
    "planned_call_copy": "participant_id, number, org_id, lesson_day, state, due_date, overdue_from, lapses_after",
    "alert_copy": "participant_id, code, org_id, holds_from",
    # Lessons and mails postponed for an address are due at once after it came (not exactly when).
    "delivery": "id, participant_id, day, status, due_at < now() + interval '1 hour' AS due_now",
    "transactional_mail": "kind, participant_id, contact_id, status, to_address, context::text, "
    "due_at < now() + interval '1 hour' AS due_now",
}


def mailer_subscription() -> Subscription:
    """What the mailer's consumer applies (its exports aside), with its batch's locks."""
    return Subscription(build_handlers(lambda: None), build_tombstone_handlers(), take_turns_per_person)


class Tombstone:
    """A null value on meer.contact, keyed by the person (applied in its place in the batch)."""

    def __init__(self, person: UUID) -> None:
        self.person = person


@pytest.fixture
async def two_databases(infrastructure: None) -> AsyncIterator[tuple[Database, Database]]:
    async with fresh_database("mailer") as batched, fresh_database("mailer") as one_by_one:
        databases = Database(batched, pool_size=1), Database(one_by_one, pool_size=1)
        try:
            yield databases
        finally:
            for database in databases:
                await database.dispose()


async def seed(database: Database, rng: random.Random, people: list[UUID]) -> None:
    """The same rows in both databases: some people enrolled before, some coaches, each with a
    lesson due later (waiting for an address) and a confirmation mail waiting for it."""
    async with database.session() as session:
        for n, person in enumerate(people):
            if n % 2 == 0:
                await session.execute(
                    text(
                        "INSERT INTO recipient (participant_id, org_id, coach_id, first_name, email, start_date, "
                        "send_time, timezone, variant, status, last_day, updated_at) VALUES (:p, :o, :c, 'Greet', "
                        "NULL, '2026-03-02', '08:00', 'Europe/Amsterdam', 'standard', 'active', 3, now())"
                    ),
                    {"p": person, "o": ORG, "c": people[-1]},
                )
            if n % 3 == 1:
                await session.execute(
                    text("INSERT INTO coach_copy (coach_id, org_id, name) VALUES (:p, :o, NULL)"),
                    {"p": person, "o": ORG},
                )
            await session.execute(
                text(
                    "INSERT INTO delivery (id, participant_id, org_id, day, local_date, due_at, status, attempts, "
                    "created_at) VALUES (:id, :p, :o, 4, '2026-03-05', now() + interval '2 hours', 'due', 0, now())"
                ),
                {"id": UUID(int=rng.getrandbits(128)), "p": person, "o": ORG},
            )
            await session.execute(
                text(
                    "INSERT INTO transactional_mail (id, kind, org_id, participant_id, contact_id, context, status, "
                    "attempts, due_at, created_at) VALUES (:id, 'confirmation', :o, :p, :p, '{}', 'due', 0, "
                    "now() + interval '2 hours', now())"
                ),
                {"id": UUID(int=rng.getrandbits(128)), "p": person, "o": ORG},
            )
        await session.commit()


def random_run(rng: random.Random, people: list[UUID], length: int) -> list[Envelope | Tombstone]:
    run: list[Envelope | Tombstone] = []
    for _ in range(length):
        person = rng.choice(people)
        choice = rng.randrange(14)
        payload: Payload
        if choice == 13:
            run.append(Tombstone(person))
            continue
        if choice in (0, 1):
            payload = ContactDetailsSet(
                person_id=person,
                kind=rng.choice(["participant", "participant", "staff"]),
                name=rng.choice(["Ans", "Joop", "Henk"]),
                email=rng.choice([None, f"{person.hex[:6]}@example.org"]),
            )
        elif choice in (2, 3):
            payload = ParticipantEnrolled(
                coach_id=rng.choice(people),
                start_date=date(2026, 3, rng.randint(1, 9)),
                send_time=time(rng.randint(7, 9)),
                timezone="Europe/Amsterdam",
                variant="standard",
            )
        elif choice == 4:
            payload = ParticipantPaused()
        elif choice == 5:
            payload = ParticipantResumed()
        elif choice == 6:
            payload = ParticipantStopped(by=rng.choice(["participant", "coach"]))
        elif choice == 7:
            payload = ParticipantCoachChanged(coach_id=rng.choice(people))
        elif choice == 8:
            payload = ParticipantErased()
        elif choice == 9:
            cls = rng.choice([CallPlanned, CallMoved, CallSuspended])
            payload = cls(number=rng.randint(1, 2), lesson_day=rng.randint(1, 60), due_date=date(2026, 3, 12))
        elif choice == 10:
            payload = CallLogged(
                call_id=uuid4(),
                coach_id=uuid4(),
                called_at=AT,
                reached=rng.random() < 0.8,
                duration_minutes=5,
                planned_call=rng.choice([None, 1, 2]),
            )
        elif choice == 11:
            payload = AlertRaised(code=rng.choice(["no_open_3_days", "low_scores"]), holds_from=AT)
        else:
            payload = AlertCleared(code=rng.choice(["no_open_3_days", "low_scores"]))
        run.append(Envelope.wrap(payload, org_id=ORG, participant_id=person, occurred_at=AT))
    return run


def with_tombstones(subscription: Subscription, run: list[Envelope | Tombstone]) -> tuple[Subscription, list[Envelope]]:
    """apply_events takes envelopes only: a tombstone rides as a marker event whose change is
    the tombstone change, in its place in the run."""
    tombstone = subscription.tombstones["meer.contact"]
    marker_type = ParticipantPaused.TYPE
    changes = {topic: dict(by_type) for topic, by_type in subscription.changes.items()}
    pause = changes["meer.participant"][marker_type]
    tombstoned: dict[UUID, UUID] = {}

    async def pause_or_tombstone(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        if envelope.event_id in tombstoned:
            await tombstone(session, str(tombstoned[envelope.event_id]))
        else:
            await pause(session, envelope, payload)

    changes["meer.participant"][marker_type] = pause_or_tombstone
    envelopes = []
    for item in run:
        if isinstance(item, Tombstone):
            marker = Envelope.wrap(ParticipantPaused(), org_id=ORG, participant_id=item.person, occurred_at=AT)
            tombstoned[marker.event_id] = item.person
            envelopes.append(marker)
        else:
            envelopes.append(item)
    return Subscription(changes, subscription.tombstones, subscription.prepare), envelopes


async def rows(database: Database) -> dict[str, list[tuple[object, ...]]]:
    connection = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        return {
            table: sorted(
                (tuple(r) for r in await connection.fetch(f"SELECT {columns} FROM {table}")),  # noqa: S608 - constants
                key=repr,
            )
            for table, columns in COMPARED.items()
        }
    finally:
        await connection.close()


@pytest.mark.parametrize("seed_number", range(6))
async def test_a_batch_ends_as_its_events_applied_one_by_one(
    two_databases: tuple[Database, Database], seed_number: int
) -> None:
    rng = random.Random(seed_number)
    people = [UUID(int=rng.getrandbits(128)) for _ in range(4)]
    subscription, run = with_tombstones(mailer_subscription(), random_run(rng, people, 60))
    batched, one_by_one = two_databases
    for database in two_databases:
        await seed(database, random.Random(seed_number), people)

    assert await apply_events(batched, subscription, run) == 0
    for envelope in run:
        await apply_events(one_by_one, subscription, [envelope])

    expected = await rows(one_by_one)
    assert await rows(batched) == expected
    # The run did something of each kind (the comparison is not of empty tables).
    assert expected["recipient"] and expected["contact_copy"] and expected["delivery"]


async def test_a_redelivered_batch_changes_nothing(two_databases: tuple[Database, Database]) -> None:
    rng = random.Random(99)
    people = [UUID(int=rng.getrandbits(128)) for _ in range(4)]
    subscription, run = with_tombstones(mailer_subscription(), random_run(rng, people, 60))
    database = two_databases[0]
    await seed(database, random.Random(99), people)
    await apply_events(database, subscription, run)
    before = await rows(database)
    assert await apply_events(database, subscription, run) == len(run)
    assert await rows(database) == before
