"""Kafka plumbing: the broker factory, topic creation, and the one way every service
consumes events (idempotent handlers, bounded retries, then a dead-letter topic)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.security import parse_security
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential_jitter

from shared.db import Database, claim_event
from shared.events import Envelope, Topic, UnknownEventError
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, EVENTS_DEAD_LETTERED, EVENTS_HANDLED
from shared.settings import KafkaClientSettings

log = get_logger(__name__)

EventHandler = Callable[[Envelope], Awaitable[None]]
"""Handles one event in its own unit of work; must be idempotent by event_id."""

TombstoneHandler = Callable[[str], Awaitable[None]]
"""Handles a tombstone (a record with a null value) on a compacted topic, given its key;
deletes what the service keeps for that key (idempotent by nature)."""

Change = Callable[[AsyncSession, Envelope, Any], Awaitable[None]]
"""What one event does to a service's database: (session, envelope, typed payload)."""


def once_per_event(database: Database, change: Change, *, after: Callable[[], None] | None = None) -> EventHandler:
    """An EventHandler that runs `change` in one transaction, at most once per event id
    (the processed-event row commits with the change); `after` runs after the commit."""

    async def handle(envelope: Envelope) -> None:
        payload = envelope.parsed()
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            await change(session, envelope, payload)
            await session.commit()
        if after is not None:
            after()

    return handle


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
        bootstrap,
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
    bootstrap: str, topics: tuple[str, ...], *, partitions: int, security: BaseSecurity | None = None
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
                            name, num_partitions=partitions, replication_factor=1, topic_configs=topic_config(name)
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
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OSError, ConnectionError, TimeoutError, TransientError))


def subscribe_events(
    broker: KafkaBroker,
    handlers: Mapping[str, Mapping[str, EventHandler]],
    *,
    service: str,
    group_id: str | None = None,
    offset_reset: Literal["earliest", "latest"] = "earliest",
    max_attempts: int = 5,
    tombstones: Mapping[str, TombstoneHandler] | None = None,
) -> LogicSubscriber[Any]:
    """Consume the topics in `handlers` ({topic: {event type: handler}}) with one consumer
    in the service's consumer group (one consumer: one group join, no rebalance storm).

    The offset is committed only after the handler returned, so after its database
    commit. A failing event is retried `max_attempts` times with backoff, then moved to
    `<topic>.dlt` with the reason, so one bad event never blocks the others. When a
    dependency is down the event is not dead-lettered: it is redelivered until it works.
    Types without a handler are acknowledged and skipped (newer producers, other readers).
    A tombstone (null value) on a topic in `tombstones` goes to that topic's handler with its key.
    Returns the subscriber, whose aiokafka consumer report_consumer_lag reads.
    """
    tombstone_handlers = dict(tombstones or {})
    topics = list(dict.fromkeys([*handlers, *tombstone_handlers]))
    subscriber = broker.subscriber(
        *topics,
        group_id=group_id or service,
        auto_offset_reset=offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=f"{service}-events",
    )

    @subscriber
    async def on_event(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        topic = record.topic
        if record.value is None and topic in tombstone_handlers:
            await _handle_tombstone(tombstone_handlers[topic], record.key, service=service, topic=topic)
            return
        try:
            envelope = Envelope.model_validate_json(message.body)
        except ValidationError as error:
            reason = f"not a valid envelope: {dead_letter_reason(error)}"
            await _dead_letter(broker, message, service, "invalid", reason)
            return
        handler = handlers.get(topic, {}).get(envelope.type)
        if handler is None:
            EVENTS_HANDLED.labels(service, topic, envelope.type, "ignored").inc()
            return
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(max_attempts),
                wait=wait_exponential_jitter(initial=0.05, max=2.0),
                retry=retry_if_not_exception_type((ValidationError, UnknownEventError)),
                reraise=True,
            ):
                with attempt:
                    await handler(envelope)
        except Exception as error:
            if _is_transient(error):
                EVENTS_HANDLED.labels(service, topic, envelope.type, "retry_later").inc()
                log.warning(
                    "dependency unavailable; event will be redelivered",
                    event_type=envelope.type,
                    event_id=str(envelope.event_id),
                    error=type(error).__name__,
                )
                await asyncio.sleep(1.0)  # the redelivery comes at once; do not spin
                raise
            await _dead_letter(broker, message, service, envelope.type, dead_letter_reason(error))
            return
        EVENTS_HANDLED.labels(service, topic, envelope.type, "ok").inc()

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


async def _handle_tombstone(handler: TombstoneHandler, key: bytes | None, *, service: str, topic: str) -> None:
    if key is None:
        EVENTS_HANDLED.labels(service, topic, "tombstone", "ignored").inc()
        return
    try:
        await handler(key.decode())
    except Exception as error:
        # Nothing to dead-letter (no value); an erasure must not be skipped: redeliver.
        EVENTS_HANDLED.labels(service, topic, "tombstone", "retry_later").inc()
        log.warning("tombstone not handled yet; will be redelivered", topic=topic, error=type(error).__name__)
        await asyncio.sleep(1.0)
        raise
    EVENTS_HANDLED.labels(service, topic, "tombstone", "ok").inc()


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


async def _dead_letter(broker: KafkaBroker, message: KafkaMessage, service: str, event_type: str, reason: str) -> None:
    record = message.raw_message
    assert not isinstance(record, tuple)
    topic = record.topic
    await broker.publish(
        message.body,
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
