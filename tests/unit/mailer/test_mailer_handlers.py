"""The mailer's Kafka changes in the consumer unit of work (an in-memory database): the
scheduler is woken once per batch and only after its commit, mails asked for are queued, and
a contact tombstone erases the person from every copy."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import TextClause
from sqlalchemy.dialects import postgresql

from services.mailer.handlers import build_handlers, build_tombstone_handlers
from services.mailer.tables import Recipient, TransactionalMail
from shared.events import (
    CallPlanned,
    ContactDetailsSet,
    Envelope,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantStopped,
)
from shared.kafka import Subscription, apply_events
from tests.support.fake_database import FakeDatabase

AT = datetime(2026, 3, 2, 8, tzinfo=UTC)
ORG = uuid4()


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def enrolled(participant: UUID) -> Envelope:
    payload = ParticipantEnrolled(
        coach_id=uuid4(),
        start_date=date(2026, 3, 2),
        send_time=time(8),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    return Envelope.wrap(payload, org_id=ORG, participant_id=participant)


def table(statement: Any) -> str:
    """The table a statement writes (or, for a SELECT, reads)."""
    if isinstance(statement, TextClause):
        found = re.search(r"(?:INSERT INTO|UPDATE|DELETE FROM|FROM)\s+(\w+)", statement.text)
        assert found is not None
        return found.group(1)
    return str(statement.compile(dialect=postgresql.dialect()).statement.table.name)


def tables(database: FakeDatabase) -> list[str]:
    return [table(statement) for statement in database.executed]


async def test_a_batch_of_enrolments_wakes_the_scheduler_once_after_the_commit() -> None:
    wakes, database = Wakes(), FakeDatabase()
    subscription = Subscription(build_handlers(wakes))
    await apply_events(database, subscription, [enrolled(uuid4()) for _ in range(3)])
    assert wakes.count == 1 and database.commits == 1
    # One read of their contact copies, one write of the three recipients.
    assert tables(database) == ["contact_copy", "recipient"]


async def test_a_change_that_adds_no_work_does_not_wake_the_scheduler() -> None:
    wakes, database = Wakes(), FakeDatabase()
    call = CallPlanned(number=1, lesson_day=10, due_date=date(2026, 3, 12))
    await apply_events(
        database, Subscription(build_handlers(wakes)), [Envelope.wrap(call, org_id=ORG, participant_id=uuid4())]
    )
    assert wakes.count == 0 and tables(database) == ["planned_call_copy"]


async def test_a_batch_that_fails_wakes_nothing() -> None:
    wakes, database = Wakes(), FakeDatabase(refused={Recipient})
    participant = uuid4()
    with pytest.raises(RuntimeError):
        await apply_events(
            database,
            Subscription(build_handlers(wakes)),
            [enrolled(participant), Envelope.wrap(ParticipantPaused(), org_id=ORG, participant_id=participant)],
        )
    assert wakes.count == 0 and database.commits == 0


async def test_a_stop_by_the_participant_queues_the_confirmation_mail() -> None:
    wakes, database = Wakes(), FakeDatabase()
    participant = uuid4()
    database.rows[(Recipient, participant)] = Recipient(participant_id=participant, org_id=ORG, status="active")
    stop = Envelope.wrap(ParticipantStopped(by="participant", reason=None), org_id=ORG, participant_id=participant)
    await apply_events(database, Subscription(build_handlers(wakes)), [stop])
    (mail,) = [row for row in database.added if isinstance(row, TransactionalMail)]
    assert (mail.kind, mail.participant_id, mail.contact_id) == ("stop_confirmation", participant, participant)
    assert wakes.count == 1


async def test_a_contact_tombstone_erases_the_person_from_every_copy() -> None:
    database = FakeDatabase()
    person = uuid4()
    details = ContactDetailsSet(person_id=person, kind="participant", name="Ans", email="ans@example.org")
    subscription = Subscription(build_handlers(Wakes()), build_tombstone_handlers())
    await apply_events(database, subscription, [Envelope.wrap(details, org_id=ORG, participant_id=person)])
    written = len(database.executed)
    session = database.session()
    await subscription.tombstones["meer.contact"](session, str(person))  # type: ignore[arg-type]
    assert written > 0
    lock, *erasures = session.executed
    # First it takes turns with an enrolment of the person applied at the same moment.
    assert "pg_advisory_xact_lock" in str(lock)
    assert [table(s) for s in erasures] == [
        "contact_copy",
        "recipient",
        "coach_copy",
        "transactional_mail",
    ]


async def test_an_erasure_comes_after_the_copies_folded_before_it_in_the_batch() -> None:
    database = FakeDatabase()
    person = uuid4()
    details = ContactDetailsSet(person_id=person, kind="participant", name="Ans", email="ans@example.org")
    await apply_events(
        database,
        Subscription(build_handlers(Wakes())),
        [
            enrolled(person),
            Envelope.wrap(details, org_id=ORG, participant_id=person),
            Envelope.wrap(ParticipantErased(), org_id=ORG, participant_id=person),
        ],
    )
    written = tables(database)
    # The folded enrolment and contact details (read, upserts, the nudges), then the erasure's deletes.
    assert written[:5] == ["contact_copy", "contact_copy", "recipient", "delivery", "transactional_mail"]
    assert written[5:] == [
        "delivery",
        "recipient",
        "planned_call_copy",
        "alert_copy",
        "transactional_mail",
        "contact_copy",
    ]
    assert database.commits == 1
