"""The failure drills of deploy/RUNBOOK.md, on a three-node Kafka cluster with two replicas of
every service (./meer drills). Each prints its counts; the asserts hold them to: nothing
acknowledged lost, repeated mails within the mails in flight of the processes killed,
coaching's projection equal to a rebuild from the topics."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Iterator

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local import stack as local_stack
from shared.events import Envelope, Topic, known_event_types, payload_class
from tests.drills.conftest import (
    MAILS_IN_FLIGHT_PER_MAILER,
    SERVICES,
    Counts,
    Stream,
    count_stream,
    dead_letter_total,
    every_partition_fully_replicated,
    kafka_controller_leader,
    projection_equals_rebuild,
    readiness,
    replicas,
    settle,
    sigkill,
    sigkill_postgres,
)
from tests.e2e.conftest import KAFKA, db_fetch, read_topic

GROUPS = SERVICES  # each service's consumer group is its name


def _strings(data: bytes, at: int, count: int) -> Iterator[tuple[str, int]]:
    for _ in range(count):
        (length,) = struct.unpack_from(">h", data, at)
        yield data[at + 2 : at + 2 + length].decode(), at + 2 + length
        at += 2 + length


def subscribed_topics(metadata: bytes) -> set[str]:
    """The topics of a consumer protocol subscription (version, [topic], user data); none while
    the member is still joining (empty metadata)."""
    if not metadata:
        return set()
    (count,) = struct.unpack_from(">i", metadata, 2)
    return {topic for topic, _ in _strings(metadata, 6, count)}


def assigned_partitions(assignment: bytes) -> set[tuple[str, int]]:
    """The partitions of a consumer protocol assignment (version, [topic, [partition]], user data);
    none while the group rebalances (an empty assignment)."""
    found: set[tuple[str, int]] = set()
    if not assignment:
        return found
    (count,) = struct.unpack_from(">i", assignment, 2)
    at = 6
    for _ in range(count):
        ((topic, at),) = _strings(assignment, at, 1)
        (partitions,) = struct.unpack_from(">i", assignment, at)
        found |= {(topic, p) for p in struct.unpack_from(f">{partitions}i", assignment, at + 4)}
        at += 4 + 4 * partitions
    return found


async def groups() -> dict[str, list[dict[str, object]]]:
    """Per service group, its members: subscribed topics and assigned partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = {}
        # One group per request: aiokafka 0.14 cannot decode an answer about several groups.
        responses = [response for group in GROUPS for response in await admin.describe_consumer_groups([group])]
        for response in responses:
            for group in response.to_object()["groups"]:
                described[group["group"]] = [
                    {
                        "topics": subscribed_topics(member["member_metadata"]),
                        "partitions": assigned_partitions(member["member_assignment"]),
                    }
                    for member in group["members"]
                ]
        return described
    finally:
        await admin.close()


async def lag_of_every_group() -> dict[str, int]:
    """Per service group, the events on its committed partitions it has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lag = {}
        for group in GROUPS:
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(committed))
            lag[group] = sum(max(0, ends[tp] - max(meta.offset, 0)) for tp, meta in committed.items())
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def no_lag() -> bool:
    return not any((await lag_of_every_group()).values())


def assert_nothing_lost(counts: Counts, *, mailers_killed: int) -> None:
    bound = MAILS_IN_FLIGHT_PER_MAILER * mailers_killed
    for flow in counts.flows:
        assert counts.lost(flow) == 0, f"{flow}: {counts.flows[flow]}"
    # A copy of an enrolment on Kafka (the relay republishes what it could not see acknowledged) is
    # printed, not refused: every consumer claims an event id once.
    assert counts.duplicated("day-1 mail → inbox") <= bound, f"more repeats than mails in flight ({bound})"
    assert counts.duplicated("pixel → coaching") == 0, "an open counted twice"


async def test_a_broker_killed_and_restarted_then_the_controller_leader_killed(http: httpx.AsyncClient) -> None:
    stream = Stream(http)
    await stream.start()
    letters_before = await dead_letter_total()
    killed: list[str] = []

    async def fault() -> None:
        leader = kafka_controller_leader()
        broker = next(node for node in local_stack.KAFKA_NODES if node != leader)
        await asyncio.to_thread(sigkill, broker.name)
        killed.append(f"{broker.name} (a broker)")
        await asyncio.sleep(3)  # the stream goes on against two of three nodes
        await asyncio.to_thread(local_stack.start_kafka_node, broker)
        assert await settle(every_partition_fully_replicated, timeout=180), "the restarted node never caught up"
        leader = kafka_controller_leader()
        await asyncio.to_thread(sigkill, leader.name)
        killed.append(f"{leader.name} (the controller leader)")
        await asyncio.sleep(3)
        await asyncio.to_thread(local_stack.start_kafka_node, leader)
        assert await settle(every_partition_fully_replicated, timeout=180), "the old leader never caught up"

    await stream.run(30, fault)
    counts = await count_stream("one broker of three, then the controller leader, SIGKILLed", stream, letters_before)
    counts.notes.append(f"killed and restarted: {', '.join(killed)}; now leading: {kafka_controller_leader().name}")
    await projection_equals_rebuild(counts)
    assert_nothing_lost(counts, mailers_killed=0)
    assert counts.dead_lettered == 0


async def test_one_replica_of_each_service_killed_the_others_take_over(http: httpx.AsyncClient) -> None:
    stream = Stream(http)
    await stream.start()
    letters_before = await dead_letter_total()
    before: dict[str, list[dict[str, object]]] = {}

    async def two_members_with_partitions_in_every_group() -> bool:
        # Right after the start a group may still be rebalancing: wait until it is not.
        before.clear()
        before.update(await groups())
        return all(len(before[group]) == 2 and all(m["partitions"] for m in before[group]) for group in GROUPS)

    stable = await settle(two_members_with_partitions_in_every_group, timeout=120)
    assert stable, {group: len(members) for group, members in before.items()}
    second = [replicas(base)[1] for base in (*local_stack.SERVICE_PORTS, *local_stack.WORKERS)]

    async def fault() -> None:
        for process in second:
            await asyncio.to_thread(sigkill, process.name)
        # A load balancer's health check takes the killed replicas out.
        stream.enrolment_urls = [replicas("enrolment")[0].url]
        stream.tracking_urls = [replicas("tracking")[0].url]

    try:
        await stream.run(30, fault)
        counts = await count_stream(
            "one replica of each service and of the hit processor SIGKILLed", stream, letters_before
        )

        async def one_member_each_with_every_partition() -> bool:
            now = await groups()
            return all(
                len(now[group]) == 1
                and now[group][0]["partitions"] == set().union(*(m["partitions"] for m in before[group]))  # type: ignore[arg-type]
                for group in GROUPS
            )

        taken_over = await settle(one_member_each_with_every_partition, timeout=120)
        caught_up = await settle(no_lag, timeout=120)
        counts.notes.append(
            f"killed: {', '.join(p.name for p in second)}; every group down to one member holding all "
            f"its partitions: {taken_over}; lag of every group 0: {caught_up}"
        )
        await projection_equals_rebuild(counts)
        assert taken_over and caught_up
        assert_nothing_lost(counts, mailers_killed=1)
        assert counts.dead_lettered == 0
    finally:
        for process in second:
            await asyncio.to_thread(local_stack.start_service_process, process)
        for process in second:
            if process.port is not None:
                await asyncio.to_thread(local_stack.wait_ready, process)


async def test_postgres_killed_services_report_not_ready_and_recover_alone(http: httpx.AsyncClient) -> None:
    stream = Stream(http)
    await stream.start()
    letters_before = await dead_letter_total()
    fsync = await db_fetch("coaching", "SHOW fsync")
    assert fsync[0][0] == "on", "the drills run PostgreSQL with fsync on"
    urls = [process.url for base in SERVICES for process in replicas(base)]
    seen_not_ready: set[str] = set()

    async def fault() -> None:
        await asyncio.to_thread(sigkill_postgres)

        async def all_report_postgres_down() -> bool:
            for url in urls:
                status, checks = await readiness(http, url)
                if status == 503 and checks.get("postgres") is False:
                    seen_not_ready.add(url)
            return len(seen_not_ready) == len(urls)

        try:
            await settle(all_report_postgres_down, timeout=60)
        finally:
            await asyncio.to_thread(local_stack.start_postgres)

        async def all_ready() -> bool:
            return all([(await readiness(http, url))[0] == 200 for url in urls])

        assert await settle(all_ready, timeout=120), "a service did not recover by itself"

    await stream.run(30, fault)
    counts = await count_stream("PostgreSQL SIGKILLed (fsync on) and restarted", stream, letters_before)
    counts.notes.append(f"services that reported not-ready (postgres false): {len(seen_not_ready)} of {len(urls)}")
    await projection_equals_rebuild(counts)
    assert seen_not_ready == set(urls)
    assert_nothing_lost(counts, mailers_killed=2)  # both mailers' SMTP transactions may be cut
    assert counts.dead_lettered == 0


def wrong_payload(event_type: str, version: int, key: bytes) -> bytes:
    """A sound envelope of a known type whose payload lacks every required field."""
    envelope = json.loads(
        Envelope.model_construct(
            event_id=uuid.uuid4(), type=event_type, version=version, org_id=uuid.uuid4(), payload={}
        ).model_dump_json(exclude={"occurred_at"})
    )
    envelope["occurred_at"] = "2026-01-01T00:00:00Z"
    envelope["participant_id"] = key.decode()
    return json.dumps(envelope).encode()


def unknown_type(key: bytes) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "drill.nobody_knows_this",
            "version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "org_id": str(uuid.uuid4()),
            "participant_id": key.decode(),
            "payload": {"x": 1},
        }
    ).encode()


async def test_poison_records_on_every_consumed_topic(http: httpx.AsyncClient) -> None:
    stream = Stream(http)
    await stream.start()
    letters_before = await dead_letter_total()
    consumers = {
        topic: {group for group, members in (await groups()).items() for m in members if topic in m["topics"]}  # type: ignore[operator]
        for topic in Topic.ALL
    }
    consumed = {topic: groups_ for topic, groups_ in consumers.items() if groups_}
    garbage: dict[str, bytes] = {}
    wrong: dict[str, list[bytes]] = {}
    unknown: dict[str, bytes] = {}

    async def fault() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for topic in consumed:
                key = str(uuid.uuid4()).encode()
                garbage[topic] = b"\xff\x00drill garbage " + uuid.uuid4().bytes
                unknown[topic] = unknown_type(key)
                wrong[topic] = [
                    wrong_payload(event_type, version, key)
                    for event_type, version in known_event_types()
                    if topic == payload_class(event_type, version).TOPIC
                    and any(f.is_required() for f in payload_class(event_type, version).model_fields.values())
                ]
                for value in (garbage[topic], unknown[topic], *wrong[topic]):
                    await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    await stream.run(24, fault, fault_after=12)
    await settle(no_lag, timeout=180)
    lag = await lag_of_every_group()
    counts = await count_stream("poison records on every consumed topic", stream, letters_before)
    letters = {topic: await read_topic(Topic.dead_letter(topic)) for topic in consumed}

    def consumers_that_dead_lettered(topic: str, value: bytes) -> dict[str, str]:
        return {
            dict(r.headers)["dlt-consumer"].decode(): dict(r.headers)["dlt-reason"].decode()
            for r in letters[topic]
            if r.value == value
        }

    missing_garbage, unknown_lettered, wrong_lettered, wrong_total = [], [], 0, 0
    for topic, groups_ in consumed.items():
        by = consumers_that_dead_lettered(topic, garbage[topic])
        if set(by) != groups_ or not all(reason.startswith("not a valid envelope") for reason in by.values()):
            missing_garbage.append((topic, sorted(groups_), by))
        if consumers_that_dead_lettered(topic, unknown[topic]):
            unknown_lettered.append(topic)
        for value in wrong[topic]:
            wrong_total += 1
            reasons = consumers_that_dead_lettered(topic, value)
            wrong_lettered += bool(reasons)
            assert all(reason.startswith("ValidationError") for reason in reasons.values()), reasons
    poison = sum(2 + len(wrong[topic]) for topic in consumed)
    counts.notes.append(
        f"poison: {poison} records on {len(consumed)} consumed topics ({', '.join(sorted(consumed))}); "
        f"garbage dead-lettered by every consumer of its topic: {len(consumed) - len(missing_garbage)} of "
        f"{len(consumed)} topics; wrong payloads dead-lettered (by the consumers of their type): "
        f"{wrong_lettered} of {wrong_total} (the rest are types no service consumes: skipped); unknown types "
        f"dead-lettered: {len(unknown_lettered)} (should be 0); lag after: {lag}"
    )
    await projection_equals_rebuild(counts)
    assert missing_garbage == []
    assert unknown_lettered == []
    assert wrong_lettered > 0
    assert not any(lag.values()), "a consumer stopped at a poison record"
    assert_nothing_lost(counts, mailers_killed=0)
