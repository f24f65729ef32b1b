"""Kafka plumbing: the broker factory, topic creation, and the one way every service
consumes events (idempotent handlers, bounded retries, then a dead-letter topic)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.security import parse_security
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential_jitter

from shared.db import Database, claim_events, database_unavailable
from shared.events import Envelope, Topic, UnknownEventError
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, EVENTS_DEAD_LETTERED, EVENTS_HANDLED
from shared.settings import KafkaClientSettings

log = get_logger(__name__)

Change = Callable[[AsyncSession, Envelope, Any], Awaitable[None]]
"""What one event does to a service's database: (session, envelope, typed payload). It runs
inside the consumer's unit of work (consume_events), which has claimed the event id and
commits; it must not commit itself."""

TombstoneChange = Callable[[AsyncSession, str], Awaitable[None]]
"""What a tombstone (a record with a null value) on a compacted topic does, given its key:
delete what the service keeps for that key (idempotent by nature)."""

Prepare = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]
"""Runs once per unit of work, after the claim and before the changes, with the events about
to be applied: a service loads (and locks) in one query what its changes will touch."""


@dataclass(frozen=True)
class Subscription:
    """Everything one service consumes: {topic: {event type: Change}}, tombstones by topic,
    and an optional Prepare."""

    changes: Mapping[str, Mapping[str, Change]]
    tombstones: Mapping[str, TombstoneChange] = field(default_factory=dict)
    prepare: Prepare | None = None

    @property
    def topics(self) -> list[str]:
        return list(dict.fromkeys([*self.changes, *self.tombstones]))


_UNIT_OF_WORK = "meer.unit_of_work"


class UnitOfWork:
    """One consumer transaction: a batch of events, or one event when a batch failed.

    Changes reach it through `unit_of_work(session)` to leave work for the end of the
    batch: `before_commit` (once per key, e.g. one recount per participant however many of
    their events the batch holds) and `after_commit` (once per action, e.g. wake a loop or
    push to open dashboards; it runs only when the transaction committed)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.state: dict[str, Any] = {}
        """What changes of one unit of work gather for its end (by a key of their own)."""
        self._before: dict[Hashable, Callable[[], Awaitable[object]]] = {}
        self._after: dict[Callable[[], None], None] = {}

    def before_commit(self, key: Hashable, action: Callable[[], Awaitable[object]]) -> None:
        self._before.setdefault(key, action)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._after.setdefault(action, None)

    async def _finish(self) -> None:
        # An action may leave more work (a recount that stages events): run until none is left.
        done: set[Hashable] = set()
        while pending := [key for key in self._before if key not in done]:
            for key in pending:
                done.add(key)
                await self._before[key]()
        await self.session.commit()

    def _after_commit(self) -> None:
        for action in self._after:
            try:
                action()
            except Exception as error:  # noqa: BLE001 - committed already: a failed notification must not redeliver
                log.warning("after-commit action failed", error=type(error).__name__)


def unit_of_work(session: AsyncSession) -> UnitOfWork:
    """The consumer unit of work `session` belongs to (inside a Change, Prepare or TombstoneChange)."""
    found = session.info.get(_UNIT_OF_WORK)
    if not isinstance(found, UnitOfWork):
        raise RuntimeError("not inside a consumer unit of work")
    return found


@dataclass(slots=True)
class _Item:
    """One record of a batch that has something to do: an event with its change, or a tombstone."""

    record: ConsumerRecord[bytes, bytes] | None
    """None when the event did not come from Kafka (apply_events)."""
    envelope: Envelope | None
    payload: Any = None
    change: Change | None = None
    tombstone: TombstoneChange | None = None
    key: str = ""

    @property
    def type(self) -> str:
        return self.envelope.type if self.envelope is not None else "tombstone"


async def _apply(database: Database, items: Sequence[_Item], prepare: Prepare | None) -> int:
    """The one consumer unit of work: claim every event id of `items` in one statement, apply
    the new ones in order in one transaction, commit, then run the after-commit actions.
    Returns how many events were skipped as already handled."""
    async with database.session() as session:
        work = UnitOfWork(session)
        session.info[_UNIT_OF_WORK] = work
        fresh = await claim_events(session, [i.envelope.event_id for i in items if i.envelope is not None])
        todo: list[_Item] = []
        for item in items:
            if item.envelope is None:
                todo.append(item)
            elif item.envelope.event_id in fresh:
                fresh.discard(item.envelope.event_id)  # the same event twice in one batch: once
                todo.append(item)
        if prepare is not None:
            envelopes = [item.envelope for item in todo if item.envelope is not None]
            if envelopes:
                await prepare(session, envelopes)
        for item in todo:
            if item.envelope is None:
                assert item.tombstone is not None
                await item.tombstone(session, item.key)
            else:
                assert item.change is not None
                await item.change(session, item.envelope, item.payload)
        await work._finish()
    work._after_commit()
    return len(items) - len(todo)


async def apply_events(database: Database, subscription: Subscription, envelopes: Sequence[Envelope]) -> int:
    """Apply events in one unit of work, as the consumer does with a batch (for tests and tools
    that feed events without Kafka). Types without a change are skipped. Returns how many
    events were skipped as already handled."""
    items = []
    for envelope in envelopes:
        change = subscription.changes.get(envelope.topic, {}).get(envelope.type)
        if change is not None:
            items.append(_Item(None, envelope, envelope.parsed(), change))
    return await _apply(database, items, subscription.prepare)


# Producers here neither lose nor duplicate what they are asked to publish, and keep going
# across a short broker outage instead of failing.
_REQUEST_TIMEOUT_MS = 15_000


def kafka_security(settings: KafkaClientSettings) -> BaseSecurity | None:
    """How the service authenticates to Kafka and checks the brokers (MEER_KAFKA_SECURITY_PROTOCOL
    and friends), as FastStream's security object; client_options() gives aiokafka's form."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol.endswith("SSL")
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
    login = {"username": settings.kafka_sasl_username, "password": settings.kafka_sasl_password}
    sasl = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
    return sasl[settings.kafka_sasl_mechanism](**login, ssl_context=context, use_ssl=tls)


def client_options(security: BaseSecurity | None) -> dict[str, Any]:
    """The aiokafka keyword arguments (security_protocol, sasl_*, ssl_context) for the same security."""
    return parse_security(security)


def create_broker(bootstrap: str, *, client_id: str, security: BaseSecurity | None = None) -> KafkaBroker:
    """The service's FastStream broker: its consumers, and a safe producer for dead letters."""
    return KafkaBroker(
        # aiokafka splits "a:1,b:2" itself; FastStream wraps a string in a list, and then it does not.
        [server.strip() for server in bootstrap.split(",") if server.strip()],
        security=security,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
        graceful_timeout=30.0,
        logger=None,
    )


def create_producer(bootstrap: str, *, client_id: str, security: BaseSecurity | None = None) -> AIOKafkaProducer:
    """A plain producer with the same guarantees, for the outbox relay's hot loop."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_options(security),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
    )


DOMAIN_RETENTION_MS = -1
"""Events are kept as long as the topic exists: coaching rebuilds its projection by replaying
every topic from the start, and a consumer group that was away must find what it missed."""
DEAD_LETTER_RETENTION_MS = 14 * 24 * 3_600_000
"""Dead letters are kept 14 days: time to fix the cause and replay them, yet finite."""
EXPORT_RETENTION_MS = 7 * 24 * 3_600_000
"""Subject-access exports travel sealed and are bundled in minutes: a week covers any delay."""
COMPACTED_TOPIC_CONFIG: dict[str, str] = {
    "cleanup.policy": "compact",
    # The active segment is never cleaned: roll daily so an overwritten or erased value can go.
    "segment.ms": str(24 * 3_600_000),
    # Clean a segment at the latest a day after it was written, however little of the log is dirty...
    "max.compaction.lag.ms": str(24 * 3_600_000),
    # ...and sooner once a tenth is dirty (default half: a rarely changing topic would wait long).
    "min.cleanable.dirty.ratio": "0.1",
    # A tombstone stays a day after cleaning, so a consumer that was down for hours still sees it.
    "delete.retention.ms": str(24 * 3_600_000),
}
"""The contact topic: the newest value per person, and an erasure gone from disk within about three days."""


def topic_config(topic: str) -> dict[str, str]:
    """The per-topic configuration of a platform topic, the same wherever it is created: here
    (ensure_topics: the local stack and compose), and deploy/k8s/topics.yaml (Strimzi);
    tests/unit/deploy/test_topics.py checks that they agree."""
    if topic.endswith(".dlt"):
        return {"cleanup.policy": "delete", "retention.ms": str(DEAD_LETTER_RETENTION_MS)}
    if topic in Topic.COMPACTED:
        return dict(COMPACTED_TOPIC_CONFIG)
    if topic == Topic.EXPORT:
        # Export requests and their sealed parts are done with in minutes and no rebuild reads them.
        return {"cleanup.policy": "delete", "retention.ms": str(EXPORT_RETENTION_MS)}
    return {"cleanup.policy": "delete", "retention.ms": str(DOMAIN_RETENTION_MS)}


async def ensure_topics(
    bootstrap: str,
    topics: tuple[str, ...],
    *,
    partitions: int,
    replication_factor: int = 1,
    security: BaseSecurity | None = None,
) -> None:
    """Create the platform's topics and their dead-letter topics, with topic_config(), if they
    do not exist. A topic that exists keeps its configuration (deploy/README.md: retention)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options(security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [name for topic in topics for name in (topic, Topic.dead_letter(topic)) if name not in existing]
        if wanted:
            # Another service may create the same topic at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                response = await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs=topic_config(name),
                        )
                        for name in wanted
                    ]
                )
                for name, code, *_ in response.topic_errors:
                    # With ACLs (compose, deploy/k8s) the deployment makes the topics, not the services.
                    if code == TopicAuthorizationFailedError.errno:
                        log.info("topic left to the deployment (no permission to create it)", topic=name)
                    elif code not in (0, TopicAlreadyExistsError.errno):
                        log.warning("topic not created", topic=name, error=for_code(code).__name__)
    finally:
        await admin.close()


class TransientError(Exception):
    """A dependency is unavailable; the event must be retried, never dead-lettered."""


def _is_transient(error: BaseException) -> bool:
    # A lost database connection says nothing about the event: wait, then try again.
    return database_unavailable(error) or isinstance(error, (OSError, ConnectionError, TimeoutError, TransientError))


class _EnvelopeHead(BaseModel):
    """Only the envelope's type: enough to skip an event the service does not handle."""

    type: str


# Envelopes are written by Envelope.model_dump_json: the event id first, then the type. At the
# top of the object nothing else can come between them (a UUID holds no quote), so this names
# the envelope's type without parsing the rest; anything else is parsed as JSON.
_LEADING_TYPE = re.compile(rb'\{\s*"event_id"\s*:\s*"[0-9a-fA-F-]{32,36}"\s*,\s*"type"\s*:\s*"([a-z0-9_.]{1,100})"')


def envelope_type(value: bytes) -> str:
    """The type an envelope names, by a cheap look at its start when it is written the usual
    way; raises ValidationError when the value is no JSON object with a string type."""
    found = _LEADING_TYPE.match(value)
    if found is not None:
        return found.group(1).decode()
    return _EnvelopeHead.model_validate_json(value).type


async def _records_only(message: StreamMessage[Any]) -> None:
    """The batch's decoded body, which on_batch never reads (it reads the records): FastStream's
    own decoder makes a message object and a json.loads of every record first, about a fifth
    of coaching's consumer CPU in a morning burst, for a body nobody uses."""
    del message


FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch that finds nothing new. aiokafka keeps one fetch in
flight per broker and leaves out of it the partitions whose fetched records still wait to be
handed out. A service consumes many topics, most of them quiet: while a batch of the busy
partition was applied, the next fetch asked for the quiet partitions only, and the broker held
it for aiokafka's default 500 ms while the busy partition's new records waited behind it. In a
morning burst coaching read its opens in pauses of 300-460 ms (Kafka → commit p99 1.1-1.3 s;
0.17-0.21 s with 50 ms). An idle consumer now asks 20 times a second: nothing for a broker."""


FETCH_MIN_BYTES = 64 * 1024
"""How much a fetch waits for (at most FETCH_MAX_WAIT_MS): the broker's own batching. With
aiokafka's default (1 byte) a consumer that keeps up takes whatever the last few milliseconds
brought: in a morning burst of 1,000 opens a second coaching applied batches of a handful, each
paying a transaction, the event claim and an offset commit, and used 327 µs of CPU per open
against 189 µs when the same opens came four times as fast. About 130 envelopes; a quiet
topic's event waits at most FETCH_MAX_WAIT_MS longer, a backlog not at all."""


UNIT_MIN_EVENTS = 100
"""The fewest events a batch gives each of its concurrent units of work (split_by_key): a
small batch stays one unit, as each unit pays a transaction, an event claim and its loads."""


def split_by_key(items: Sequence[_Item], units: int) -> list[list[_Item]]:
    """The batch as up to `units` groups that can be applied side by side: every record of one
    key in one group, in the batch's order, so each participant's (or person's, organisation's)
    events keep their order. Two groups never write the same participant's rows, as two
    replicas of the service would not; at most one group per UNIT_MIN_EVENTS events."""
    units = max(1, min(units, len(items) // UNIT_MIN_EVENTS))
    if units == 1:
        return [list(items)]
    groups: list[list[_Item]] = [[] for _ in range(units)]
    for item in items:
        key = item.record.key if item.record is not None else None
        groups[zlib.crc32(key or b"") % units].append(item)
    return [group for group in groups if group]


def subscribe_events(
    broker: KafkaBroker,
    database: Database,
    subscription: Subscription,
    *,
    service: str,
    group_id: str | None = None,
    offset_reset: Literal["earliest", "latest"] = "earliest",
    max_attempts: int = 5,
    max_records: int = 500,
    batch_timeout_ms: int = 20,
    units_in_flight: int = 1,
) -> LogicSubscriber[Any]:
    """Consume the subscription's topics in batches with one consumer in the service's
    consumer group (one consumer: one group join, no rebalance storm).

    A batch is what Kafka has, up to `max_records`, waiting at most `batch_timeout_ms` when
    nothing is there; records of one partition stay in order. Its events are applied in one
    unit of work (_apply) and the offsets are committed after that commit. When the batch
    fails, its events are applied one at a time with today's rules: each is retried
    `max_attempts` times with backoff, then moved to `<topic>.dlt` with the reason, so a
    poison event costs only itself. When a dependency is down nothing is dead-lettered: the
    batch is redelivered (from its first record per partition) until it works; events
    committed meanwhile are skipped by their claim. Types without a change are skipped after
    a look at the envelope's type only (envelope_type); the others are parsed once, envelope
    and payload (Envelope.parsed keeps the typed payload for the change). A tombstone (null
    value) on a topic with a TombstoneChange is applied in order with the events.

    A large batch (a backlog, a burst) is applied as up to `units_in_flight` units of work side
    by side, split by key (split_by_key), each on its own connection and with the rules above
    on its own; the offsets are committed when all of them are done. A unit mostly waits for
    PostgreSQL, and the other one computes meanwhile.
    Returns the subscriber, whose aiokafka consumer report_consumer_lag reads.
    """
    changes, tombstones, prepare = subscription.changes, subscription.tombstones, subscription.prepare
    subscriber = broker.subscriber(
        *subscription.topics,
        group_id=group_id or service,
        auto_offset_reset=offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        fetch_min_bytes=FETCH_MIN_BYTES,
        title=f"{service}-events",
        decoder=_records_only,
    )

    async def read(record: ConsumerRecord[bytes, bytes], outcomes: Counter[tuple[str, str, str]]) -> _Item | None:
        topic = record.topic
        if record.value is None and topic in tombstones:
            if record.key is None:
                outcomes[topic, "tombstone", "ignored"] += 1
                return None
            return _Item(record, None, tombstone=tombstones[topic], key=record.key.decode())
        value = record.value or b""
        try:
            kind = envelope_type(value)
        except ValidationError as error:
            await _dead_letter(broker, record, service, "invalid", f"not a valid envelope: {dead_letter_reason(error)}")
            return None
        change = changes.get(topic, {}).get(kind)
        if change is None:
            outcomes[topic, kind, "ignored"] += 1
            return None
        try:
            envelope = Envelope.model_validate_json(value)
        except ValidationError as error:
            await _dead_letter(broker, record, service, kind, f"not a valid envelope: {dead_letter_reason(error)}")
            return None
        if envelope.type != kind:  # a key given twice: JSON's last one counts
            change = changes.get(topic, {}).get(envelope.type)
            if change is None:
                outcomes[topic, envelope.type, "ignored"] += 1
                return None
            kind = envelope.type
        try:
            payload = envelope.parsed()
        except (ValidationError, UnknownEventError) as error:
            # The envelope is sound; its payload breaks the contract of its type and version.
            await _dead_letter(broker, record, service, kind, dead_letter_reason(error))
            return None
        return _Item(record, envelope, payload, change)

    async def apply_alone(item: _Item, outcomes: Counter[tuple[str, str, str]]) -> None:
        assert item.record is not None
        topic = item.record.topic
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(1 if item.envelope is None else max_attempts),
                wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
                retry=retry_if_not_exception_type((ValidationError, UnknownEventError)),
                reraise=True,
            ):
                with attempt:
                    await _apply(database, [item], prepare)
        except Exception as error:
            # A tombstone has nothing to dead-letter, and an erasure must not be skipped: redeliver.
            if item.envelope is None or _is_transient(error):
                outcomes[topic, item.type, "retry_later"] += 1
                log.warning(
                    "dependency unavailable; event will be redelivered",
                    topic=topic,
                    event_type=item.type,
                    event_id=str(item.envelope.event_id) if item.envelope is not None else None,
                    error=type(error).__name__,
                )
                await asyncio.sleep(1.0)  # the redelivery comes at once; do not spin
                raise
            await _dead_letter(broker, item.record, service, item.type, dead_letter_reason(error))
            return
        outcomes[topic, item.type, "ok"] += 1

    def topic_of(item: _Item) -> str:
        assert item.record is not None
        return str(item.record.topic)

    async def apply_unit(items: Sequence[_Item], outcomes: Counter[tuple[str, str, str]]) -> None:
        try:
            await _apply(database, items, prepare)
        except Exception as error:
            if _is_transient(error):
                for item in items:
                    outcomes[topic_of(item), item.type, "retry_later"] += 1
                log.warning(
                    "dependency unavailable; batch will be redelivered",
                    events=len(items),
                    error=type(error).__name__,
                )
                await asyncio.sleep(1.0)
                raise
            log.warning(
                "batch failed; applying its events one at a time", events=len(items), error=type(error).__name__
            )
            for item in items:
                await apply_alone(item, outcomes)
            return
        for item in items:
            outcomes[topic_of(item), item.type, "ok"] += 1

    @subscriber
    async def on_batch(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)  # a list on FastStream's test broker
        outcomes: Counter[tuple[str, str, str]] = Counter()
        try:
            items = [item for record in records if (item := await read(record, outcomes)) is not None]
            if not items:
                return
            units = split_by_key(items, units_in_flight)
            if len(units) == 1:
                await apply_unit(units[0], outcomes)
                return
            # Every unit runs to its end (committed, or failed after its own tries) before the
            # batch's offsets are committed or it is redelivered; a unit committed meanwhile is
            # skipped by its events' claims the next time.
            results = await asyncio.gather(*(apply_unit(unit, outcomes) for unit in units), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            for (topic, kind, outcome), count in outcomes.items():
                EVENTS_HANDLED.labels(service, topic, kind, outcome).inc(count)

    return subscriber


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """For each partition assigned to this consumer: records not yet handled by its group,
    the partition's end offset minus the group's committed offset (the start of the
    partition when the group has committed nothing there yet)."""
    assigned = sorted(consumer.assignment())
    if not assigned:
        return {}
    ends = await consumer.end_offsets(assigned)
    lags = {}
    for tp in assigned:
        committed = await consumer.committed(tp)
        if committed is None:
            committed = (await consumer.beginning_offsets([tp]))[tp]
        lags[tp] = max(0, ends[tp] - committed)
    return lags


async def report_consumer_lag(
    subscriber: LogicSubscriber[Any], *, service: str, group: str, interval_s: float = 5.0
) -> None:
    """Keep meer_consumer_lag{service, group, topic, partition} up to date for the partitions
    this process consumes; partitions that moved to another replica are no longer reported."""
    reported: set[TopicPartition] = set()
    while True:
        await asyncio.sleep(interval_s)
        consumer = getattr(subscriber, "consumer", None)
        try:
            lags = await consumer_lag(consumer) if isinstance(consumer, AIOKafkaConsumer) else {}
        except Exception as error:  # noqa: BLE001 - Kafka away or rebalancing: keep the last figures
            log.debug("consumer lag not measured", error=type(error).__name__)
            continue
        for tp in reported - lags.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(service, group, tp.topic, str(tp.partition))
        for tp, lag in lags.items():
            CONSUMER_LAG.labels(service, group, tp.topic, str(tp.partition)).set(lag)
        reported = set(lags)


def dead_letter_reason(error: BaseException) -> str:
    """Why an event was dead-lettered: the error's type and, for a validation error, where and
    which rule; never a value (pydantic's input_value and most messages quote the payload)."""
    if isinstance(error, ValidationError):
        places = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '(root)'} {issue['type']}"
            for issue in error.errors(include_url=False, include_context=False, include_input=False)
        )
        return f"ValidationError: {error.error_count()} errors: {places}"[:500]
    if isinstance(error, UnknownEventError):  # names only the event type and version
        return f"UnknownEventError: {error}"[:500]
    return type(error).__name__


async def _dead_letter(
    broker: KafkaBroker, record: ConsumerRecord[bytes, bytes], service: str, event_type: str, reason: str
) -> None:
    topic = record.topic
    await broker.publish(
        record.value,
        Topic.dead_letter(topic),
        key=record.key,
        headers={
            "dlt-reason": reason,
            "dlt-consumer": service,
            "dlt-topic": topic,
            "dlt-partition": str(record.partition),
            "dlt-offset": str(record.offset),
        },
    )
    EVENTS_DEAD_LETTERED.labels(service, topic).inc()
    EVENTS_HANDLED.labels(service, topic, event_type, "dead_lettered").inc()
    # The reason may quote the payload's structure but never its values' meaning; ids only.
    log.error(
        "event moved to dead-letter topic",
        topic=topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason.split(":")[0],
    )
