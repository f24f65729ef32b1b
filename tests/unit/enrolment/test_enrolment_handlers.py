"""Enrolment's Kafka changes in the consumer unit of work (an in-memory database): what the
other services report moves the participant's lifecycle once, and events about participants
enrolment does not know (or another organisation's) change nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import uuid4

from services.enrolment.handlers import build_handlers
from services.enrolment.tables import Participant
from shared.events import Envelope, MailSent, ProgrammeCompleted, UnsubscribeRequested
from shared.kafka import Subscription, apply_events
from shared.outbox import OutboxMessage
from tests.support.fake_database import FakeDatabase

AT = datetime(2026, 3, 2, 8, tzinfo=UTC)
SUBSCRIPTION = Subscription(build_handlers())


def participant(status: str = "active") -> Participant:
    return Participant(
        org_id=uuid4(),
        coach_id=uuid4(),
        first_name="Ans",
        email="ans@example.org",
        start_date=date(2026, 3, 2),
        send_time=time(8),
        timezone="Europe/Amsterdam",
        variant="standard",
        status=status,
    )


def database_with(*participants: Participant) -> FakeDatabase:
    return FakeDatabase(rows={(Participant, p.id): p for p in participants})


def published(database: FakeDatabase) -> list[str]:
    return [Envelope.model_validate_json(row.value).type for row in database.added if isinstance(row, OutboxMessage)]


def unsubscribe(p: Participant) -> Envelope:
    return Envelope.wrap(
        UnsubscribeRequested(delivery_id=uuid4(), via="page", requested_at=AT), org_id=p.org_id, participant_id=p.id
    )


async def test_an_unsubscribe_request_stops_a_running_programme_once() -> None:
    ans = participant("active")
    database = database_with(ans)
    request = unsubscribe(ans)
    await apply_events(database, SUBSCRIPTION, [request])
    assert (ans.status, ans.stopped_by) == ("stopped", "participant")
    assert published(database) == ["participant.stopped"]
    await apply_events(database, SUBSCRIPTION, [request])  # redelivered
    assert published(database) == ["participant.stopped"]


async def test_an_unsubscribe_request_after_the_end_changes_nothing() -> None:
    done = participant("completed")
    database = database_with(done)
    await apply_events(database, SUBSCRIPTION, [unsubscribe(done)])
    assert done.status == "completed" and published(database) == []


async def test_an_event_about_another_organisations_participant_changes_nothing_but_is_handled() -> None:
    ans = participant("active")
    database = database_with(ans)
    foreign = Envelope.wrap(
        UnsubscribeRequested(delivery_id=uuid4(), via="page", requested_at=AT), org_id=uuid4(), participant_id=ans.id
    )
    unknown = unsubscribe(participant("active"))  # not in this database
    await apply_events(database, SUBSCRIPTION, [foreign, unknown])
    assert ans.status == "active" and published(database) == []
    assert database.handled == {foreign.event_id, unknown.event_id}


async def test_the_first_mail_starts_the_programme_and_completion_ends_it() -> None:
    joop = participant("enrolled")
    database = database_with(joop)
    sent = MailSent(
        delivery_id=uuid4(), day=1, lesson_title="Les 1", pack="p", pack_version="1", message_id="m", sent_at=AT
    )
    completed = ProgrammeCompleted(days=60, completed_at=AT)
    events = [Envelope.wrap(payload, org_id=joop.org_id, participant_id=joop.id) for payload in (sent, completed)]
    await apply_events(database, SUBSCRIPTION, events)  # one batch, in order
    assert (joop.status, joop.started_at, joop.ended_at) == ("completed", AT, AT)
    assert published(database) == ["participant.completed"]
    assert database.commits == 1
