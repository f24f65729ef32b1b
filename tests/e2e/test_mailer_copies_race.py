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

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

import pytest

from services.mailer.handlers import write_folded
from services.mailer.metrics import DUE_BACKLOG, OLDEST_DUE_SECONDS
from services.mailer.tables import Delivery
from services.mailer.use_cases import measure_backlog
from shared.db import Database
from shared.events import CoachAdded, ContactDetailsSet, Envelope, ParticipantEnrolled, Payload
from shared.kafka import apply_events
from tests.e2e.test_mailer_batch_order import Tombstone, mailer_subscription, with_tombstones
from tests.support.databases import fresh_database_pool
from tests.support.races import apply_at_the_same_moment, fetch

pytestmark = pytest.mark.stack

ORG = uuid4()
AT = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
async def database(infrastructure: None) -> AsyncIterator[Database]:
    async with fresh_database_pool("mailer", pool_size=2) as database:  # two units of work at once
        yield database


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

    await apply_at_the_same_moment(database, mailer_subscription(), first, second, flush=write_folded)

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

    await apply_at_the_same_moment(database, mailer_subscription(), first, second, flush=write_folded)

    rows = await fetch(database, "SELECT name, email FROM coach_copy WHERE coach_id = $1", coach)
    assert rows == [("Karin de Vries", "karin@example.org")]


@pytest.mark.parametrize("erasure_first", [True, False], ids=["erasure first", "enrolment first"])
async def test_an_erased_address_is_not_copied_by_an_enrolment_applied_at_the_same_moment(
    database: Database, erasure_first: bool
) -> None:
    """The contact's tombstone erases the address from every copy; an enrolment applied at the
    same moment, which read the address before the erasure committed, must not put it back."""
    participant = uuid4()
    await apply_events(
        database, mailer_subscription(), [contact(participant, "participant", "Greet", "greet@example.org")]
    )
    enrolled = made(
        ParticipantEnrolled(
            coach_id=uuid4(), start_date=date(2026, 3, 2), send_time=time(8), timezone="Europe/Amsterdam",
            variant="standard",
        ),
        participant,
    )  # fmt: skip
    run: list[Envelope | Tombstone] = (
        [Tombstone(participant), enrolled] if erasure_first else [enrolled, Tombstone(participant)]
    )
    subscription, (first, second) = with_tombstones(mailer_subscription(), run)

    await apply_at_the_same_moment(database, subscription, first, second, flush=write_folded)

    assert await fetch(database, "SELECT first_name, email FROM recipient WHERE participant_id = $1", participant) == [
        (None, None)
    ]
    assert await fetch(database, "SELECT count(*) FROM contact_copy WHERE person_id = $1", participant) == [(0,)]


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
