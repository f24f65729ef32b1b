"""Issue 14: contact details travel only on the compacted meer.contact topic.

Erasure reaches Kafka (a tombstone, compacted away from the broker's files), every other
topic holds ids and non-personal facts only, and the coaching rebuild replays the contact
topic: the same figures after an erasure, without the person's details.
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.local.stack import KAFKA_DIR
from shared.events import Topic, known_event_types
from shared.kafka import COMPACTED_TOPIC_CONFIG
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    KAFKA,
    LICENSOR,
    MAIL_CLIENT,
    add_coach,
    contact_of,
    create_organisation,
    db_fetch,
    eventually,
    mails_to,
    mint_staff_token,
    raw_mail,
    read_topic,
    staff_login,
    tracking_links,
    unique_email,
    unique_source,
)
from tests.e2e.test_coaching_journey import run_rebuild
from tests.e2e.test_enrolment_lifecycle import SERVICES, participant_url, rows_holding

pytestmark = pytest.mark.stack

KAFKA_DATA = KAFKA_DIR / "data"
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Dutch numbers as people type them (06 1234 5678, +31 6 12345678, 020-1234567), not inside ids.
PHONE = re.compile(rb"(?<![0-9A-Za-z-])(?:\+31|0031|0)[ -]?\d(?:[ -]?\d){7,9}(?![0-9A-Za-z-])")
MAIL_ADDRESS_FIELDS = {
    # The organisation's own public contact details (every mail's footer), not a person's.
    ("organisation.licensed", "branding", "contact_email"),
    ("organisation.licensed", "branding", "contact_phone"),
    ("organisation.licensed", "branding", "reply_to"),
    ("organisation.branding_changed", "branding", "contact_email"),
    ("organisation.branding_changed", "branding", "contact_phone"),
    ("organisation.branding_changed", "branding", "reply_to"),
    # A local offer's public phone number and website (the library's desk), not a person's.
    ("organisation.local_offers_changed", "offers", "phone"),
    ("organisation.local_offers_changed", "offers", "website"),
    # An RFC 5322 Message-ID looks like an address but names a mail, not a mailbox.
    ("mail.sent", "message_id"),
}
RETIRED = {
    (kind, version)
    for kind, version in known_event_types()
    if any(other == kind and newer > version for other, newer in known_event_types())
}
"""Older versions no code publishes any more (they carried contact details); deploy/MIGRATION-contact-topic.md."""
FIGURES_ERASURE_CHANGES = {"first_name", "phone", "status", "lifecycle", "erased_at", "updated_at"}


def unique_letters(n: int = 10) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n)).capitalize()


def files_holding(needles: list[bytes]) -> list[str]:
    """Every file under the broker's data folder whose bytes hold one of the needles."""
    found = []
    for path in sorted(KAFKA_DATA.rglob("*")):
        if path.is_file():
            try:
                content = path.read_bytes()
            except FileNotFoundError:  # the cleaner removed it while we looked
                continue
            if any(needle in content for needle in needles):
                found.append(str(path.relative_to(KAFKA_DATA)))
    return found


async def set_contact_topic_config(configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        # alter_configs sets the whole topic config: what is not named goes back to the default.
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, Topic.CONTACT, configs=configs)])
    finally:
        await admin.close()


async def dashboard_row(participant_id: uuid.UUID) -> dict[str, Any]:
    [row] = await db_fetch("coaching", "SELECT * FROM dashboard_row WHERE participant_id = $1", participant_id)
    return dict(row)


async def test_erasure_leaves_no_trace_in_any_database_nor_broker_file_and_the_rebuild_keeps_the_figures(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http)
    coach = await add_coach(http, organisation["id"])
    first_name, email = unique_letters(), unique_email("erasmus")
    phone = f"061{random.randint(1_000_000, 9_999_999)}"
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        json={
            "first_name": first_name,
            "email": email,
            "phone": phone,
            "coach_id": coach["id"],
            "start_date": str(date.today()),
            "send_time": "00:00",
            "timezone": "UTC",
        },
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    participant = response.json()
    participant_id = uuid.UUID(participant["id"])
    phone_stored = participant["phone"]
    needles = [email, first_name, phone_stored, phone]

    # Mail, open, report.
    [mail] = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    message = await raw_mail(http, mail["id"])
    assert first_name in str(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    links = tracking_links(message)
    assert (await http.get(links["o"], headers=MAIL_CLIENT)).status_code == 200
    reported = await http.post(links["r"], data={"score": "4", "note": "Het ging goed."})
    assert reported.status_code == 200
    # Log a call, write a plan (as the coach).
    coach_headers = {
        "Authorization": f"Bearer {mint_staff_token('coach', uuid.UUID(organisation['id']), uuid.UUID(coach['id']))}"
    }
    call = {
        "called_at": datetime.now(UTC).isoformat(),
        "reached": True,
        "duration_minutes": 7,
        "notes": "Fijn gesprek.",
    }
    plan = {"own_question": "Vaker de deur uit.", "causes": ["health"], "goals": "Elke week naar de markt"}

    async def coaching_knows() -> bool:
        row = await db_fetch(
            "coaching",
            "SELECT first_name, mails_sent, reports FROM dashboard_row WHERE participant_id = $1",
            participant_id,
        )
        return bool(row) and row[0]["first_name"] == first_name and row[0]["mails_sent"] == 1 and row[0]["reports"] == 1

    await eventually(coaching_knows, what="coaching to show the participant with mail and report")
    for path, body in (("calls", call), ("plan", plan)):
        created = await http.post(
            f"{COACHING}/api/participants/{participant_id}/{path}", json=body, headers=coach_headers
        )
        assert created.status_code == 201, created.text

    async def copies() -> list[str]:
        found = [row for service in SERVICES for row in await rows_holding(service, needles)]
        return found if {"enrolment", "mailer", "coaching"} <= {row.split(".")[0] for row in found} else []

    # Both scans find the details before erasure: they are able to fail.
    await eventually(copies, what="the participant's details in enrolment, mailer and coaching")
    assert files_holding([email.encode(), first_name.encode()]), "the broker's files hold the contact details"

    async def plan_and_call_counted() -> bool:
        row = await dashboard_row(participant_id)
        return row["calls_reached"] == 1 and row["plan_version"] == 1 and row["mails_opened"] == 1

    await eventually(plan_and_call_counted, what="the call, plan and open on the dashboard row")
    rebuilt = run_rebuild()
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    before = await dashboard_row(participant_id)
    assert before["first_name"] == first_name and before["phone"] == phone_stored

    # The person's own export, complete, before the erasure: its bundle must go with everything else.
    org_id = str(organisation["id"])
    requested = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/exports", headers=LICENSOR
    )
    assert requested.status_code == 202, requested.text
    status_url = f"{ENROLMENT}/api/organisations/{org_id}/exports/{requested.json()['id']}"

    async def export_complete() -> bool:
        response = await http.get(status_url, headers=LICENSOR)
        return response.status_code == 200 and response.json()["status"] == "complete"

    await eventually(export_complete, what="every part of the export")
    bundle = await http.get(f"{status_url}.json", headers=LICENSOR)
    assert bundle.status_code == 200 and email in bundle.text, "the export holds the person's address"

    erased = await http.post(participant_url(participant, "erase"), headers=LICENSOR)
    assert erased.status_code == 200, erased.text
    assert await eventually(lambda: _tombstoned(str(participant_id)), what="the tombstone on meer.contact")

    async def nothing_in_tables() -> bool:
        return not [row for service in SERVICES for row in await rows_holding(service, needles)]

    await eventually(nothing_in_tables, what="no row in any database holding the details")

    # Compaction as the test needs it: roll the segment at once and clean whatever is dirty.
    forced = {
        **COMPACTED_TOPIC_CONFIG,
        "segment.ms": "500",
        "min.cleanable.dirty.ratio": "0.01",
        "max.compaction.lag.ms": "500",
        "delete.retention.ms": "500",
        "file.delete.delay.ms": "100",
    }
    await set_contact_topic_config(forced)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
        await producer.start()
        try:

            async def compacted() -> bool:
                # Each record after segment.ms rolls the person's segment (same key, same partition).
                await producer.send_and_wait(Topic.CONTACT, None, key=str(participant_id).encode())
                return not files_holding([n.encode() for n in needles])

            await eventually(compacted, timeout=120, what="the log cleaner to remove the details from every file")
        finally:
            await producer.stop()
    finally:
        await set_contact_topic_config(COMPACTED_TOPIC_CONFIG)

    rebuilt = run_rebuild()
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    after = await dashboard_row(participant_id)
    assert (after["first_name"], after["phone"], after["status"]) == (None, None, "erased")
    figures = {k: v for k, v in before.items() if k not in FIGURES_ERASURE_CHANGES}
    assert {k: v for k, v in after.items() if k not in FIGURES_ERASURE_CHANGES} == figures
    assert figures["mails_sent"] == 1 and figures["reports"] == 1 and figures["calls_reached"] == 1
    assert not [row for service in SERVICES for row in await rows_holding(service, needles)]


async def _tombstoned(person_id: str) -> bool:
    return any(
        (record.key or b"").decode() == person_id and record.value is None for record in await read_topic(Topic.CONTACT)
    )


def personal_values(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Addresses and phone numbers anywhere in a JSON value, but for the allowed fields."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in personal_values(item, (*path, str(key)))]
    if isinstance(value, list):
        return [found for item in value for found in personal_values(item, path)]
    if path in MAIL_ADDRESS_FIELDS or not isinstance(value, str):
        return []
    text = value.encode()
    return [match.decode() for pattern in (EMAIL, PHONE) for match in pattern.findall(text)]


def scan(topic: str, records: list[Any]) -> tuple[set[str], list[str]]:
    """The event types seen on a topic and every address or phone number in a record."""
    types, found = set(), []
    for record in records:
        for name, header in record.headers or []:
            found += [f"{topic} header {name}: {m!r}" for p in (EMAIL, PHONE) for m in p.findall(header or b"")]
        found += [f"{topic} key: {m!r}" for p in (EMAIL, PHONE) for m in p.findall(record.key or b"")]
        if record.value is None:
            continue
        try:
            envelope = json.loads(record.value)
        except ValueError:
            found += [f"{topic} raw: {m!r}" for p in (EMAIL, PHONE) for m in p.findall(record.value)]
            continue
        if not isinstance(envelope, dict) or "payload" not in envelope:
            found += [f"{topic} raw: {m!r}" for p in (EMAIL, PHONE) for m in p.findall(record.value)]
            continue
        event_type = str(envelope.get("type"))
        if (event_type, envelope.get("version")) in RETIRED:
            continue  # written before the contact topic (or by a test on purpose): the migration's job
        types.add(event_type)
        outside = {k: v for k, v in envelope.items() if k != "payload"}
        hits = personal_values(outside) + personal_values(envelope["payload"], (event_type,))
        found += [f"{topic} {event_type}: {hit}" for hit in hits]
    return types, found


async def test_no_topic_but_the_contact_topic_carries_an_address_or_phone_number(http: httpx.AsyncClient) -> None:
    # Every flow that once put contact details in an event, so that each type is on the topics.
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)  # coach.added and staff.invited
    await staff_login(http, org_id)  # staff.invited of an org admin
    email, phone = unique_email("scan"), f"061{random.randint(1_000_000, 9_999_999)}"
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={
            "first_name": "Scan",
            "email": email,
            "phone": phone,
            "send_time": "00:00",
            "timezone": "UTC",
            "start_date": str(date.today()),
        },
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    participant = response.json()
    changed = await http.patch(
        participant_url(participant, ""),
        json={"phone": f"06 1{random.randint(100, 999)} {random.randint(1000, 9999)}"},
        headers=LICENSOR,
    )
    assert changed.status_code == 200, changed.text
    signup_email = unique_email("aanmelder")
    signed_up = await http.post(
        f"{ENROLMENT}/aanmelden/{org_id}",
        data={
            "first_name": "Anne",
            "email": signup_email,
            "phone": "06 12345678",
            "send_time": "09:00",
            "consent": "ja",
        },
        headers=unique_source(),
    )
    assert signed_up.status_code == 303, signed_up.text
    await eventually(lambda: mails_to(http, email), what="the day-1 mail (mail.sent)")
    await eventually(lambda: mails_to(http, signup_email), what="the confirmation mail")
    await eventually(lambda: contact_of(participant["id"]), what="the participant on meer.contact")

    topics = [name for topic in Topic.ALL for name in (topic, Topic.dead_letter(topic))]
    seen: set[str] = set()
    leaks: list[str] = []
    contact_hits: list[str] = []
    for topic in topics:
        types, found = scan(topic, await read_topic(topic))
        if topic in (Topic.CONTACT, Topic.dead_letter(Topic.CONTACT)):
            contact_hits += found
            continue
        seen |= types
        leaks += found
    # The scan recognises the details where they belong, so it is able to fail.
    assert any(email in hit for hit in contact_hits) and any(participant["phone"] in hit for hit in contact_hits)
    assert {
        "organisation.licensed",
        "coach.added",
        "staff.invited",
        "participant.enrolled",
        "participant.details_changed",
        "participant.confirmation_requested",
        "mail.sent",
    } <= seen
    assert leaks == []
    assert ("participant.enrolled", 1) in RETIRED and ("participant.enrolled", 2) not in RETIRED


def test_the_patterns_find_what_people_type_and_leave_ids_alone() -> None:
    """The regexes are the test's eyes: they must see addresses and numbers, and not ids or times."""
    for text in ("ans.devries@example.org", "06 1234 5678", "+31612345678", "020-1234567", "0612345678"):
        assert EMAIL.search(text.encode()) or PHONE.search(text.encode()), text
    for text in (str(uuid.UUID(int=0x0612345678)), "2026-11-30T09:00:00+00:00", "09:00:00", "Path"):
        assert not EMAIL.search(text.encode()) and not PHONE.search(text.encode()), text


async def test_publish_contacts_puts_everyone_s_current_details_on_the_contact_topic_again(
    http: httpx.AsyncClient,
) -> None:
    """The migration step: details that reached consumers through the old events are on meer.contact."""
    from tests.e2e.test_enrolment_ways_in import cli

    organisation = await create_organisation(http)
    coach = await add_coach(http, organisation["id"])
    first_name, email = unique_letters(), unique_email("opnieuw")
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        json={"first_name": first_name, "email": email},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    participant_id = response.json()["id"]

    async def details_set(person_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(record.value)["payload"]
            for record in await read_topic(Topic.CONTACT)
            if (record.key or b"").decode() == person_id and record.value is not None
        ]

    await eventually(lambda: details_set(participant_id), what="the enrolment's contact.details_set")
    done = cli("publish-contacts")
    assert done.returncode == 0, done.stderr
    assert "contact details staged" in done.stdout

    async def twice() -> bool:
        found = await details_set(participant_id)
        return len(found) >= 2 and found[-1] == found[0] and bool(await details_set(coach["id"]))

    await eventually(twice, what="the participant's details published again, unchanged, and the coach's")
    assert (await details_set(participant_id))[-1]["name"] == first_name
