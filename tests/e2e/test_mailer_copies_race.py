"""A recipient's address and a coach's name reach the mailer from two topics, on real PostgreSQL:
participant.enrolled (or coach.added) makes the copy, contact.details_set brings the name and
address. Two consumers (two replicas, or the same one's two subscriptions) may apply them at the
same moment; each must not miss the other. Here the first of the two is held open just before its
commit, with its rows written, while the second runs; the copy must end with the name and address
whichever came first. (Without taking turns, the second read the first's rows as missing and the
copy kept no address: the day's lesson then waited for it for ever, as a failure drill found;
and the backlog gauge, which counted from the lesson's latest postponement, never showed it.)

The changes run in this process on a fresh database of their own (the running mailer does not see them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer.handlers import write_folded
from services.mailer.metrics import DUE_BACKLOG, OLDEST_DUE_SECONDS
from services.mailer.tables import Delivery
from services.mailer.use_cases import measure_backlog
from shared.db import Database, asyncpg_dsn
from shared.events import CoachAdded, ContactDetailsSet, Envelope, ParticipantEnrolled, Payload
from shared.kafka import Subscription, apply_events
from tests.e2e.test_mailer_batch_order import mailer_subscription
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

ORG = uuid4()
AT = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
async def database(infrastructure: None) -> AsyncIterator[Database]:
    async with fresh_database("mailer") as url:
        database = Database(url, pool_size=2)
        try:
            yield database
        finally:
            await database.dispose()


def held_before_commit(
    subscription: Subscription, held: str, reached: asyncio.Event, go_on: asyncio.Event
) -> Subscription:
    """The subscription, but the change of type `held` writes what it folded at once and then
    waits for `go_on`: its unit of work stays open, rows written and locks held, until then."""

    def hold(change: Any) -> Any:
        async def held_change(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
            await change(session, envelope, payload)
            await write_folded(session)
            reached.set()
            await go_on.wait()

        return held_change

    changes = {
        topic: {kind: hold(change) if kind == held else change for kind, change in by_type.items()}
        for topic, by_type in subscription.changes.items()
    }
    return Subscription(changes, subscription.tombstones, subscription.prepare)


async def waiting_for_a_lock(database: Database) -> bool:
    connection = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        return bool(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                make_url(database.url).database,
            )
        )
    finally:
        await connection.close()


async def apply_at_the_same_moment(database: Database, first: Envelope, second: Envelope) -> None:
    """Apply `first` in a unit of work held open before its commit, then `second` in another;
    let the first commit once the second has finished or waits for it."""
    subscription = mailer_subscription()
    reached, go_on = asyncio.Event(), asyncio.Event()
    held = asyncio.create_task(
        apply_events(database, held_before_commit(subscription, first.type, reached, go_on), [first])
    )
    try:
        await reached.wait()
        second_applied = asyncio.create_task(apply_events(database, subscription, [second]))
        while not second_applied.done() and not await waiting_for_a_lock(database):
            await asyncio.sleep(0.02)
        go_on.set()
        await asyncio.gather(held, second_applied)
    finally:
        go_on.set()
        held.cancel()


def contact(person: UUID, kind: str, name: str, email: str) -> Envelope:
    payload = ContactDetailsSet(person_id=person, kind=kind, name=name, email=email)
    return Envelope.wrap(payload, org_id=ORG, participant_id=person if kind == "participant" else None)


def made(payload: Payload, person: UUID) -> Envelope:
    participant = person if isinstance(payload, ParticipantEnrolled) else None
    return Envelope.wrap(payload, org_id=ORG, participant_id=participant, occurred_at=AT)


@pytest.mark.parametrize("contact_first", [True, False], ids=["contact first", "enrolment first"])
async def test_a_recipient_gets_its_address_whichever_topic_is_applied_first(
    database: Database, contact_first: bool
) -> None:
    participant, coach = uuid4(), uuid4()
    enrolled = made(
        ParticipantEnrolled(
            coach_id=coach,
            start_date=date(2026, 3, 2),
            send_time=time(8),
            timezone="Europe/Amsterdam",
            variant="standard",
        ),
        participant,
    )
    details = contact(participant, "participant", "Greet", "greet@example.org")
    first, second = (details, enrolled) if contact_first else (enrolled, details)

    await apply_at_the_same_moment(database, first, second)

    rows = await fetch(database, "SELECT first_name, email FROM recipient WHERE participant_id = $1", participant)
    assert rows == [("Greet", "greet@example.org")]


@pytest.mark.parametrize("contact_first", [True, False], ids=["contact first", "coach first"])
async def test_a_coach_copy_gets_its_name_whichever_topic_is_applied_first(
    database: Database, contact_first: bool
) -> None:
    coach = uuid4()
    added = made(CoachAdded(coach_id=coach), coach)
    details = contact(coach, "staff", "Karin de Vries", "karin@example.org")
    first, second = (details, added) if contact_first else (added, details)

    await apply_at_the_same_moment(database, first, second)

    rows = await fetch(database, "SELECT name, email FROM coach_copy WHERE coach_id = $1", coach)
    assert rows == [("Karin de Vries", "karin@example.org")]


async def fetch(database: Database, query: str, *args: object) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        return [tuple(row) for row in await connection.fetch(query, *args)]
    finally:
        await connection.close()


async def test_a_lesson_postponed_again_and_again_keeps_its_age_for_the_alert(database: Database) -> None:
    """A lesson waiting for an address (postponed every few seconds) is not due at any moment,
    but ops must see how long it has waited: the gauge MeerMailerDueMailWaiting alerts on counts
    from when it was scheduled."""
    now = datetime.now(UTC)
    async with database.session() as session:
        for scheduled, due in ((now - timedelta(hours=2), now + timedelta(seconds=10)), (now, now)):
            session.add(
                Delivery(
                    participant_id=uuid4(), org_id=ORG, day=1, local_date=scheduled.date(), due_at=due,
                    created_at=scheduled,
                )
            )  # fmt: skip
        await session.commit()

    await measure_backlog(database, now)

    assert DUE_BACKLOG._value.get() == 1  # only the second is due at this moment
    assert OLDEST_DUE_SECONDS._value.get() == pytest.approx(7200, abs=1)
