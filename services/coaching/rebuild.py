"""Rebuild the projection from the topics, from the beginning, with the live handlers' own
`on_<event>` functions. The compacted meer.contact gives names and phones as they are now
(an erased person: a tombstone, or nothing once compacted), so the rebuild shows them too.

How: read every partition of the projected topics with a plain consumer (no group, so the
live consumer's offsets stay as they are) and fold the events in memory through the same
appliers the live consumer uses (an in-memory ProjectionStore). Then, in ONE transaction:
lock processed_events and the projection tables (the live consumer and dashboards wait for the
write: 256 s for a history of 10.7 million events, most of them opens), read the events that
arrived meanwhile, truncate the projection tables and processed_events, write the new rows with
COPY in bounded chunks, and commit. What coaches wrote
(call_log, planned_call_move, plan_version) is never deleted; only erased participants'
text in it is blanked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import BaseSecurity
from pydantic import ValidationError
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.handlers import APPLIERS, TOMBSTONE_APPLIERS
from services.coaching.memory_store import MemoryProjectionStore
from services.coaching.storage import erase_authored_data
from services.coaching.tables import (
    PROJECTION_TABLES,
    CoachingTable,
)
from shared.db import Database, ProcessedEvent, utcnow
from shared.events import Envelope
from shared.kafka import client_options
from shared.logging import get_logger

log = get_logger(__name__)

RowT = TypeVar("RowT", bound=CoachingTable)
TOPICS: tuple[str, ...] = tuple(APPLIERS)
LOCK_TIMEOUT = "60s"
TABLE_NAMES: tuple[str, ...] = (
    str(ProcessedEvent.__tablename__),
    *(str(table.__tablename__) for table in PROJECTION_TABLES),
)
"""processed_events first: every handler touches it first, so nobody holds a table we wait for."""
ROWS_PER_STATEMENT = 50_000
"""A year's history holds millions of opens: one COPY of a whole table then outlasted the pool's
30 s command timeout. Chunks keep every statement of the write short however long the history."""


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items, in order."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class CopyConnection(Protocol):
    async def copy_records_to_table(self, table_name: str, *, records: Iterable[Any], columns: list[str]) -> str: ...


async def copy_in_chunks(
    connection: CopyConnection, table: str, columns: list[str], records: Iterable[tuple[Any, ...]]
) -> int:
    """COPY `records` into `table`, ROWS_PER_STATEMENT at a time; how many rows were written."""
    written = 0
    for chunk in chunked(records, ROWS_PER_STATEMENT):
        await connection.copy_records_to_table(table, records=chunk, columns=columns)
        written += len(chunk)
    return written


@dataclass
class RebuildResult:
    """What a rebuild did."""

    events_read: int = 0
    events_applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    invalid: int = 0
    failed: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    read_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.read_seconds + self.write_seconds

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds else 0.0


class Rebuild:
    """One rebuild run: fold the topics in memory, then swap the projection in one transaction."""

    def __init__(
        self,
        database: Database,
        bootstrap: str,
        *,
        progress: Callable[[int], None] | None = None,
        security: BaseSecurity | None = None,
    ) -> None:
        self.database = database
        self.bootstrap = bootstrap
        self.security = client_options(security)
        self.progress = progress or (lambda _: None)
        self.store = MemoryProjectionStore()
        self.result = RebuildResult()
        self._total = 0

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **self.security)
        await admin.start()
        try:
            described = await admin.describe_topics(list(TOPICS))
        finally:
            await admin.close()
        return sorted(
            (TopicPartition(topic["topic"], p["partition"]) for topic in described for p in topic["partitions"]),
            key=lambda tp: (TOPICS.index(tp.topic), tp.partition),
        )

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        result = self.result
        result.events_read += 1
        if record.value is None and record.topic in TOMBSTONE_APPLIERS and record.key is not None:
            # A tombstone that compaction has not removed yet: the person's details go.
            await TOMBSTONE_APPLIERS[record.topic](self.store, record.key.decode())
            result.events_applied += 1
            return
        try:
            envelope = Envelope.model_validate_json(record.value or b"")
        except ValidationError:
            result.invalid += 1  # the live consumer dead-letters these: no effect either
            return
        apply = APPLIERS.get(record.topic, {}).get(envelope.type)
        if apply is None:
            result.ignored += 1
            return
        if not self.store.claim(envelope.event_id):
            result.duplicates += 1
            return
        try:
            await apply(self.store, envelope)
        except Exception:  # noqa: BLE001 - the live consumer dead-letters these too
            # Appliers parse before they change anything, so a bad event leaves no trace.
            self.store.unclaim(envelope.event_id)
            result.failed += 1
            return
        result.events_applied += 1

    async def _read_until(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], end: dict[TopicPartition, int]
    ) -> None:
        pending = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
            for records in batches.values():
                for record in records:
                    await self._apply(record)
                self.progress(len(records))
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]

    async def run(self, on_total: Callable[[int], None] | None = None) -> RebuildResult:
        """Read everything, then write the new projection in one transaction."""
        partitions = await self._partitions()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            **self.security,
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            beginning = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            self._total = sum(end[tp] - beginning[tp] for tp in partitions)
            if on_total:
                on_total(self._total)
            started = time.perf_counter()
            await self._read_until(consumer, partitions, end)
            self.result.read_seconds = time.perf_counter() - started
            started = time.perf_counter()
            async with self.database.session() as session:
                await self._lock(session)
                # Whatever the live consumer committed before we held the lock is on the topics now.
                caught_up = await consumer.end_offsets(partitions)
                if on_total:
                    on_total(sum(caught_up[tp] - beginning[tp] for tp in partitions))
                await self._read_until(consumer, partitions, caught_up)
                await self._write(session)
                await session.commit()
            self.result.write_seconds = time.perf_counter() - started
        finally:
            await consumer.stop()
        log.info(
            "projection rebuilt",
            events=self.result.events_read,
            applied=self.result.events_applied,
            invalid=self.result.invalid,
            failed=self.result.failed,
            seconds=round(self.result.seconds, 2),
        )
        return self.result

    async def _lock(self, session: AsyncSession) -> None:
        await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        names = ", ".join(TABLE_NAMES)
        await session.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))

    async def _write(self, session: AsyncSession) -> None:
        # processed_events also holds the claims of topics the rebuild does not replay (the
        # subject-access exports of meer.export): only the projected tables are emptied, and
        # only the claims the rebuild makes again are replaced.
        projected = ", ".join(str(table.__tablename__) for table in PROJECTION_TABLES)
        await session.execute(text(f"TRUNCATE {projected}"))
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        for claims in chunked(self.store.claimed, ROWS_PER_STATEMENT):
            await raw.execute("DELETE FROM processed_events WHERE event_id = ANY($1::uuid[])", claims)
        for table, rows in self.store.tables.items():
            columns = [column.name for column in table.__table__.columns]  # type: ignore[attr-defined]
            records = (tuple(getattr(row, name) for name in columns) for row in rows.values())
            written = await copy_in_chunks(raw, str(table.__tablename__), columns, records)
            self.result.rows[str(table.__tablename__)] = written
        now = utcnow()
        await copy_in_chunks(
            raw,
            str(ProcessedEvent.__tablename__),
            ["event_id", "processed_at"],
            ((event_id, now) for event_id in self.store.claimed),
        )
        await erase_authored_data(session, sorted(self.store.erased))
