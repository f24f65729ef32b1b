"""Tracking's Kafka changes in the consumer unit of work (an in-memory database): the sent
mails of a batch are written in one statement at its end, redeliveries are skipped."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.dialects import postgresql

from services.tracking.handlers import build_handlers
from shared.events import Branding, Envelope, MailSent, OrganisationLicensed, ParticipantErased
from shared.kafka import Subscription, apply_events
from tests.support.fake_database import FakeDatabase

AT = datetime(2026, 3, 2, 8, tzinfo=UTC)
SUBSCRIPTION = Subscription(build_handlers())
ORG = uuid4()


def sent(day: int) -> Envelope:
    mail = MailSent(
        delivery_id=uuid4(), day=day, lesson_title="Les", pack="p", pack_version="1", message_id="m", sent_at=AT
    )
    return Envelope.wrap(mail, org_id=ORG, participant_id=uuid4())


def compiled(statement: Any) -> Any:
    return statement.compile(dialect=postgresql.dialect())


async def test_the_sent_mails_of_a_batch_are_one_statement() -> None:
    database = FakeDatabase()
    mails = [sent(day) for day in range(1, 6)]
    await apply_events(database, SUBSCRIPTION, mails)
    (statement,) = database.executed
    (parameters,) = database.parameters
    assert str(statement).strip().startswith("INSERT INTO sent_mail") and "ON CONFLICT DO NOTHING" in str(statement)
    assert parameters is not None
    assert parameters["delivery_ids"] == [UUID(m.payload["delivery_id"]) for m in mails]
    assert parameters["participant_ids"] == [m.participant_id for m in mails]
    assert parameters["days"] == [1, 2, 3, 4, 5]


async def test_a_redelivered_batch_writes_nothing() -> None:
    database = FakeDatabase()
    mails = [sent(1), sent(2)]
    await apply_events(database, SUBSCRIPTION, mails)
    await apply_events(database, SUBSCRIPTION, mails)
    assert len(database.executed) == 1 and database.commits == 2


async def test_branding_and_erasure_keep_their_order_in_a_batch() -> None:
    database = FakeDatabase()
    participant = uuid4()
    licensed = OrganisationLicensed(
        name="Welzijn Aan Zee",
        branding=Branding(display_name="Welzijn Aan Zee"),
        licence_valid_from=date(2026, 1, 1),
        licence_valid_until=date(2027, 1, 1),
        max_active_participants=10,
        variants=("standard",),
    )
    events = [
        Envelope.wrap(licensed, org_id=ORG),
        Envelope.wrap(ParticipantErased(), org_id=ORG, participant_id=participant),
    ]
    await apply_events(database, SUBSCRIPTION, events)
    tables = [compiled(statement).statement.table.name for statement in database.executed]
    assert tables[0] == "organisation_branding" and "assignment_report" in tables[1:]
