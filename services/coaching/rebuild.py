"""Rebuild the projection from the topics, from the beginning, with the live handlers' own
`on_<event>` functions. The compacted meer.contact gives names and phones as they are now
(an erased person: a tombstone, or nothing once compacted), so the rebuild shows them too.

How: read every partition of the projected topics with a plain consumer (no group, so the
live consumer's offsets stay as they are) and fold the events in memory through the same
appliers the live consumer uses (an in-memory ProjectionStore). Then, in ONE transaction:
lock processed_events and the projection tables (the live consumer waits; dashboards wait
only for the short write), read the events that arrived meanwhile, truncate the projection
tables and processed_events, write the new rows with COPY, and commit. What coaches wrote
(call_log, planned_call_move, plan_version) is never deleted; only erased participants'
text in it is blanked again.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import BaseSecurity
from pydantic import ValidationError
from pydantic_core import PydanticUndefined
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.handlers import APPLIERS, TOMBSTONE_APPLIERS
from services.coaching.storage import erase_authored_data
from services.coaching.tables import (
    PROJECTION_TABLES,
    CallSeen,
    CoachingTable,
    CoachView,
    DashboardRow,
    MailSeen,
    OrganisationView,
    QuestionnaireAnswerSeen,
    ReportSeen,
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


def record_class(table: type[CoachingTable]) -> type:
    """A plain slotted class with the table's columns and defaults.

    The appliers only read and write columns, so in memory they can work on these records
    instead of ORM instances (whose instrumented construction and attribute writes cost
    more than the rules themselves); the records are written with COPY.
    """
    fields: list[tuple[str, Any, Any]] = []
    for name, info in table.model_fields.items():
        if info.default_factory is not None:
            fields.append((name, Any, field(default_factory=info.default_factory)))  # type: ignore[arg-type]
        elif info.default is PydanticUndefined:
            fields.append((name, Any, field()))
        else:
            fields.append((name, Any, field(default=info.default)))
    return make_dataclass(f"{table.__name__}Record", fields, slots=True, kw_only=True)


class MemoryProjectionStore:
    """The projection store in memory: every table a dict by primary key, rows as plain records."""

    def __init__(self) -> None:
        self.tables: dict[type[CoachingTable], dict[Any, Any]] = {table: {} for table in PROJECTION_TABLES}
        self._records = {table: record_class(table) for table in PROJECTION_TABLES}
        self._keys = {table: [c.name for c in table.__table__.primary_key.columns] for table in PROJECTION_TABLES}  # type: ignore[attr-defined]
        self._children: dict[type[CoachingTable], defaultdict[UUID, list[Any]]] = {
            table: defaultdict(list) for table in (ReportSeen, CallSeen)
        }
        self.claimed: dict[UUID, None] = {}
        self.erased: set[UUID] = set()

    def claim(self, event_id: UUID) -> bool:
        """False if the event was applied before (a redelivery on the topic)."""
        if event_id in self.claimed:
            return False
        self.claimed[event_id] = None
        return True

    def unclaim(self, event_id: UUID) -> None:
        self.claimed.pop(event_id, None)

    def add(self, table: type[RowT], **values: Any) -> RowT:
        row = self._records[table](**values)
        names = self._keys[table]
        key = values[names[0]] if len(names) == 1 else tuple(values[name] for name in names)
        self.tables[table][key] = row
        if table in self._children:
            self._children[table][values["participant_id"]].append(row)
        return cast(RowT, row)

    async def participant(self, participant_id: UUID, org_id: UUID, *, at: datetime) -> DashboardRow:
        found = self.tables[DashboardRow].get(participant_id)
        if found is None:
            return self.add(DashboardRow, participant_id=participant_id, org_id=org_id, updated_at=at)
        return cast(DashboardRow, found)

    async def mail(self, delivery_id: UUID, participant_id: UUID, day: int) -> MailSeen:
        found = self.tables[MailSeen].get(delivery_id)
        if found is None:
            return self.add(MailSeen, delivery_id=delivery_id, participant_id=participant_id, day=day)
        return cast(MailSeen, found)

    async def report(self, participant_id: UUID, day: int) -> ReportSeen | None:
        return cast(ReportSeen | None, self.tables[ReportSeen].get((participant_id, day)))

    async def reports(self, participant_id: UUID) -> list[ReportSeen]:
        return self._children[ReportSeen][participant_id]

    async def calls(self, participant_id: UUID) -> list[CallSeen]:
        return self._children[CallSeen][participant_id]

    async def organisation(self, org_id: UUID) -> OrganisationView:
        found = self.tables[OrganisationView].get(org_id)
        if found is None:
            return self.add(OrganisationView, org_id=org_id)
        return cast(OrganisationView, found)

    async def coach(self, coach_id: UUID, org_id: UUID) -> CoachView:
        found = self.tables[CoachView].get(coach_id)
        if found is None:
            return self.add(CoachView, coach_id=coach_id, org_id=org_id)
        return cast(CoachView, found)

    async def erase_authored(self, participant_id: UUID) -> None:
        self.erased.add(participant_id)

    async def questionnaire_answer(self, participant_id: UUID, moment: str) -> QuestionnaireAnswerSeen | None:
        return cast(QuestionnaireAnswerSeen | None, self.tables[QuestionnaireAnswerSeen].get((participant_id, moment)))

    async def erase_questionnaire_answers(self, participant_id: UUID) -> None:
        answers = self.tables[QuestionnaireAnswerSeen]
        for key in [key for key in answers if key[0] == participant_id]:
            del answers[key]

    async def find(self, table: type[RowT], key: Any) -> RowT | None:
        return cast(RowT | None, self.tables[table].get(key))

    async def remove(self, table: type[RowT], key: Any) -> None:
        self.tables[table].pop(key, None)


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
        await raw.execute("DELETE FROM processed_events WHERE event_id = ANY($1::uuid[])", list(self.store.claimed))
        for table, rows in self.store.tables.items():
            columns = [column.name for column in table.__table__.columns]  # type: ignore[attr-defined]
            records = [tuple(getattr(row, name) for name in columns) for row in rows.values()]
            if records:
                await raw.copy_records_to_table(table.__tablename__, records=records, columns=columns)
            self.result.rows[str(table.__tablename__)] = len(records)
        now = utcnow()
        await raw.copy_records_to_table(
            ProcessedEvent.__tablename__,
            records=[(event_id, now) for event_id in self.store.claimed],
            columns=["event_id", "processed_at"],
        )
        await erase_authored_data(session, sorted(self.store.erased))
