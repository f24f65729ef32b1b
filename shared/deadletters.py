"""Dead letters: list what is in the `<topic>.dlt` topics, and replay chosen records to their
topic once the cause is fixed.

    python -m shared.deadletters list [--topic meer.mail.dlt] [--json]
    python -m shared.deadletters replay meer.mail.dlt:2:17 [meer.mail.dlt:0:3 ...]

It lives in shared/ (beside the code that writes the dead letters, shared/kafka.py) so that it
runs in every service's container, which has the broker address in MEER_KAFKA_BOOTSTRAP:
`docker compose exec mailer python -m shared.deadletters list`.

A listing shows ids only: where a record came from (topic, partition, offset), which consumer
gave up and why (the reason's first part: an exception class, never its message, which may
quote the payload), and the event's id and type. Never the payload. A replay publishes the
record's key and value unchanged to its original topic (acks=all, idempotent producer), with
a `dlt-replayed-from` header; consumers skip an event id they already handled, so a replay is
safe to repeat. A record whose cause is not fixed simply comes back to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import Topic
from shared.kafka import client_options, kafka_security
from shared.settings import KafkaClientSettings, read_settings

DLT_SUFFIX = Topic.dead_letter("")
# The headers shared/kafka.py's dead-lettering writes.
REASON, CONSUMER, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET = (
    "dlt-reason",
    "dlt-consumer",
    "dlt-topic",
    "dlt-partition",
    "dlt-offset",
)
REPLAYED_FROM = "dlt-replayed-from"
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})
"""aiokafka's security options when there is no login (plaintext on loopback)."""
# The one reason shared/kafka.py writes itself, with counts only; every other reason is
# "<ExceptionClass>: <message>", and the message may quote payload values.
_OWN_REASON = "not a valid envelope"


class DeadLetterSettings(KafkaClientSettings):
    """Only what this tool needs, from the same variables as the services (with an operator's
    Kafka login where the broker asks for one: MEER_KAFKA_SASL_USERNAME=meer-operations, ...)."""


@dataclass(frozen=True)
class DeadLetter:
    """One record on a dead-letter topic, described by ids only."""

    dlt_topic: str
    partition: int
    offset: int
    dead_lettered_at: str
    topic: str
    original_partition: int | None
    original_offset: int | None
    consumer: str
    reason: str
    event_type: str | None
    event_id: str | None

    @property
    def address(self) -> str:
        """How `replay` names this record."""
        return f"{self.dlt_topic}:{self.partition}:{self.offset}"


def safe_reason(reason: str) -> str:
    """The part of a dead-letter reason that names the failure without quoting the event."""
    if reason.startswith(_OWN_REASON):
        return reason
    return reason.split(":", 1)[0].strip()[:100]


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _event_ids(value: bytes | None) -> tuple[str | None, str | None]:
    """The envelope's type and event_id, without parsing (or keeping) the payload."""
    try:
        document = json.loads(value or b"")
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    event_type, event_id = document.get("type"), document.get("event_id")
    return (
        event_type[:100] if isinstance(event_type, str) else None,
        event_id[:36] if isinstance(event_id, str) else None,
    )


def describe(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    """A dead-letter record as ids: where it came from, who gave up, why, which event."""
    event_type, event_id = _event_ids(record.value)
    return DeadLetter(
        dlt_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        dead_lettered_at=datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds"),
        topic=_header(record, ORIGINAL_TOPIC) or record.topic.removesuffix(DLT_SUFFIX),
        original_partition=_int_or_none(_header(record, ORIGINAL_PARTITION)),
        original_offset=_int_or_none(_header(record, ORIGINAL_OFFSET)),
        consumer=_header(record, CONSUMER) or "?",
        reason=safe_reason(_header(record, REASON) or ""),
        event_type=event_type,
        event_id=event_id,
    )


def parse_address(text: str) -> tuple[str, int, int]:
    """`meer.mail.dlt:2:17` -> ("meer.mail.dlt", 2, 17); only dead-letter topics."""
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic.endswith(DLT_SUFFIX) or not partition.isdigit() or not rest.isdigit():
        raise ValueError(f"not a dead-letter record address (TOPIC.dlt:PARTITION:OFFSET): {text!r}")
    return topic, int(partition), int(rest)


async def partitions_of(
    bootstrap: str, topics: Sequence[str], *, client: Mapping[str, Any] = NO_OPTIONS
) -> list[TopicPartition]:
    """The partitions of those topics that exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0 for p in t["partitions"]
    )


async def read_dead_letters(
    bootstrap: str, topics: Sequence[str], *, client: Mapping[str, Any] = NO_OPTIONS
) -> list[DeadLetter]:
    """Every record on the given dead-letter topics now, read without a consumer group."""
    found: list[DeadLetter] = []
    partitions = await partitions_of(bootstrap, topics, client=client)
    if not partitions:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    found.extend(describe(record) for record in batch if record.offset < ends[tp])
    finally:
        await consumer.stop()
    return sorted(found, key=lambda d: (d.dlt_topic, d.partition, d.offset))


async def _fetch(consumer: AIOKafkaConsumer, topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    start = (await consumer.beginning_offsets([tp]))[tp]
    if not start <= offset < end:
        raise LookupError(f"{topic}:{partition} has offsets {start}..{end - 1}, not {offset}")
    consumer.seek(tp, offset)
    while True:
        for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
            if record.offset == offset:
                return record
            if record.offset > offset:  # a compacted or transaction-marker gap
                raise LookupError(f"{topic}:{partition} has no record at offset {offset}")


async def replay(
    bootstrap: str, addresses: Sequence[str], *, client: Mapping[str, Any] = NO_OPTIONS
) -> list[tuple[str, str, int, int]]:
    """Publish each addressed dead letter to its original topic, unchanged; returns
    (address, topic, partition, offset) of each replayed record in the original topic."""
    wanted = [parse_address(address) for address in addresses]
    existing = set(await partitions_of(bootstrap, sorted({topic for topic, _, _ in wanted}), client=client))
    for topic, partition, _ in wanted:
        if TopicPartition(topic, partition) not in existing:
            raise LookupError(f"no partition {partition} of {topic}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client)
    await consumer.start()
    await producer.start()
    replayed = []
    try:
        records = [await _fetch(consumer, *address) for address in wanted]  # all found, or none sent
        for address, record in zip(addresses, records, strict=True):
            target = describe(record).topic
            headers = [(REPLAYED_FROM, address.encode())]
            sent = await producer.send_and_wait(target, record.value, key=record.key, headers=headers)
            replayed.append((address, sent.topic, sent.partition, sent.offset))
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed


def _print_table(letters: Sequence[DeadLetter]) -> None:
    columns = ("record", "dead-lettered", "from", "consumer", "reason", "event type", "event id")
    rows = [
        (
            d.address,
            d.dead_lettered_at,
            f"{d.topic}:{d.original_partition}:{d.original_offset}",
            d.consumer,
            d.reason,
            d.event_type or "-",
            d.event_id or "-",
        )
        for d in letters
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in (columns, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.deadletters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: MEER_KAFKA_BOOTSTRAP)")
    sub = parser.add_subparsers(dest="command", required=True)
    list_parser = sub.add_parser("list", help="list the records on the dead-letter topics (ids only)")
    list_parser.add_argument(
        "--topic", action="append", help="a dead-letter topic (repeatable; default: every <topic>.dlt)"
    )
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    replay_parser = sub.add_parser("replay", help="publish dead letters to their original topic again")
    replay_parser.add_argument("records", nargs="+", metavar="TOPIC.dlt:PARTITION:OFFSET")
    args = parser.parse_args(argv)
    settings = read_settings(DeadLetterSettings)
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    client = client_options(kafka_security(settings))

    if args.command == "list":
        topics = args.topic or [Topic.dead_letter(topic) for topic in Topic.ALL]
        letters = asyncio.run(read_dead_letters(bootstrap, topics, client=client))
        if args.json:
            for letter in letters:
                print(json.dumps({"record": letter.address, **asdict(letter)}))
        elif letters:
            _print_table(letters)
        else:
            print(f"no dead letters on {', '.join(topics)}")
        return 0
    try:
        replayed = asyncio.run(replay(bootstrap, args.records, client=client))
    except (ValueError, LookupError) as error:
        print(f"nothing replayed: {error}", file=sys.stderr)
        return 2
    for address, topic, partition, offset in replayed:
        print(f"{address} -> {topic}:{partition}:{offset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
