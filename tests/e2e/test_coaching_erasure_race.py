"""A participant's name reaches coaching's dashboard from two topics, on real PostgreSQL:
participant.enrolled makes the dashboard row and takes the name from the contact copy, and a
tombstone on meer.contact erases it. Applied at the same moment by two consumers (tests/support/
races.py holds the first open just before its commit), the erasure must win whichever came
first: without taking turns, an enrolment that read the name before the erasure committed put it
on a row the erasure could not see yet.

The changes run in this process on a fresh database of their own (the running coaching does not see them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, time
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.handlers import build_handlers, build_tombstone_handlers, load_batch
from services.coaching.live import LiveHub
from shared.db import Database
from shared.events import ContactDetailsSet, Envelope, ParticipantEnrolled
from shared.kafka import Subscription, apply_events
from tests.e2e.test_mailer_batch_order import Tombstone, with_tombstones
from tests.support.databases import fresh_database_pool
from tests.support.races import apply_at_the_same_moment, fetch

pytestmark = pytest.mark.stack

TZ = ZoneInfo("Europe/Amsterdam")
ORG = uuid4()


@pytest.fixture
async def database(infrastructure: None) -> AsyncIterator[Database]:
    async with fresh_database_pool("coaching", pool_size=2) as database:  # two units of work at once
        yield database


def coaching_subscription() -> Subscription:
    return Subscription(build_handlers(LiveHub(), TZ), build_tombstone_handlers(TZ), load_batch)


@pytest.mark.parametrize("erasure_first", [True, False], ids=["erasure first", "enrolment first"])
async def test_an_erased_name_is_not_put_back_by_an_enrolment_applied_at_the_same_moment(
    database: Database, erasure_first: bool
) -> None:
    participant = uuid4()
    details = ContactDetailsSet(person_id=participant, kind="participant", name="Greet", phone="0612345678")
    await apply_events(
        database, coaching_subscription(), [Envelope.wrap(details, org_id=ORG, participant_id=participant)]
    )
    enrolled = Envelope.wrap(
        ParticipantEnrolled(
            coach_id=uuid4(), start_date=date(2026, 3, 2), send_time=time(8), timezone="Europe/Amsterdam",
            variant="standard",
        ),
        org_id=ORG, participant_id=participant, occurred_at=datetime(2026, 3, 2, 8, tzinfo=UTC),
    )  # fmt: skip
    run: list[Envelope | Tombstone] = (
        [Tombstone(participant), enrolled] if erasure_first else [enrolled, Tombstone(participant)]
    )
    subscription, (first, second) = with_tombstones(coaching_subscription(), run)
    marker = first if erasure_first else second

    async def prepare_without_the_marker(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        # A tombstone comes without an envelope: the batch does not load its person's rows up front.
        await load_batch(session, [envelope for envelope in envelopes if envelope is not marker])

    subscription = Subscription(subscription.changes, subscription.tombstones, prepare_without_the_marker)

    await apply_at_the_same_moment(database, subscription, first, second)

    rows = await fetch(database, "SELECT first_name, phone FROM dashboard_row WHERE participant_id = $1", participant)
    assert rows == [(None, None)]
    assert await fetch(database, "SELECT count(*) FROM contact_view WHERE person_id = $1", participant) == [(0,)]
