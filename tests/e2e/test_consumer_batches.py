"""The batch consumer (shared.kafka.subscribe_events) on the real Kafka and PostgreSQL, with
coaching's own changes: a poison event in a batch is dead-lettered alone, a redelivery of
every batch changes nothing, and each participant's events are applied in their order.

The consumer runs in this process on a topic of its own and a fresh coaching database, so
the stack's services neither see these events nor change what is counted."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.handlers import APPLIERS, build_handlers, load_batch
from services.coaching.live import LiveHub
from services.coaching.rebuild import MemoryProjectionStore
from services.coaching.tables import DashboardRow
from shared.db import Database, asyncpg_dsn
from shared.events import (
    Envelope,
    MailOpened,
    MailSent,
    ParticipantEnrolled,
    ParticipantPaused,
    ParticipantResumed,
    Payload,
)
from shared.kafka import Change, Subscription, create_broker, ensure_topics, subscribe_events
from tests.e2e.conftest import KAFKA, consumer_lag, eventually, read_topic
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

TZ = ZoneInfo("Europe/Amsterdam")
T0 = datetime(2026, 3, 2, 7, tzinfo=UTC)
PARTICIPANTS = 40
DAYS = 3
COMPARED = ("lifecycle", "paused_at", "mails_sent", "mails_opened", "lesson_day", "last_open_at", "updated_at")


def participant_events(org: uuid.UUID, participant: uuid.UUID) -> list[Envelope]:
    """Enrolled, three days of a mail and a human open, then paused, resumed, paused: applied
    out of order, the lifecycle would end elsewhere."""

    def wrap(payload: Payload, at: datetime) -> Envelope:
        return Envelope.wrap(payload, org_id=org, participant_id=participant, occurred_at=at)

    enrolled = ParticipantEnrolled(
        coach_id=uuid.uuid4(),
        start_date=date(2026, 3, 2),
        send_time=clock_time(8),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    events = [wrap(enrolled, T0)]
    for day in range(1, DAYS + 1):
        delivery, sent = uuid.uuid4(), T0 + timedelta(days=day - 1, hours=1)
        mail = MailSent(
            delivery_id=delivery,
            day=day,
            lesson_title=f"Les {day}",
            pack="p",
            pack_version="1",
            message_id="m",
            sent_at=sent,
        )
        opened = MailOpened(
            delivery_id=delivery, day=day, opened_at=sent + timedelta(hours=2), first_open=True, likely_automated=False
        )
        events += [wrap(mail, sent), wrap(opened, sent + timedelta(hours=2))]
    later = T0 + timedelta(days=DAYS)
    events += [
        wrap(ParticipantPaused(), later),
        wrap(ParticipantResumed(), later + timedelta(hours=1)),
        wrap(ParticipantPaused(), later + timedelta(hours=2)),
    ]
    return events


async def expected_rows(events: Sequence[Envelope]) -> dict[uuid.UUID, tuple[Any, ...]]:
    """What the rebuild's in-memory store makes of the same events, in the same order."""
    store = MemoryProjectionStore()
    for envelope in events:
        if envelope.participant_id is not None and store.claim(envelope.event_id):
            await APPLIERS[envelope.topic][envelope.type](store, envelope)
    return {
        row.participant_id: tuple(getattr(row, name) for name in COMPARED)
        for row in store.tables[DashboardRow].values()
    }


async def projected_rows(url: str) -> dict[uuid.UUID, tuple[Any, ...]]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT * FROM dashboard_row")
    finally:
        await connection.close()
    return {row["participant_id"]: tuple(row[name] for name in COMPARED) for row in rows}


async def counts(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        tables = ("processed_events", "dashboard_row", "mail_seen", "open_seen", "lifecycle_seen", "outbox")
        return {table: int(await connection.fetchval(f"SELECT count(*) FROM {table}")) for table in tables}  # noqa: S608
    finally:
        await connection.close()


async def outbox_types(url: str) -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT DISTINCT convert_from(value, 'UTF8')::json->>'type' AS type FROM outbox")
    finally:
        await connection.close()
    return {row["type"] for row in rows}


async def produce(topic: str, envelopes: Sequence[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic, e.model_dump_json().encode(), key=e.key) for e in envelopes]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@dataclass
class Units:
    """What the consumer's units of work were: the events of each, and the most that were
    loading their batch at the same moment."""

    sizes: list[int] = field(default_factory=list)
    loading: int = 0
    most_at_once: int = 0


@contextlib.asynccontextmanager
async def consuming(
    database: Database, topic: str, group: str, units: Units, *, units_in_flight: int = 1
) -> AsyncIterator[None]:
    """Coaching's changes, all subscribed on `topic`, in consumer group `group`; `units` learns
    about every unit of work."""
    changes: dict[str, Change] = {
        kind: change for by_type in build_handlers(LiveHub(), TZ).values() for kind, change in by_type.items()
    }

    async def prepare(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        units.sizes.append(len(envelopes))
        units.loading += 1
        units.most_at_once = max(units.most_at_once, units.loading)
        try:
            await asyncio.sleep(0.05)  # long enough for a unit beside this one to start loading too
            await load_batch(session, envelopes)
        finally:
            units.loading -= 1

    broker = create_broker(KAFKA, client_id="meer-batch-test")
    subscribe_events(
        broker,
        database,
        Subscription({topic: changes}, {}, prepare),
        service="batch-test",
        group_id=group,
        max_attempts=2,
        units_in_flight=units_in_flight,
    )
    await broker.start()
    try:
        yield
        await eventually(
            lambda: _caught_up(group, topic), what=f"consumer group {group} to commit every record of {topic}"
        )
    finally:
        await broker.stop()


async def _caught_up(group: str, topic: str) -> bool:
    return await consumer_lag(group, (topic,)) == 0


@pytest.fixture
async def coaching_database(infrastructure: None) -> AsyncIterator[tuple[str, Database]]:
    async with fresh_database("coaching") as url:
        database = Database(url, pool_size=2)
        try:
            yield url, database
        finally:
            await database.dispose()


@pytest.mark.parametrize("units_in_flight", [1, 2])
async def test_a_poison_event_costs_only_itself_redelivery_changes_nothing_and_order_holds(
    coaching_database: tuple[str, Database], units_in_flight: int
) -> None:
    url, database = coaching_database
    topic = f"meer.test-batches-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KAFKA, (topic,), partitions=3)
    org = uuid.uuid4()
    good = [e for _ in range(PARTICIPANTS) for e in participant_events(org, uuid.uuid4())]
    poison = Envelope.wrap(  # a valid envelope whose change refuses it: an open without a participant
        MailOpened(delivery_id=uuid.uuid4(), day=1, opened_at=T0, first_open=True, likely_automated=False), org_id=org
    )
    events = [*good[: len(good) // 2], poison, *good[len(good) // 2 :]]
    await produce(topic, events)

    units = Units()
    async with consuming(database, topic, f"batch-test-{uuid.uuid4().hex[:8]}", units, units_in_flight=units_in_flight):
        pass

    assert max(units.sizes) > 1, "the events were applied one at a time, not in batches"
    # Split by key, the batch's units ran side by side (the poison's unit too, until it failed).
    assert units.most_at_once == units_in_flight
    dead = await read_topic(topic + ".dlt")
    assert [Envelope.model_validate_json(r.value).event_id for r in dead] == [poison.event_id]
    headers = {name: value.decode() for name, value in dead[0].headers}
    assert headers["dlt-reason"] == "ValueError" and headers["dlt-consumer"] == "batch-test"
    assert headers["dlt-topic"] == topic
    expected = await expected_rows(good)
    assert len(expected) == PARTICIPANTS
    assert await projected_rows(url) == expected
    assert all(row[0] == "paused" for row in expected.values())
    first = await counts(url)
    assert first["processed_events"] == len(good)
    assert first["outbox"] > 0  # the call plans were published, once per change that moved them
    # Everyone opened every mail within hours: no alert held, so none travelled (not one per open).
    assert await outbox_types(url) <= {"call.planned", "call.suspended"}

    # Another consumer group reads every batch again: the claims skip every event that was applied.
    async with consuming(
        database, topic, f"batch-test-{uuid.uuid4().hex[:8]}", Units(), units_in_flight=units_in_flight
    ):
        pass
    assert await counts(url) == first
    assert await projected_rows(url) == expected
    again = await read_topic(topic + ".dlt")
    assert [Envelope.model_validate_json(r.value).event_id for r in again] == [poison.event_id] * 2
