"""A participant's lifecycle on the real stack: pause → no mail → resume → the next lesson,
stop through the unsubscribe event, completion, the coach's own actions, re-assigning a
coach, and erasure reaching every service's tables."""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import Envelope, ProgrammeCompleted, Topic, UnsubscribeRequested
from tests.e2e.conftest import (
    ENROLMENT,
    KAFKA,
    LICENSOR,
    PG_SERVER,
    add_coach,
    create_organisation,
    db_fetch,
    events_on,
    eventually,
    mails_to,
    raw_mail,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack
# The mailer holds a mail up to 30 s while the organisation's or coach's events (another
# topic) have not reached it yet; a mail may take that long plus a scheduler round.


def body_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"the mail has no {kind} part"
    return str(part.get_content())


PAGO_PAGO = "Pacific/Pago_Pago"  # UTC-11
KIRITIMATI = "Pacific/Kiritimati"  # UTC+14: its calendar date is always one or two days ahead of Pago Pago's
SERVICES = ("enrolment", "mailer", "tracking", "coaching")
PIXEL = re.compile(r'src="(http://[^"]+/o/[^"]+\.gif)"')


async def enrol(http: httpx.AsyncClient, org_id: str, **body: Any) -> dict[str, Any]:
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Ans", "email": unique_email(), **body},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def participant_url(participant: dict[str, Any], action: str = "") -> str:
    base = f"{ENROLMENT}/api/organisations/{participant['org_id']}/participants/{participant['id']}"
    return f"{base}/{action}" if action else base


async def subjects(http: httpx.AsyncClient, address: str) -> list[str]:
    return sorted(str(mail["subject"]) for mail in await mails_to(http, address))


def lesson_arrived(http: httpx.AsyncClient, address: str, day: int) -> Any:
    async def check() -> bool:
        return any(subject.startswith(f"Dag {day} van") for subject in await subjects(http, address))

    return check


async def publish(envelope: Envelope) -> None:
    """Put an event on Kafka the way another service's outbox relay would."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(envelope.topic, envelope.model_dump_json().encode(), key=envelope.key)
    finally:
        await producer.stop()


async def status_of(participant_id: str) -> str:
    (row,) = await db_fetch("enrolment", "SELECT status FROM participant WHERE id = $1", uuid.UUID(participant_id))
    return str(row["status"])


async def test_pause_stops_the_mails_and_resume_continues_with_the_next_lesson(http: httpx.AsyncClient) -> None:
    """Lessons follow the participant's own calendar days, so moving participants to a time
    zone a day ahead makes the next lesson due now: the control participant gets it, the
    paused one does not until resumed, and then gets exactly that next lesson."""
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    today_there = datetime.now(ZoneInfo(PAGO_PAGO)).date()
    schedule = {"start_date": str(today_there), "send_time": "00:00", "timezone": PAGO_PAGO}
    paused = await enrol(http, organisation["id"], first_name="Pauline", **schedule)
    control = await enrol(http, organisation["id"], first_name="Connie", **schedule)
    for someone in (paused, control):
        await eventually(lesson_arrived(http, someone["email"], 1), what=f"day 1 for {someone['first_name']}")

    response = await http.post(participant_url(paused, "pause"), json={"reason": "even op vakantie"}, headers=LICENSOR)
    assert response.status_code == 200 and response.json()["status"] == "paused"
    moved = await http.patch(participant_url(paused), json={"timezone": KIRITIMATI}, headers=LICENSOR)
    assert moved.status_code == 200

    async def mailer_knows_the_pause() -> bool:
        rows = await db_fetch(
            "mailer", "SELECT status, timezone FROM recipient WHERE participant_id = $1", uuid.UUID(paused["id"])
        )
        return bool(rows) and (rows[0]["status"], rows[0]["timezone"]) == ("paused", KIRITIMATI)

    await eventually(mailer_knows_the_pause, what="the mailer's copy: paused, in Kiritimati")
    # Moved only now, so the scheduler pass that sends the control's lesson 2 sees the paused one as it is.
    assert (
        await http.patch(participant_url(control), json={"timezone": KIRITIMATI}, headers=LICENSOR)
    ).status_code == 200
    await eventually(lesson_arrived(http, control["email"], 2), what="day 2 for the control participant")
    assert [s.split(":")[0] for s in await subjects(http, paused["email"])] == ["Dag 1 van 60"]
    days = await db_fetch("mailer", "SELECT day FROM delivery WHERE participant_id = $1", uuid.UUID(paused["id"]))
    assert [row["day"] for row in days] == [1], "no lesson is scheduled while paused"

    resumed = await http.post(participant_url(paused, "resume"), headers=LICENSOR)
    assert resumed.status_code == 200 and resumed.json()["status"] in ("active", "enrolled")
    await eventually(lesson_arrived(http, paused["email"], 2), what="day 2 after resuming")
    assert [s.split(":")[0] for s in await subjects(http, paused["email"])] == ["Dag 1 van 60", "Dag 2 van 60"]

    kinds = [event["type"] for event in await events_on("meer.participant", key=paused["id"])]
    assert kinds == [
        "participant.enrolled",
        "participant.paused",
        "participant.details_changed",
        "participant.resumed",
    ]
    (pause_event,) = await events_on("meer.participant", key=paused["id"], event_type="participant.paused")
    assert pause_event["payload"]["reason"] == "even op vakantie"


async def test_the_first_mail_makes_an_enrolled_participant_active(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participant = await enrol(http, organisation["id"], start_date=str(date.today()), send_time="00:00", timezone="UTC")
    await eventually(lesson_arrived(http, participant["email"], 1), what="day 1")
    await eventually(lambda: _is(participant["id"], "active"), what="status active after mail.sent")


async def _is(participant_id: str, status: str) -> bool:
    return await status_of(participant_id) == status


async def test_an_unsubscribe_event_stops_the_participant_once(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participant = await enrol(http, organisation["id"])
    unsubscribe = Envelope.wrap(
        UnsubscribeRequested(delivery_id=uuid.uuid4(), via="one_click", requested_at=datetime.now(UTC)),
        org_id=uuid.UUID(organisation["id"]),
        participant_id=uuid.UUID(participant["id"]),
    )
    assert unsubscribe.topic == Topic.ENGAGEMENT
    await publish(unsubscribe)
    await publish(unsubscribe)  # redelivered
    await eventually(lambda: _is(participant["id"], "stopped"), what="status stopped")
    (row,) = await db_fetch(
        "enrolment", "SELECT stopped_by FROM participant WHERE id = $1", uuid.UUID(participant["id"])
    )
    assert row["stopped_by"] == "participant"
    # A click on another mail's link is a new event that asks for what is already so. Events of
    # one participant keep their order, so once it is handled the redelivery was handled too.
    second = Envelope.wrap(
        UnsubscribeRequested(delivery_id=uuid.uuid4(), via="page", requested_at=datetime.now(UTC)),
        org_id=uuid.UUID(organisation["id"]),
        participant_id=uuid.UUID(participant["id"]),
    )
    await publish(second)
    await settled(second.event_id, participant["id"])
    (stopped,) = await events_on("meer.participant", key=participant["id"], event_type="participant.stopped")
    assert stopped["payload"] == {"by": "participant", "reason": None}
    resume = await http.post(participant_url(participant, "resume"), headers=LICENSOR)
    assert resume.status_code == 409


async def outbox_published() -> bool:
    """Everything enrolment committed has reached Kafka."""
    return not await db_fetch("enrolment", "SELECT 1 FROM outbox LIMIT 1")


async def settled(event_id: uuid.UUID, participant_id: str) -> None:
    """Wait until enrolment handled the event and published everything it caused."""

    async def done() -> bool:
        handled = await db_fetch("enrolment", "SELECT 1 FROM processed_events WHERE event_id = $1", event_id)
        waiting = await db_fetch("enrolment", "SELECT 1 FROM outbox WHERE key = $1", participant_id)
        return bool(handled) and not waiting

    await eventually(done, what=f"enrolment handled event {event_id} and published its effects")


async def test_programme_completed_marks_the_participant_completed_once(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participant = await enrol(http, organisation["id"])
    completed = Envelope.wrap(
        ProgrammeCompleted(days=60, completed_at=datetime.now(UTC)),
        org_id=uuid.UUID(organisation["id"]),
        participant_id=uuid.UUID(participant["id"]),
    )
    later = Envelope.wrap(
        ProgrammeCompleted(days=60, completed_at=datetime.now(UTC)),
        org_id=uuid.UUID(organisation["id"]),
        participant_id=uuid.UUID(participant["id"]),
    )
    for envelope in (completed, completed, later):  # a redelivery, then a repeat with a new id
        await publish(envelope)
    await settled(later.event_id, participant["id"])
    assert await status_of(participant["id"]) == "completed"
    events = await events_on("meer.participant", key=participant["id"], event_type="participant.completed")
    assert len(events) == 1
    licence = await http.get(f"{ENROLMENT}/api/organisations/{organisation['id']}/licence", headers=LICENSOR)
    assert licence.json()["active_participants"] == 0, "a completed participant frees a place"


async def test_a_coach_pauses_resumes_and_stops_only_their_own_participants(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await staff_login(http, org_id, role="coach", name="Coach Mijn")
    colleague = await add_coach(http, org_id, name="Coach Ander")
    mine = await enrol(http, org_id, coach_id=coach["id"])
    theirs = await enrol(http, org_id, coach_id=colleague["id"])
    headers = coach["headers"]

    listed = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/participants", headers=headers)
    assert [p["id"] for p in listed.json()["items"]] == [mine["id"]] and listed.json()["total"] == 1
    assert (await http.get(participant_url(theirs), headers=headers)).status_code == 403
    for action in ("pause", "resume", "stop"):
        refused = await http.post(participant_url(theirs, action), json={"reason": "x"}, headers=headers)
        assert refused.status_code == 403, action
    assert await status_of(theirs["id"]) == "enrolled"

    assert (await http.post(participant_url(mine, "pause"), headers=headers)).json()["status"] == "paused"
    assert (await http.post(participant_url(mine, "resume"), headers=headers)).json()["status"] == "enrolled"
    no_reason = await http.post(participant_url(mine, "stop"), json={}, headers=headers)
    assert no_reason.status_code == 422 and no_reason.json()["error"]["fields"][0]["field"] == "reason"
    stopped = await http.post(participant_url(mine, "stop"), json={"reason": "Verhuist naar familie"}, headers=headers)
    assert stopped.status_code == 200 and stopped.json()["stopped_by"] == "coach"
    (event,) = await eventually(
        lambda: events_on("meer.participant", key=mine["id"], event_type="participant.stopped"),
        what="participant.stopped by the coach",
    )
    assert event["payload"] == {"by": "coach", "reason": "Verhuist naar familie"}

    # Coaches do not erase, re-assign or enrol: that is the organisation's work.
    assert (await http.post(participant_url(theirs, "erase"), headers=headers)).status_code == 403
    assert (
        await http.put(participant_url(mine, "coach"), json={"coach_id": colleague["id"]}, headers=headers)
    ).status_code == 403
    enrol_attempt = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "X", "email": unique_email()},
        headers=headers,
    )
    assert enrol_attempt.status_code == 403


async def test_re_assigning_a_coach_is_one_event(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    first, second = await add_coach(http, org_id), await add_coach(http, org_id)
    participant = await enrol(http, org_id, coach_id=first["id"])
    admin = await staff_login(http, org_id)
    moved = await http.put(
        participant_url(participant, "coach"), json={"coach_id": second["id"]}, headers=admin["headers"]
    )
    assert moved.status_code == 200 and moved.json()["coach_id"] == second["id"]
    again = await http.put(
        participant_url(participant, "coach"), json={"coach_id": second["id"]}, headers=admin["headers"]
    )
    assert again.status_code == 200
    elsewhere = await add_coach(http, (await create_organisation(http))["id"])
    foreign = await http.put(
        participant_url(participant, "coach"), json={"coach_id": elsewhere["id"]}, headers=admin["headers"]
    )
    assert foreign.status_code == 422 and foreign.json()["error"]["fields"][0]["field"] == "coach_id"
    (event,) = await eventually(
        lambda: events_on("meer.participant", key=participant["id"], event_type="participant.coach_changed"),
        what="participant.coach_changed",
    )
    assert event["payload"] == {"coach_id": second["id"]}
    await eventually(outbox_published, what="enrolment's outbox published")
    assert len(await events_on("meer.participant", key=participant["id"], event_type="participant.coach_changed")) == 1


async def rows_holding(service: str, needles: list[str]) -> list[str]:
    """Every table row of a service's database whose text holds one of the needles."""
    patterns = [f"%{needle}%" for needle in needles] + [f"%{needle.encode().hex()}%" for needle in needles]
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_{service}")
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        found = []
        for table in tables:
            name = table["table_name"]
            # The table names come from the catalogue, not from input.
            query = f'SELECT count(*) FROM "{name}" AS r WHERE r::text ILIKE ANY($1)'  # noqa: S608
            count = await conn.fetchval(query, patterns)
            if count:
                found.append(f"{service}.{name}: {count}")
        return found
    finally:
        await conn.close()


async def test_erasure_removes_the_personal_data_from_every_services_tables(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    first_name = f"Erasma{uuid.uuid4().hex[:6]}"
    phone = f"0612{random.randint(0, 999_999):06d}"
    participant = await enrol(
        http,
        organisation["id"],
        first_name=first_name,
        phone=phone,
        start_date=str(date.today()),
        send_time="00:00",
        timezone="UTC",
    )
    needles = [participant["email"], first_name, participant["phone"]]
    await eventually(lesson_arrived(http, participant["email"], 1), what="day 1")
    (mail,) = await mails_to(http, participant["email"])
    html = body_of(await raw_mail(http, mail["id"]), "html")
    pixel = PIXEL.search(html)
    assert pixel is not None
    await http.get(pixel.group(1))

    async def copies() -> list[str]:
        found = [row for service in SERVICES for row in await rows_holding(service, needles)]
        services = {row.split(".")[0] for row in found}
        return found if {"enrolment", "mailer", "coaching"} <= services else []

    # The scan finds the copies before erasure: it is able to fail.
    await eventually(copies, what="the participant's data in enrolment, mailer and coaching")

    erased = await http.post(participant_url(participant, "erase"), headers=LICENSOR)
    assert erased.status_code == 200
    body = erased.json()
    assert body["status"] == "erased" and body["first_name"] is None and body["email"] is None and body["phone"] is None
    await eventually(
        lambda: events_on("meer.participant", key=participant["id"], event_type="participant.erased"),
        what="participant.erased on Kafka",
    )

    async def nothing_left() -> bool:
        return not [row for service in SERVICES for row in await rows_holding(service, needles)]

    await eventually(nothing_left, what="no row in any service holding the participant's data")
    (row,) = await db_fetch(
        "enrolment", "SELECT status, org_id FROM participant WHERE id = $1", uuid.UUID(participant["id"])
    )
    assert row["status"] == "erased", "an anonymous row stays for the counts"
    again = await http.post(participant_url(participant, "erase"), headers=LICENSOR)
    assert again.status_code == 409
