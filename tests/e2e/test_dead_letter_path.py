"""The consumers' dead-letter path on the real broker, seen from outside the services.

A poison event (a payload that breaks its contract, or a version nobody knows) goes to
`<topic>.dlt` unchanged, with headers that say why, which consumer gave up and where the record
came from; the events behind it on the same partition are still applied. A failure that is the
dependency's (PostgreSQL stopped) is never dead-lettered: the event waits and is applied once
PostgreSQL is back. Coaching is the consumer here; the path is shared/kafka.py's, the same in
every service. Only records, headers, the service's API and its metrics are looked at, so the
tests hold however the consumer takes its records (one by one or in batches).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import RecordMetadata

from deploy.local import stack as local_stack
from shared.events import (
    Branding,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    MailOpened,
    MailSent,
    OrganisationLicensed,
    ParticipantEnrolled,
    Topic,
)
from tests.e2e.conftest import COACHING, KAFKA, eventually, mint_staff_token, publish, read_topic

pytestmark = pytest.mark.stack

# A value that must never reach a dead letter's reason (reasons name places and rules, not values).
SECRET = "Annegien van der Berg-Oosterhuis"


@dataclass(frozen=True)
class Participant:
    """A participant on coaching's dashboard with lessons 1 and 2 sent, and their coach's token."""

    org_id: UUID
    participant_id: UUID
    deliveries: dict[int, UUID]
    headers: dict[str, str]


async def participant_with_two_lessons_sent(http: httpx.AsyncClient) -> Participant:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    now = datetime.now(UTC)
    today = now.date()
    licensed = OrganisationLicensed(
        name="Dead letter test",
        branding=Branding(display_name="Dead letter test"),
        licence_valid_from=today - timedelta(days=1),
        licence_valid_until=today + timedelta(days=300),
        max_active_participants=10,
        variants=("standard",),
    )
    enrolled = ParticipantEnrolled(
        coach_id=coach,
        start_date=today + timedelta(days=3),  # the real mailer sends nothing while the test runs
        send_time=time(23, 59),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    deliveries = {1: uuid4(), 2: uuid4()}
    setup = [
        Envelope.wrap(licensed, org_id=org),
        Envelope.wrap(CoachAdded(coach_id=coach), org_id=org),
        Envelope.wrap(ContactDetailsSet(person_id=coach, kind="staff", name="Coach Dirk"), org_id=org),
        Envelope.wrap(
            ContactDetailsSet(person_id=participant, kind="participant", name="Lot", phone="06 5555 0001"),
            org_id=org,
            participant_id=participant,
        ),
        Envelope.wrap(enrolled, org_id=org, participant_id=participant, occurred_at=now - timedelta(days=2)),
    ] + [
        Envelope.wrap(
            MailSent(
                delivery_id=delivery,
                day=day,
                lesson_title=f"Les {day}",
                pack="meer-contact",
                pack_version="v1",
                message_id=f"<{delivery}@x>",
                sent_at=now - timedelta(days=2 - day, hours=1),
            ),
            org_id=org,
            participant_id=participant,
            occurred_at=now - timedelta(days=2 - day, hours=1),
        )
        for day, delivery in deliveries.items()
    ]
    await publish(setup)
    found = Participant(
        org, participant, deliveries, {"Authorization": f"Bearer {mint_staff_token('coach', org, coach)}"}
    )

    async def both_lessons_on_the_dashboard() -> bool:
        return await lessons_opened(http, found) == {1: False, 2: False}

    await eventually(both_lessons_on_the_dashboard, what="the participant and lessons 1 and 2 on coaching's dashboard")
    return found


async def lessons_opened(http: httpx.AsyncClient, participant: Participant) -> dict[int, bool] | None:
    """Per lesson sent, whether coaching counts it opened (None while coaching does not know the participant)."""
    response = await http.get(f"{COACHING}/api/participants/{participant.participant_id}", headers=participant.headers)
    if response.status_code != 200:
        return None
    return {lesson["day"]: lesson["opened"] for lesson in response.json()["lessons"] if lesson["sent_at"]}


def opened(participant: Participant, day: int) -> Envelope:
    at = datetime.now(UTC)
    payload = MailOpened(
        delivery_id=participant.deliveries[day], day=day, opened_at=at, first_open=True, likely_automated=False
    )
    return Envelope.wrap(payload, org_id=participant.org_id, participant_id=participant.participant_id)


async def produce(records: list[tuple[bytes, bytes]]) -> list[RecordMetadata]:
    """Put raw values on meer.engagement with these keys, in this order, as a producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return [await producer.send_and_wait(Topic.ENGAGEMENT, value, key=key) for value, key in records]
    finally:
        await producer.stop()


async def dead_letters_of(value: bytes) -> list[ConsumerRecord[bytes, bytes]]:
    return [record for record in await read_topic(Topic.dead_letter(Topic.ENGAGEMENT)) if record.value == value]


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def test_a_poison_event_is_dead_lettered_with_its_reason_and_the_next_events_are_applied(
    http: httpx.AsyncClient,
) -> None:
    participant = await participant_with_two_lessons_sent(http)
    # Breaks the contract of mail.opened v1 (day below 1, signals not a list) while quoting a name.
    broken = json.loads(opened(participant, 1).model_dump_json())
    broken["payload"].update(day=0, signals=SECRET)
    unknown = json.loads(opened(participant, 1).model_dump_json())
    unknown["version"] = 99  # a version this code does not know: no retry can help
    key = str(participant.participant_id).encode()
    after = opened(participant, 2)
    poison = [json.dumps(broken).encode(), json.dumps(unknown).encode()]
    sent = await produce([(poison[0], key), (poison[1], key), (after.model_dump_json().encode(), key)])
    assert len({record.partition for record in sent}) == 1, "one key, one partition: the poison is in the way"

    async def dead_lettered_by_coaching() -> list[list[ConsumerRecord[bytes, bytes]]] | None:
        found = []
        for value in poison:
            letters = [d for d in await dead_letters_of(value) if headers_of(d).get("dlt-consumer") == "coaching"]
            if not letters:
                return None
            found.append(letters)  # at least once: a redelivery may dead-letter a record again
        return found

    letters = await eventually(dead_lettered_by_coaching, what="coaching to dead-letter both poison records")
    for copies, original, value in zip(letters, sent[:2], poison, strict=True):
        assert len({tuple(letter.headers) for letter in copies}) == 1, "a repeat is alike"
        letter = copies[0]
        headers = headers_of(letter)
        assert letter.key == key and letter.value == value, "moved unchanged, under its own key"
        assert headers["dlt-topic"] == Topic.ENGAGEMENT
        assert (headers["dlt-partition"], headers["dlt-offset"]) == (str(original.partition), str(original.offset))
        assert json.loads(letter.value)["type"] == MailOpened.TYPE
        assert SECRET not in headers["dlt-reason"]
    broken_reason, unknown_reason = (headers_of(copies[0])["dlt-reason"] for copies in letters)
    assert broken_reason.startswith("ValidationError: 2 errors")
    assert re.search(r"\bday\b", broken_reason) and re.search(r"\bsignals\b", broken_reason), broken_reason
    assert unknown_reason == f"UnknownEventError: unknown event {MailOpened.TYPE} v99"

    async def lesson_2_opened() -> bool:
        return await lessons_opened(http, participant) == {1: False, 2: True}

    await eventually(lesson_2_opened, what="the open behind the poison applied, the poison not")


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{label}="{value}"' in match.group(1) for label, value in labels.items()):
            total += float(match.group(2))
    return total


async def redeliveries(http: httpx.AsyncClient) -> float:
    """How often coaching put an event back because a dependency was away (only this test's event
    reaches it while PostgreSQL is stopped)."""
    metrics = (await http.get(f"{COACHING}/metrics")).text
    return metric_sum(metrics, "meer_events_handled_total", service="coaching", outcome="retry_later")


async def test_an_event_that_fails_while_postgres_is_away_is_not_dead_lettered_and_is_applied_after(
    http: httpx.AsyncClient,
) -> None:
    participant = await participant_with_two_lessons_sent(http)
    event = opened(participant, 1)
    value = event.model_dump_json().encode()
    before = await redeliveries(http)
    await asyncio.to_thread(local_stack.stop_postgres)
    try:

        async def coaching_without_postgres() -> bool:
            response = await http.get(f"{COACHING}/readyz")
            return response.status_code == 503 and response.json()["checks"]["postgres"] is False

        await eventually(coaching_without_postgres, what="coaching to report PostgreSQL away")
        [sent] = await produce([(value, str(participant.participant_id).encode())])

        async def tried_and_put_back_twice() -> bool:
            return await redeliveries(http) >= before + 2

        # Twice put back: tried more often than the bounded attempts a poison event gets.
        await eventually(tried_and_put_back_twice, what="coaching to put the event back while PostgreSQL is away")
        assert await dead_letters_of(value) == [], "a dependency's failure is not the event's"
    finally:
        await asyncio.to_thread(local_stack.start_postgres)

    async def lesson_1_opened() -> bool:
        return await lessons_opened(http, participant) == {1: True, 2: False}

    await eventually(lesson_1_opened, what="the event applied once PostgreSQL is back")
    assert await dead_letters_of(value) == []
    letters_from_there = [
        d
        for d in await read_topic(Topic.dead_letter(Topic.ENGAGEMENT))
        if (headers_of(d).get("dlt-partition"), headers_of(d).get("dlt-offset"))
        == (str(sent.partition), str(sent.offset))
    ]
    assert letters_from_there == []
