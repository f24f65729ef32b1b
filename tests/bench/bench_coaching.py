"""Coaching benchmarks on the real stack, each printed beside a bare baseline from the same run.

1. Pixel → projection: the time from fetching a mail's tracking pixel (as a mail client
   does) until coaching has committed the open to its projection and pushed it to an open
   dashboard (the Server-Sent Events stream; it is sent right after the commit). p50 and
   p99 over 1,000 opens. Baselines: the pixel request alone, and a bare Kafka produce →
   consume round trip.
2. Rebuild: events per second of `cli rebuild` (read every topic from the start, apply
   the handlers in memory, write the projection in one transaction). Baselines: reading
   the same topics bare, and reading + parsing the envelopes.

    python -m pytest tests/bench/bench_coaching.py -s -m bench -o norecursedirs=.*
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.stack import Urls, database_url
from services.coaching.rebuild import TOPICS, Rebuild
from shared.db import Database
from shared.events import (
    AssignmentReported,
    Branding,
    CallLogged,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    MailOpened,
    MailSent,
    OrganisationLicensed,
    ParticipantEnrolled,
)
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    KAFKA,
    LICENSOR,
    MAIL_CLIENT,
    add_coach,
    consumer_lag,
    create_organisation,
    eventually,
    mails_to,
    mint_staff_token,
    raw_mail,
    tracking_links,
    unique_email,
)

pytestmark = [pytest.mark.bench, pytest.mark.stack, pytest.mark.usefixtures("coaching_caught_up")]

OPENS = 1000
MAILS = 10
SYNTHETIC_PARTICIPANTS = 160


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def line(name: str, samples: Sequence[float]) -> str:
    return (
        f"  {name:<38} n={len(samples):>5}  p50 {percentile(samples, 0.50) * 1000:7.1f} ms"
        f"  p99 {percentile(samples, 0.99) * 1000:7.1f} ms  max {max(samples) * 1000:7.1f} ms"
    )


class Stream:
    """The admin's live dashboard stream: participant ids as they are pushed."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next_event(self) -> tuple[str, str]:
        event = "message"
        async for text in self.lines:
            if text.startswith("event:"):
                event = text.split(":", 1)[1].strip()
            elif text.startswith("data:"):
                return event, text.split(":", 1)[1].strip()
        raise AssertionError("the stream ended")


async def kafka_round_trips(count: int) -> list[float]:
    """A bare baseline: produce one record and wait until a subscribed consumer gets it."""
    topic = "meer.bench.roundtrip"
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        samples = []
        for index in range(count):
            started = time.perf_counter()
            await producer.send_and_wait(topic, str(index).encode(), partition=0)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.value == str(index).encode() for records in batch.values() for r in records):
                    break
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await consumer.stop()
        await producer.stop()


async def test_open_to_dashboard_latency(stack: None) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        organisation = await create_organisation(http, display_name="Bench Welzijn")
        coach = await add_coach(http, organisation["id"], name="Bench Coach")
        pixels: dict[str, str] = {}
        addresses = {}
        for index in range(MAILS):
            email = unique_email(f"bench{index}")
            response = await http.post(
                f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
                json={
                    "first_name": f"Deelnemer{index}",
                    "email": email,
                    "coach_id": coach["id"],
                    "start_date": str(date.today()),
                    "send_time": "00:00",
                    "timezone": "UTC",
                },
                headers=LICENSOR,
            )
            assert response.status_code == 201, response.text
            addresses[response.json()["id"]] = email
        for participant_id, email in addresses.items():
            mails = await eventually(lambda email=email: mails_to(http, email), timeout=120, what="a day-1 mail")
            pixels[participant_id] = tracking_links(await raw_mail(http, mails[0]["id"]))["o"]

        token = mint_staff_token("org_admin", UUID(organisation["id"]))
        headers = {"Authorization": f"Bearer {token}"}

        async def all_rows_there() -> bool:
            rows = (await http.get(f"{COACHING}/api/participants", headers=headers)).json()
            return len(rows) == MAILS and all(row["mails_sent"] == 1 for row in rows)

        await eventually(all_rows_there, timeout=120, what="the bench participants with their day-1 mail")

        pixel_only: list[float] = []
        end_to_end: list[float] = []
        async with http.stream("GET", f"{COACHING}/api/live", headers=headers) as response:
            stream = Stream(response)
            assert (await stream.next_event())[0] == "ready"
            order = list(pixels.items())
            for index in range(OPENS):
                participant_id, pixel = order[index % len(order)]
                started = time.perf_counter()
                gif = await http.get(pixel, headers=MAIL_CLIENT)
                pixel_only.append(time.perf_counter() - started)
                assert gif.status_code == 200
                while True:
                    event, data = await stream.next_event()
                    if event == "participant" and participant_id in data and "mail.opened" in data:
                        break
                end_to_end.append(time.perf_counter() - started)
    kafka = await kafka_round_trips(200)
    print("\n\nPixel → projection (open visible on the dashboard stream), same run:")
    print(line("bare: pixel request only", pixel_only))
    print(line("bare: Kafka produce → consume", kafka))
    print(line("pixel → projection (+ live push)", end_to_end))
    p99 = percentile(end_to_end, 0.99)
    print(f"  target p99 < 500 ms: {'met' if p99 < 0.5 else 'NOT met'} ({p99 * 1000:.1f} ms)")
    assert len(end_to_end) == OPENS


def synthetic_journeys(participants: int) -> list[Envelope]:
    """Many 60-day journeys (mails, opens by people and scanners, reports, calls) for the rebuild to chew on."""
    now = datetime.now(UTC)
    org, coach = uuid4(), uuid4()
    licensed = OrganisationLicensed(
        name="Bench",
        branding=Branding(display_name="Bench"),
        licence_valid_from=date.today(),
        licence_valid_until=date.today() + timedelta(days=365),
        max_active_participants=participants,
        variants=("standard",),
    )
    events = [Envelope.wrap(licensed, org_id=org), Envelope.wrap(CoachAdded(coach_id=coach, name="C"), org_id=org)]
    base = now - timedelta(days=61)
    for number in range(participants):
        participant = uuid4()
        contact = ContactDetailsSet(
            person_id=participant, kind="participant", name=f"P{number}", email=f"p{number}-{participant.hex[:6]}@x.org"
        )
        events.append(Envelope.wrap(contact, org_id=org, participant_id=participant, occurred_at=base))
        enrolled = ParticipantEnrolled(
            coach_id=coach,
            start_date=(now + timedelta(days=3)).date(),  # the real mailer sends these nothing
            send_time=clock_time(23, 59),
            timezone="Europe/Amsterdam",
            variant="standard",
        )
        events.append(Envelope.wrap(enrolled, org_id=org, participant_id=participant, occurred_at=base))
        for day in range(1, 61):
            delivery, sent = uuid4(), base + timedelta(days=day)
            mail = MailSent(
                delivery_id=delivery,
                day=day,
                lesson_title=f"Les {day}",
                pack="p",
                pack_version="1",
                message_id="m",
                sent_at=sent,
            )
            events.append(Envelope.wrap(mail, org_id=org, participant_id=participant, occurred_at=sent))
            opens = [(timedelta(seconds=5), True)] + ([(timedelta(hours=2), False)] if day % 4 else [])
            for after, automated in opens:
                opened = MailOpened(
                    delivery_id=delivery, day=day, opened_at=sent + after, first_open=False, likely_automated=automated
                )
                events.append(Envelope.wrap(opened, org_id=org, participant_id=participant, occurred_at=sent + after))
            if day % 3 == 0:
                report = AssignmentReported(
                    delivery_id=delivery, day=day, score=1 + day % 5, note="ok", reported_at=sent + timedelta(hours=5)
                )
                events.append(Envelope.wrap(report, org_id=org, participant_id=participant, occurred_at=sent))
            if day in (2, 14, 35, 58):
                call = CallLogged(
                    call_id=uuid4(),
                    coach_id=coach,
                    called_at=sent,
                    reached=True,
                    duration_minutes=20,
                    planned_call=(2, 14, 35, 58).index(day) + 1,
                )
                events.append(Envelope.wrap(call, org_id=org, participant_id=participant, occurred_at=sent))
    return events


async def publish_fast(envelopes: Sequence[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [
            await producer.send(envelope.topic, envelope.model_dump_json().encode(), key=envelope.key)
            for envelope in envelopes
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_bare(parse: bool) -> tuple[int, float]:
    """A bare baseline: read every projected topic from the start (and parse the envelopes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = await admin.describe_topics(list(TOPICS))
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        started, count = time.perf_counter(), 0
        pending = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)).values():
                count += len(records)
                if parse:
                    for record in records:
                        Envelope.model_validate_json(record.value or b"").parsed()
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


async def test_rebuild_speed(stack: None) -> None:
    events = synthetic_journeys(SYNTHETIC_PARTICIPANTS)
    started = time.perf_counter()
    await publish_fast(events)
    published = time.perf_counter() - started

    async def caught_up() -> bool:
        return await consumer_lag("coaching", TOPICS) == 0

    started = time.perf_counter()
    await eventually(caught_up, timeout=1800, what="the live consumer to project the synthetic journeys")
    live_seconds = time.perf_counter() - started

    bare_count, bare_seconds = await read_bare(parse=False)
    parsed_count, parsed_seconds = await read_bare(parse=True)
    database = Database(database_url("coaching"), pool_size=1)
    try:
        result = await Rebuild(database, Urls.kafka).run()
    finally:
        with contextlib.suppress(Exception):
            await database.dispose()
    print(
        f"\n\nRebuild of the projection, same run ({len(events)} synthetic events added, "
        f"{result.events_read} on the topics):"
    )
    print(f"  {'bare: read the topics':<44} {bare_count / bare_seconds:>10,.0f} events/s")
    print(f"  {'bare: read + parse the envelopes':<44} {parsed_count / parsed_seconds:>10,.0f} events/s")
    print(
        f"  {'rebuild (read, apply, write; one transaction)':<44} {result.events_per_second:>10,.0f} events/s"
        f"   (read+apply {result.read_seconds:.2f} s, write {result.write_seconds:.2f} s)"
    )
    print(
        f"  {'for comparison: the live consumer':<44} {len(events) / live_seconds:>10,.0f} events/s"
        f"   (published in {published:.1f} s)"
    )
    print(f"  target > 5,000 events/s: {'met' if result.events_per_second > 5000 else 'NOT met'}")
    print("  rows written: " + ", ".join(f"{name} {count}" for name, count in result.rows.items()))
    assert result.events_read >= len(events) and result.invalid == 0 and result.failed == 0
