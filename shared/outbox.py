"""The transactional outbox: events are written in the same transaction as the state
change that caused them, and a relay publishes them to Kafka afterwards.

Nothing committed is lost while Kafka is down (rows wait), and nothing rolled back is
ever published. Published rows are deleted, so personal data in event payloads does not
pile up in a second place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from faststream.security import BaseSecurity
from sqlalchemy import BigInteger, Column, LargeBinary, text
from sqlmodel import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import POSTGRES_UNREACHABLE, Database, DedicatedConnection, SharedTable, utcnow
from shared.events import Envelope
from shared.kafka import create_producer
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = get_logger(__name__)

# Only one relay per database publishes at a time, so events of one key leave in the
# order they were committed even with several replicas of a service.
_RELAY_LOCK_ID = 0x6D656572
_TRY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock($1)"
_PENDING_SQL = "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT $1"
_DELETE_SQL = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"


class OutboxMessage(SharedTable, table=True):
    """An event committed by this service and not yet acknowledged by Kafka."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    event_id: str = Field(unique=True, max_length=36)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=100)
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


def outbox_row(envelope: Envelope) -> OutboxMessage:
    """The outbox row of an event, for a session."""
    event_id, topic, key, value = _encoded(envelope)
    return OutboxMessage(event_id=event_id, topic=topic, key=key, value=value)


def _encoded(envelope: Envelope) -> tuple[str, str, str, bytes]:
    """event_id, topic, key and value of an event's outbox row: the one place an event is
    encoded for the relay."""
    return str(envelope.event_id), envelope.topic, envelope.key.decode(), envelope.model_dump_json().encode()


def outbox_values(envelope: Envelope) -> tuple[str, str, str, bytes]:
    """event_id, topic, key and value of an event's outbox row, for a writer that inserts the
    rows in a statement of its own (enrolment's API batches: participants and events together)."""
    return _encoded(envelope)


def add_to_outbox(session: AsyncSession, envelope: Envelope) -> None:
    """Stage an event in the caller's transaction; it is published after the commit."""
    session.add(outbox_row(envelope))
    session.info["wrote_outbox"] = True


_INSERT_MANY = text("""
INSERT INTO outbox (event_id, topic, key, value, created_at)
SELECT e.event_id, e.topic, e.key, e.value, :now
  FROM unnest(CAST(:event_ids AS text[]), CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:values AS bytea[]))
    WITH ORDINALITY AS e(event_id, topic, key, value, n)
 ORDER BY e.n
""")


async def add_many_to_outbox(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """add_to_outbox for many events at once: one statement, no ORM object per row, in their
    order (the relay publishes in id order)."""
    if not envelopes:
        return
    rows = [_encoded(envelope) for envelope in envelopes]
    await session.execute(
        _INSERT_MANY,
        {
            "event_ids": [row[0] for row in rows],
            "topics": [row[1] for row in rows],
            "keys": [row[2] for row in rows],
            "values": [row[3] for row in rows],
            "now": utcnow(),
        },
    )
    session.info["wrote_outbox"] = True


def add_tombstone_to_outbox(session: AsyncSession, topic: str, key: str) -> None:
    """Stage a tombstone (the key with a null value) for a compacted topic: after compaction,
    nothing of that key is left. In the outbox it is the one row with an empty value."""
    session.add(OutboxMessage(event_id=str(uuid4()), topic=topic, key=key, value=b""))
    session.info["wrote_outbox"] = True


_RAW_INSERT_SQL = "INSERT INTO outbox (event_id, topic, key, value, created_at) VALUES ($1, $2, $3, $4, $5)"


async def add_to_outbox_raw(connection: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """add_to_outbox for a hot loop on a plain asyncpg connection (in the caller's transaction);
    the same rows, encoded the same way (without an ORM object per row). The caller wakes the
    relay after its commit."""
    now = utcnow()
    await connection.executemany(_RAW_INSERT_SQL, [(*_encoded(envelope), now) for envelope in envelopes])


class OutboxRelay:
    """Publishes outbox rows to Kafka in commit order and deletes them once acknowledged.

    The relay carries every event a service emits (thousands a second for tracking's
    pixel), so it keeps one asyncpg connection and one plain aiokafka producer of its own:
    no ORM, no pool checkout and no framework publish pipeline per event.
    """

    def __init__(
        self,
        database: Database,
        kafka_bootstrap: str,
        *,
        service: str,
        batch_size: int = 1000,
        poll_interval_s: float = 0.25,
        security: BaseSecurity | None = None,
    ) -> None:
        self.connection = DedicatedConnection(database.url)
        self.kafka_bootstrap = kafka_bootstrap
        self.service = service
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.security = security
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        database.on_commit(self.wake)

    def wake(self) -> None:
        """Publish soon: call after committing outbox rows outside a session of `database`."""
        self._wake.set()

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = create_producer(
                self.kafka_bootstrap, client_id=f"meer-{self.service}-relay", security=self.security
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        await self.connection.close()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        connection = await self.connection.get()
        async with connection.transaction():
            if not await connection.fetchval(_TRY_LOCK_SQL, _RELAY_LOCK_ID):
                return 0
            rows = await connection.fetch(_PENDING_SQL, self.batch_size)
            if not rows:
                return 0
            producer = await self._started_producer()
            # Send the whole batch, then wait: the idempotent producer keeps per-partition order.
            # An empty value is a tombstone (no envelope is empty): Kafka gets a null value.
            sent = [await producer.send(row["topic"], row["value"] or None, key=row["key"].encode()) for row in rows]
            await asyncio.gather(*sent)
            await connection.execute(_DELETE_SQL, [row["id"] for row in rows])
        OUTBOX_PUBLISHED.labels(service=self.service).inc(len(rows))
        return len(rows)

    async def backlog(self) -> int:
        connection = await self.connection.get()
        return int(await connection.fetchval("SELECT count(*) FROM outbox"))

    async def run(self) -> None:
        """Publish until cancelled; a Kafka or database outage only delays publishing."""
        try:
            await self._run()
        finally:
            await self.close()

    async def _run(self) -> None:
        failures = 0
        backlog_measured_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                published = await self.publish_pending()
                if loop.time() - backlog_measured_at > 1.0:
                    OUTBOX_BACKLOG.labels(service=self.service).set(await self.backlog())
                    backlog_measured_at = loop.time()
                failures = 0
            except Exception as error:  # noqa: BLE001
                # The rows stay in the outbox; publish them when the dependency is back.
                failures += 1
                published = 0
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("outbox relay cannot publish yet", error=type(error).__name__, attempts=failures)
                if isinstance(error, POSTGRES_UNREACHABLE):
                    await self.connection.close()  # a lost connection is opened again next time
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            if published == self.batch_size:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
