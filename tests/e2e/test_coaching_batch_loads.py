"""Coaching's batch store reads a batch's people per table, not per person (services.coaching.
handlers.load_batch and LiveBatchStore.load), on the real PostgreSQL: new participants' rows
are made in one statement and their contact details read in one, and the projection is the
same as the rebuild's in-memory store makes of the same events in the same order.

What it guards: in an enrolment burst every new participant cost coaching's consumer four
statements of its own (look up the row and the contact details for contact.details_set, then
make the row and read it back locked for participant.enrolled)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.coaching.handlers import APPLIERS, build_handlers, load_batch
from services.coaching.live import LiveHub
from services.coaching.memory_store import COLUMNS, LiveBatchStore, key_of
from services.coaching.rebuild import MemoryProjectionStore
from services.coaching.tables import CoachingTable, ContactView, DashboardRow
from shared.db import Database, asyncpg_dsn
from shared.events import ContactDetailsSet, Envelope, MailSent, ParticipantEnrolled, Payload
from shared.kafka import Subscription, apply_events
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

TZ = ZoneInfo("Europe/Amsterdam")
T0 = datetime(2026, 3, 2, 7, tzinfo=UTC)
COMPARED_TABLES: tuple[type[CoachingTable], ...] = (DashboardRow, ContactView)


def wrap(payload: Payload, org: uuid.UUID, participant: uuid.UUID | None, minutes: int) -> Envelope:
    return Envelope.wrap(payload, org_id=org, participant_id=participant, occurred_at=T0 + timedelta(minutes=minutes))


def contact(org: uuid.UUID, person: uuid.UUID, name: str, minutes: int) -> Envelope:
    details = ContactDetailsSet(person_id=person, kind="participant", name=name, email=f"{person.hex}@example.org")
    return wrap(details, org, None, minutes)


def enrolled(org: uuid.UUID, participant: uuid.UUID, minutes: int) -> Envelope:
    payload = ParticipantEnrolled(
        coach_id=uuid.uuid4(),
        start_date=date(2026, 3, 2),
        send_time=clock_time(8),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    return wrap(payload, org, participant, minutes)


def sent(org: uuid.UUID, participant: uuid.UUID, minutes: int) -> Envelope:
    mail = MailSent(
        delivery_id=uuid.uuid4(),
        day=1,
        lesson_title="Les 1",
        pack="p",
        pack_version="1",
        message_id="m",
        sent_at=T0 + timedelta(minutes=minutes),
    )
    return wrap(mail, org, participant, minutes)


async def rebuilt(batches: Sequence[Sequence[Envelope]]) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """What the rebuild's in-memory store makes of the same events, in the same order."""
    store = MemoryProjectionStore()
    for envelope in (envelope for batch in batches for envelope in batch):
        if store.claim(envelope.event_id):
            await APPLIERS[envelope.topic][envelope.type](store, envelope)
    return {
        str(table.__tablename__): {
            key_of(table, row): tuple(getattr(row, name) for name in COLUMNS[table])
            for row in store.tables[table].values()
        }
        for table in COMPARED_TABLES
    }


async def projected(url: str) -> dict[str, dict[Any, tuple[Any, ...]]]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        found = {}
        for table in COMPARED_TABLES:
            rows = await connection.fetch(f"SELECT {', '.join(COLUMNS[table])} FROM {table.__tablename__}")  # noqa: S608
            found[str(table.__tablename__)] = {key_of(table, dict(row)): tuple(row) for row in rows}
        return found
    finally:
        await connection.close()


async def test_a_batch_reads_and_makes_its_people_per_table_and_projects_as_the_rebuild(
    infrastructure: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = uuid.uuid4()
    new = [uuid.uuid4() for _ in range(20)]  # details, then enrolled: both in the measured batch
    known = [uuid.uuid4() for _ in range(5)]  # details in an earlier batch, enrolled now
    mailed_first = [uuid.uuid4() for _ in range(3)]  # a mail before the enrolment: that mail makes the row
    renamed = [uuid.uuid4() for _ in range(3)]  # enrolled earlier, new details now
    earlier = [contact(org, person, "Eerder", 0) for person in known] + [
        event for person in renamed for event in (contact(org, person, "Oud", 0), enrolled(org, person, 1))
    ]
    measured = [
        *(event for person in new for event in (contact(org, person, "Nieuw", 5), enrolled(org, person, 6))),
        *(enrolled(org, person, 7) for person in known),
        *(event for person in mailed_first for event in (sent(org, person, 8), enrolled(org, person, 9))),
        *(contact(org, person, "Andere naam", 10) for person in renamed),
    ]

    statements: Counter[tuple[str, str]] = Counter()
    fetch, insert = LiveBatchStore._fetch, LiveBatchStore._insert

    async def counted_fetch(self: LiveBatchStore, table: type[CoachingTable], *args: Any, **kwargs: Any) -> None:
        statements["read", str(table.__tablename__)] += 1
        await fetch(self, table, *args, **kwargs)

    async def counted_insert(self: LiveBatchStore, table: type[CoachingTable], *args: Any, **kwargs: Any) -> None:
        statements["insert", str(table.__tablename__)] += 1
        await insert(self, table, *args, **kwargs)

    subscription = Subscription(
        {topic: dict(by_type) for topic, by_type in build_handlers(LiveHub(), TZ).items()}, {}, load_batch
    )
    async with fresh_database("coaching") as url:
        database = Database(url, pool_size=2)
        try:
            assert await apply_events(database, subscription, earlier) == 0
            monkeypatch.setattr(LiveBatchStore, "_fetch", counted_fetch)
            monkeypatch.setattr(LiveBatchStore, "_insert", counted_insert)
            assert await apply_events(database, subscription, measured) == 0
            monkeypatch.undo()
            found = await projected(url)
        finally:
            await database.dispose()

    # 31 people in the batch: the rows are read once and the 25 new ones made and read back
    # once; the 3 made by a mail before their enrolment go one at a time, as the mail makes them.
    assert statements["read", "contact_view"] == 1, statements
    assert statements["insert", "dashboard_row"] == 1 + len(mailed_first), statements
    assert statements["read", "dashboard_row"] == 2 + len(mailed_first), statements

    expected = await rebuilt([earlier, measured])
    assert found == expected
    rows = found["dashboard_row"]
    assert len(rows) == len(new) + len(known) + len(mailed_first) + len(renamed)
    first_name = COLUMNS[DashboardRow].index("first_name")
    assert {rows[person][first_name] for person in new} == {"Nieuw"}
    assert {rows[person][first_name] for person in known} == {"Eerder"}
    assert {rows[person][first_name] for person in renamed} == {"Andere naam"}
