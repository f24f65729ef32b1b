"""The dead-letters CLI on the real broker: `python -m shared.deadletters list|replay`.

Lists a record the running mailer really dead-lettered (its headers as shared/kafka.py
writes them) and one put on a dead-letter topic as that code writes it, by ids only, and
replays them to their original topic, where they are read back unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.events import Envelope, Topic
from tests.e2e.conftest import KAFKA, eventually

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
# Personal data that a listing must never show, whatever the record or its reason holds.
SECRET_NAME = "Annegien van der Berg-Oosterhuis"


def cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shared.deadletters", *args],
        cwd=ROOT,
        env={**os.environ, "MEER_KAFKA_BOOTSTRAP": KAFKA},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET_NAME not in result.stdout + result.stderr
    return result.stdout


def listed(topic: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli("list", "--topic", topic, "--json").splitlines()]


async def produce(topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def record_at(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await consumer.getone(tp)
        assert record.offset == offset
        return record
    finally:
        await consumer.stop()


def replayed_to(output: str, address: str) -> tuple[str, int, int]:
    [line] = [line for line in output.splitlines() if line.startswith(f"{address} -> ")]
    topic, partition, offset = line.split(" -> ")[1].split(":")
    return topic, int(partition), int(offset)


async def test_a_record_the_mailer_dead_lettered_is_listed_by_ids_and_replayed_unchanged(stack: None) -> None:
    # Garbage on a topic the mailer consumes: the mailer moves it to meer.staff.dlt.
    garbage = f"not json, but a name: {SECRET_NAME}".encode()
    key = uuid.uuid4().hex.encode()
    sent = await produce(Topic.STAFF, garbage, key)

    async def dead_letter_of(offset: int) -> dict[str, Any] | None:
        return next(
            (
                d
                for d in listed(Topic.dead_letter(Topic.STAFF))
                # Coaching consumes meer.staff too and dead-letters the same garbage.
                if (d["original_partition"], d["original_offset"], d["consumer"]) == (sent.partition, offset, "mailer")
            ),
            None,
        )

    letter = await eventually(lambda: dead_letter_of(sent.offset), what="the mailer to dead-letter the garbage")
    assert letter["topic"] == Topic.STAFF and letter["consumer"] == "mailer"
    assert letter["reason"].startswith("not a valid envelope")
    assert letter["event_type"] is None and letter["event_id"] is None
    table = cli("list", "--topic", Topic.dead_letter(Topic.STAFF))
    assert letter["record"] in table and "not a valid envelope" in table

    topic, partition, offset = replayed_to(cli("replay", letter["record"]), letter["record"])
    assert (topic, partition) == (Topic.STAFF, sent.partition), "same key, same partition"
    replayed = await record_at(topic, partition, offset)
    assert (replayed.value, replayed.key) == (garbage, key)
    assert dict(replayed.headers)["dlt-replayed-from"] == letter["record"].encode()
    # Nothing was fixed, so the mailer dead-letters it again, and goes on.
    again = await eventually(lambda: dead_letter_of(offset), what="the replayed garbage back on the dead-letter topic")
    assert again["reason"] == letter["reason"]


async def test_a_dead_lettered_event_is_listed_without_its_payload_and_replayed_to_its_topic(stack: None) -> None:
    # An event of a type no service handles (so the replay changes nothing), dead-lettered as
    # shared/kafka.py does it; the reason quotes a value, as a pydantic error message would.
    envelope = Envelope(
        type="ops.deadletter_check",
        version=1,
        occurred_at=datetime.now(UTC),
        org_id=uuid.uuid4(),
        participant_id=uuid.uuid4(),
        payload={"first_name": SECRET_NAME},
    )
    reason = f"ValidationError: 1 validation error for Check\nfirst_name\n  input_value='{SECRET_NAME}'"
    headers = [
        ("dlt-reason", reason.encode()),
        ("dlt-consumer", b"coaching"),
        ("dlt-topic", Topic.PARTICIPANT.encode()),
        ("dlt-partition", b"4"),
        ("dlt-offset", b"1234"),
    ]
    dlt = Topic.dead_letter(Topic.PARTICIPANT)
    sent = await produce(dlt, envelope.model_dump_json().encode(), envelope.key, headers)
    address = f"{dlt}:{sent.partition}:{sent.offset}"

    [letter] = [d for d in listed(dlt) if d["record"] == address]
    assert letter == {
        "record": address,
        "dlt_topic": dlt,
        "partition": sent.partition,
        "offset": sent.offset,
        "dead_lettered_at": letter["dead_lettered_at"],
        "topic": Topic.PARTICIPANT,
        "original_partition": 4,
        "original_offset": 1234,
        "consumer": "coaching",
        "reason": "ValidationError",
        "event_type": "ops.deadletter_check",
        "event_id": str(envelope.event_id),
    }

    topic, partition, offset = replayed_to(cli("replay", address), address)
    assert topic == Topic.PARTICIPANT
    replayed = await record_at(topic, partition, offset)
    assert Envelope.model_validate_json(replayed.value) == envelope and replayed.key == envelope.key


def test_replay_refuses_what_is_not_a_dead_letter_and_sends_nothing(stack: None) -> None:
    for address in (f"{Topic.MAIL}:0:0", f"{Topic.dead_letter(Topic.MAIL)}:0:999999999", "meer.mail.dlt:x:1"):
        result = subprocess.run(
            [sys.executable, "-m", "shared.deadletters", "replay", address],
            cwd=ROOT,
            env={**os.environ, "MEER_KAFKA_BOOTSTRAP": KAFKA},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and "nothing replayed" in result.stderr, address
        assert "Traceback" not in result.stderr
