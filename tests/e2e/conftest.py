"""Helpers for tests on the real stack: API clients, the mail catcher, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.stack import Urls
from shared.events import Envelope, MailOpened, Topic

ENROLMENT = Urls.service("enrolment")
MAILER = Urls.service("mailer")
TRACKING = Urls.service("tracking")
COACHING = Urls.service("coaching")
MAILCATCHER = Urls.mailcatcher
KAFKA = Urls.kafka
PG_SERVER = Urls.postgres_server()
LICENSOR = {"Authorization": "Bearer dev-only-licensor-secret"}

T = TypeVar("T")


# How long a flow through Kafka and the services may take before a test calls it lost. On a
# loaded 2-core CI machine a consumer group that is still settling can hold an event for tens
# of seconds; a passing wait returns as soon as its condition holds, so a generous bound costs
# nothing.
EVENT_TIMEOUT = 90.0


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = EVENT_TIMEOUT, what: str = "condition"
) -> T:
    """Poll check() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def http(stack: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def db_fetch(service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_{service}")
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def db_count(service: str, query: str, *args: Any) -> int:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_{service}")
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def read_topic(topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on a topic right now, read without a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def coaches_today() -> str:
    """Today for the coaches (coaching's MEER_DISPLAY_TIMEZONE, Europe/Amsterdam in the stack): the
    date a coach enters and coaching checks against. From 23:00 UTC it is a day ahead of UTC's."""
    return datetime.now(ZoneInfo("Europe/Amsterdam")).date().isoformat()


def unique_email(label: str = "deelnemer") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.org"


def unique_source() -> dict[str, str]:
    """Headers that make a request come from a client of its own (the stack trusts the loopback
    proxy), so that tests do not share the public form's per-source sign-up limit."""
    return {"X-Forwarded-For": f"198.18.{uuid.uuid4().int % 256}.{uuid.uuid4().int % 254 + 1}"}


async def create_organisation(http: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    today = date.today()
    body = {
        "name": f"Testorganisatie {uuid.uuid4().hex[:6]}",
        "display_name": "Welzijn Testdorp",
        "contact_phone": "020 123 4567",
        "contact_email": "info@testdorp.example",
        "website": "https://testdorp.example",
        "address": "Kerkplein 3, 1234 AB Testdorp",
        "licence_valid_from": str(today - timedelta(days=1)),
        "licence_valid_until": str(today + timedelta(days=365)),
        "max_active_participants": 100,
        **overrides,
    }
    response = await http.post(f"{ENROLMENT}/api/organisations", json=body, headers=LICENSOR)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_coach(http: httpx.AsyncClient, org_id: str, name: str = "Coach Karin") -> dict[str, Any]:
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/coaches",
        json={"name": name, "email": unique_email("coach")},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def enrol_starting_now(http: httpx.AsyncClient, org_id: str, *, first_name: str) -> tuple[uuid.UUID, str]:
    """Enrol someone whose day-1 mail is due at once (start today at 00:00 UTC): their id and address."""
    email = unique_email()
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={
            "first_name": first_name,
            "email": email,
            "start_date": str(date.today()),
            "send_time": "00:00",
            "timezone": "UTC",
        },
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"]), email


async def enrol_and_receive_day_one(
    http: httpx.AsyncClient, *, first_name: str = "Ria"
) -> tuple[uuid.UUID, EmailMessage]:
    """A new organisation, coach and participant, and that participant's day-1 mail as received."""
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participant_id, email = await enrol_starting_now(http, organisation["id"], first_name=first_name)
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    return participant_id, await raw_mail(http, mails[0]["id"])


async def mails_to(http: httpx.AsyncClient, address: str) -> list[dict[str, Any]]:
    return list((await http.get(f"{MAILCATCHER}/api/messages", params={"to": address})).json())


async def raw_mail(http: httpx.AsyncClient, mail_id: int) -> EmailMessage:
    raw = (await http.get(f"{MAILCATCHER}/api/messages/{mail_id}/raw")).content
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def mailed_links(http: httpx.AsyncClient, address: str, marker: str) -> list[str]:
    """The links containing `marker` in the plain text of the mails to an address, oldest first.
    One-time links reach tests as they reach people, by mail: events carry them sealed."""
    links: list[str] = []
    for summary in reversed(await mails_to(http, address)):
        part = (await raw_mail(http, summary["id"])).get_body(preferencelist=("plain",))
        links += re.findall(rf"https?://\S*{re.escape(marker)}\S*", str(part.get_content()) if part else "")
    return links


async def mailed_link(http: httpx.AsyncClient, address: str, marker: str, *, count: int = 1) -> str:
    """The newest link containing `marker` once at least `count` such mails reached the address."""

    async def found() -> str | None:
        links = await mailed_links(http, address, marker)
        return links[-1] if len(links) >= count else None

    return await eventually(found, what=f"a mail with a {marker} link")


# --- enrolment: events and staff logins (appended by enrolment-dev) ---------------------------------

STAFF_PASSWORD = "een lange zin als wachtwoord"


async def events_on(topic: str, *, key: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
    """The envelopes on a topic as dicts, optionally only those of one key and one type."""
    import json

    found = []
    for record in await read_topic(topic):
        if key is not None and (record.key or b"").decode() != key:
            continue
        envelope = json.loads(record.value or b"{}")
        if event_type is None or envelope.get("type") == event_type:
            found.append(envelope)
    return found


async def people_with_address(emails: set[str]) -> set[str]:
    """The ids (participant or staff) whose current details on meer.contact have one of these addresses."""
    return {
        str(envelope["payload"]["person_id"])
        for envelope in await events_on(Topic.CONTACT, event_type="contact.details_set")
        if envelope["payload"]["email"] in emails
    }


async def contact_of(person_id: str) -> dict[str, Any] | None:
    """The newest contact.details_set payload of one person on meer.contact (None after a tombstone)."""
    latest: dict[str, Any] | None = None
    for record in await read_topic(Topic.CONTACT):
        if (record.key or b"").decode() == person_id:
            latest = None if record.value is None else Envelope.model_validate_json(record.value).payload
    return latest


def client_address() -> dict[str, str]:
    """A fresh client address (enrolment trusts X-Forwarded-For from 127.0.0.1, as from a
    proxy): one test's failed logins never count against the next test's logins."""
    a, b, c = (secrets.randbelow(254) + 1 for _ in range(3))
    return {"X-Forwarded-For": f"10.{a}.{b}.{c}"}


async def staff_login(
    http: httpx.AsyncClient,
    org_id: str,
    *,
    role: str = "org_admin",
    name: str = "Medewerker Test",
    partner_organisation: str | None = None,
    invited_by: dict[str, str] = LICENSOR,
) -> dict[str, Any]:
    """Invite a staff member (as the licensor, or `invited_by` an admin), set the password with the
    invitation link, log in. Returns the staff member (id, email, role, …) with "token" and
    ready-made "headers"."""
    email = unique_email(role.replace("_", "-"))
    invitation: dict[str, Any] = {"name": name, "email": email, "role": role}
    if partner_organisation is not None:
        invitation["partner_organisation"] = partner_organisation
    response = await http.post(f"{ENROLMENT}/api/organisations/{org_id}/staff", json=invitation, headers=invited_by)
    assert response.status_code == 201, response.text
    staff = dict(response.json())

    url = await mailed_link(http, email, "/set-password/")
    response = await http.post(
        f"{ENROLMENT}/api/auth/set-password", json={"token": url.rsplit("/", 1)[1], "password": STAFF_PASSWORD}
    )
    assert response.status_code == 204, response.text
    response = await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": email, "password": STAFF_PASSWORD}, headers=client_address()
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return {
        **staff,
        "token": token,
        "headers": {"Authorization": f"Bearer {token}"},
        "device_token": response.json()["device_token"],
    }


# --- tracking: signed links in the mails (appended by tracking-dev) ---------------------------------

# A person's mail client, so that a test's open or click is judged as a person's.
MAIL_CLIENT = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.0"}
DEV_TRACKING_KEY = "dev-only-tracking-key"


async def opens_on_kafka(participants: set[uuid.UUID], at_least: int) -> list[Envelope] | None:
    """The mail.opened events of these participants on Kafka, once there are `at_least`."""
    found = [
        envelope
        for record in await read_topic(Topic.ENGAGEMENT)
        if (envelope := Envelope.model_validate_json(record.value)).type == MailOpened.TYPE
        and envelope.participant_id in participants
    ]
    return found if len(found) >= at_least else None


def assert_each_open_once(opens: list[Envelope], *, opened_twice: uuid.UUID) -> None:
    """One event per hit, none twice; only the first hit of each mail is its first open."""
    assert len({e.event_id for e in opens}) == len(opens), "every open once, none twice"
    by_participant: dict[uuid.UUID | None, list[bool]] = {}
    for envelope in opens:
        by_participant.setdefault(envelope.participant_id, []).append(envelope.payload["first_open"])
    assert sorted(by_participant[opened_twice]) == [False, True]
    assert all(flags == [True] for participant, flags in by_participant.items() if participant != opened_twice)


def tracking_token(
    kind: str,
    *,
    delivery_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    org_id: uuid.UUID | None = None,
    day: int = 1,
    sent_at: float | None = None,
    url: str | None = None,
    key: str = DEV_TRACKING_KEY,
) -> str:
    """A token signed as the mailer signs it (the local stack's development key by default)."""
    from shared.tracking_tokens import TokenSigner, TrackingToken

    claims = {
        "k": kind,
        "d": delivery_id or uuid.uuid4(),
        "p": participant_id or uuid.uuid4(),
        "o": org_id or uuid.uuid4(),
        "n": day,
        "t": int(time.time() - 3600 if sent_at is None else sent_at),
        "u": url,
    }
    return TokenSigner([key]).sign(TrackingToken.model_validate(claims))


async def sent_pixel_token(
    *,
    delivery_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    org_id: uuid.UUID | None = None,
    day: int = 1,
    sent_at: float | None = None,
    key: str = DEV_TRACKING_KEY,
) -> str:
    """An open token of a mail that tracking knows was sent (the sent_mail row its mail.sent
    handler writes): a hit on a mail tracking never saw sent is held, not published."""
    from datetime import UTC, datetime

    delivery_id, participant_id, org_id = (
        delivery_id or uuid.uuid4(),
        participant_id or uuid.uuid4(),
        org_id or uuid.uuid4(),
    )
    sent_at = time.time() - 3600 if sent_at is None else sent_at
    await db_fetch(
        "tracking",
        "INSERT INTO sent_mail (delivery_id, participant_id, org_id, day, sent_at) VALUES ($1, $2, $3, $4, $5)",
        delivery_id,
        participant_id,
        org_id,
        day,
        datetime.fromtimestamp(int(sent_at), UTC),
    )
    return tracking_token(
        "open", delivery_id=delivery_id, participant_id=participant_id, org_id=org_id, day=day, sent_at=sent_at, key=key
    )


def tracking_links(message: EmailMessage) -> dict[str, str]:
    """The signed links of a programme mail by kind letter: o (pixel), c, r and u."""
    import re

    html = message.get_body(preferencelist=("html",))
    assert html is not None
    links: dict[str, str] = {}
    for url, kind in re.findall(r'"(https?://[^"\s<>]+/([ocru])/[A-Za-z0-9_.\-]+)"', html.get_content()):
        links.setdefault(kind, url)
    return links


# --- coaching: events straight onto the topics, staff tokens, consumer lag (appended by coaching-dev) ----------


async def publish(envelopes: Any) -> None:
    """Put envelopes on their topics as the services' outboxes do (keyed, acks=all, in order)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(envelope.topic, envelope.model_dump_json().encode(), key=envelope.key)
    finally:
        await producer.stop()


def mint_staff_token(role: str, org_id: uuid.UUID, coach_id: uuid.UUID | None = None, ttl_s: float = 3600) -> str:
    """A staff token signed with this stack's key, as enrolment signs them after a login."""
    from deploy.local.stack import KEYS_DIR
    from shared.staff_tokens import StaffClaims, issue_staff_token

    claims = StaffClaims(staff_id=uuid.uuid4(), role=role, org_id=org_id, coach_id=coach_id)  # type: ignore[arg-type]
    return issue_staff_token(claims, (KEYS_DIR / "staff-token.pem").read_bytes(), ttl=timedelta(seconds=ttl_s))


async def consumer_lag(group: str, topics: tuple[str, ...]) -> int:
    """Events on `topics` that consumer group `group` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        described = await admin.describe_topics(list(topics))
        partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        done = {tp: max(committed[tp].offset, 0) for tp in partitions if tp in committed}
        return sum(max(0, ends[tp] - done.get(tp, 0)) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()
