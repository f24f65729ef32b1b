"""The projection store in memory, as plain slotted records: the rebuild folds every topic
into one (MemoryProjectionStore) and the live consumer folds each batch into one
(LiveBatchStore) that loads the rows the batch touches from PostgreSQL first and writes
back only what changed, one statement per table. The appliers (handlers.py) are the same
for both, so a rebuild equals the live projection by construction.
"""

from __future__ import annotations

import operator
from collections import defaultdict, namedtuple
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime
from itertools import compress
from typing import Any, TypeVar, cast
from uuid import UUID

import asyncpg
from pydantic_core import PydanticUndefined

from services.coaching.tables import (
    PROJECTION_TABLES,
    CallSeen,
    CoachingTable,
    CoachView,
    ContactView,
    DashboardRow,
    MailSeen,
    OrganisationView,
    QuestionnaireAnswerSeen,
    ReportSeen,
)
from shared.db import PERSON_LOCKS_SQL, person_lock_keys

RowT = TypeVar("RowT", bound=CoachingTable)


def record_class(table: type[CoachingTable]) -> type:
    """A plain slotted class with the table's columns and defaults.

    The appliers only read and write columns, so in memory they can work on these records
    instead of ORM instances (whose instrumented construction and attribute writes cost
    more than the rules themselves).
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


RECORDS: dict[type[CoachingTable], type] = {table: record_class(table) for table in PROJECTION_TABLES}
KEYS: dict[type[CoachingTable], tuple[str, ...]] = {
    table: tuple(c.name for c in table.__table__.primary_key.columns)  # type: ignore[attr-defined]
    for table in PROJECTION_TABLES
}
COLUMNS: dict[type[CoachingTable], tuple[str, ...]] = {
    table: tuple(c.name for c in table.__table__.columns)  # type: ignore[attr-defined]
    for table in PROJECTION_TABLES
}
KEY_POSITIONS: dict[type[CoachingTable], tuple[int, ...]] = {
    table: tuple(COLUMNS[table].index(name) for name in KEYS[table]) for table in PROJECTION_TABLES
}
"""Where the primary key's columns are in COLUMNS order."""
VALUES: dict[type[CoachingTable], Callable[[Any], tuple[Any, ...]]] = {
    table: operator.attrgetter(*COLUMNS[table]) for table in PROJECTION_TABLES
}
"""A record's values in COLUMNS order (every table has several columns, so always a tuple)."""
BEFORE: dict[type[CoachingTable], Callable[[tuple[Any, ...]], Any]] = {
    table: namedtuple(f"{table.__name__}Before", COLUMNS[table])._make  # type: ignore[attr-defined]
    for table in PROJECTION_TABLES
}
"""A row's values as read, with the columns as attributes (what LiveBatchStore._note reads of them)."""
NOTED: frozenset[type[CoachingTable]] = frozenset({DashboardRow, MailSeen, CallSeen, ReportSeen})
"""The tables whose rows are inputs of the call plan or the published alerts."""
IN_ORDER = operator.attrgetter("int")
"""Sorts uuids as PostgreSQL does (by their bytes), without a Python comparison per pair."""
PER_PARTICIPANT: tuple[type[CoachingTable], ...] = (ReportSeen, CallSeen, QuestionnaireAnswerSeen)
"""Tables read a participant at a time (all their reports, calls or answers at once)."""


def key_of(table: type[CoachingTable], values: Any) -> Any:
    """The primary key of a row (a record, or a mapping of its columns): a value, or a tuple."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: getattr(values, name)
    names = KEYS[table]
    return get(names[0]) if len(names) == 1 else tuple(get(name) for name in names)


class MemoryProjectionStore:
    """The projection store in memory: every table a dict by primary key, rows as plain records."""

    def __init__(self) -> None:
        self.tables: dict[type[CoachingTable], dict[Any, Any]] = {table: {} for table in PROJECTION_TABLES}
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
        row = RECORDS[table](**values)
        self.tables[table][key_of(table, values)] = row
        if table in self._children:
            self._children[table][values["participant_id"]].append(row)
        return cast(RowT, row)

    async def _get(self, table: type[CoachingTable], key: Any) -> Any | None:
        return self.tables[table].get(key)

    async def _get_or_add(self, table: type[RowT], key: Any, **values: Any) -> RowT:
        found = await self._get(table, key)
        return cast(RowT, found) if found is not None else self.add(table, **values)

    async def participant(self, participant_id: UUID, org_id: UUID, *, at: datetime) -> DashboardRow:
        return await self._get_or_add(
            DashboardRow, participant_id, participant_id=participant_id, org_id=org_id, updated_at=at
        )

    async def mail(self, delivery_id: UUID, participant_id: UUID, day: int) -> MailSeen:
        return await self._get_or_add(
            MailSeen, delivery_id, delivery_id=delivery_id, participant_id=participant_id, day=day
        )

    async def report(self, participant_id: UUID, day: int) -> ReportSeen | None:
        return cast(ReportSeen | None, await self._get(ReportSeen, (participant_id, day)))

    async def reports(self, participant_id: UUID) -> list[ReportSeen]:
        await self._load_participant(ReportSeen, participant_id)
        return self._children[ReportSeen][participant_id]

    async def calls(self, participant_id: UUID) -> list[CallSeen]:
        await self._load_participant(CallSeen, participant_id)
        return self._children[CallSeen][participant_id]

    async def _load_participant(self, table: type[CoachingTable], participant_id: UUID) -> None:
        """In memory everything is there already; the live store reads the database here."""

    async def organisation(self, org_id: UUID) -> OrganisationView:
        return await self._get_or_add(OrganisationView, org_id, org_id=org_id)

    async def coach(self, coach_id: UUID, org_id: UUID) -> CoachView:
        return await self._get_or_add(CoachView, coach_id, coach_id=coach_id, org_id=org_id)

    async def erase_authored(self, participant_id: UUID) -> None:
        self.erased.add(participant_id)

    async def questionnaire_answer(self, participant_id: UUID, moment: str) -> QuestionnaireAnswerSeen | None:
        return cast(QuestionnaireAnswerSeen | None, await self._get(QuestionnaireAnswerSeen, (participant_id, moment)))

    async def erase_questionnaire_answers(self, participant_id: UUID) -> None:
        await self._load_participant(QuestionnaireAnswerSeen, participant_id)
        answers = self.tables[QuestionnaireAnswerSeen]
        for key in [key for key in answers if key[0] == participant_id]:
            await self.remove(QuestionnaireAnswerSeen, key)

    async def find(self, table: type[RowT], key: Any) -> RowT | None:
        return cast(RowT | None, await self._get(table, key))

    async def remove(self, table: type[RowT], key: Any) -> None:
        self.tables[table].pop(key, None)


# --- the live consumer's batch -----------------------------------------------------------


@dataclass(frozen=True)
class PlanInputs:
    """What the call plan and the published alerts of one participant are computed from, as
    far as the row tells it (the mails, reports and calls themselves are flagged apart)."""

    plan: tuple[Any, ...]
    alerts: tuple[Any, ...]


def plan_inputs(row: Any) -> PlanInputs:
    """The row's part of the inputs of the call plan and of the alerts (see callplan.py)."""
    return PlanInputs(
        plan=(row.start_date, row.status, row.completed_at, row.programme_completed_at),
        alerts=(row.status, row.last_open_at or row.first_sent_at, failure_unresolved(row)),
    )


def _only_opens(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    """Of the alerts' inputs (PlanInputs.alerts) only the moment without opens differs."""
    return bool(before[0] == after[0] and before[2] == after[2])


def failure_unresolved(row: Any) -> bool:
    """A mail failed and none was sent after it (projection.failure_unresolved, from the row's
    latest moments, which apply_mail_change keeps equal to the mails')."""
    return row.last_failed_at is not None and (row.last_sent_at is None or row.last_sent_at < row.last_failed_at)


@dataclass
class Written:
    """What one batch wrote: rows per table, and whose plan or alerts may have changed."""

    rows: dict[str, int] = field(default_factory=dict)
    plan_changed: set[UUID] = field(default_factory=set)
    alerts_changed: set[UUID] = field(default_factory=set)
    sends: dict[UUID, list[tuple[int, datetime]]] = field(default_factory=dict)
    """Mails sent for the first time (lesson day, sent at), by participant: inputs of the plan
    that can be weighed against the plan told without reading the tables (callplan.sends_keep_plan)."""
    opened: set[UUID] = field(default_factory=set)
    """Participants whose moment without opens changed (callplan.no_open_only)."""


_PG_TYPES: dict[str, dict[str, str]] = {}
"""Column types by table, read once from the catalogue (for the unnest arrays)."""


async def _column_types(connection: asyncpg.Connection, table: str) -> dict[str, str]:
    found = _PG_TYPES.get(table)
    if found is None:
        rows = await connection.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            table,
        )
        found = _PG_TYPES[table] = {row["attname"]: row["type"] for row in rows}
    return found


class LiveBatchStore(MemoryProjectionStore):
    """The projection store of one consumer batch, on the unit of work's connection.

    `load` reads (and locks, in id order) the participants' rows and the batch's mails as
    records in a few queries; other rows are read when an applier first asks. The appliers
    change the records; `write` then inserts the new rows (a plain INSERT: a row someone else
    created meanwhile fails the batch, which is then applied one event at a time) and updates
    the changed ones in the columns they changed, one statement per table.
    """

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__()
        self.connection = connection
        self._before: dict[type[CoachingTable], dict[Any, tuple[Any, ...]]] = {table: {} for table in PROJECTION_TABLES}
        """Rows' values as read from the database, to write back only what changed."""
        self._missing: dict[type[CoachingTable], set[Any]] = {table: set() for table in PROJECTION_TABLES}
        self._removed: dict[type[CoachingTable], set[Any]] = {table: set() for table in PROJECTION_TABLES}
        self._loaded_participants: dict[type[CoachingTable], set[UUID]] = {table: set() for table in PER_PARTICIPANT}

    # --- reading ------------------------------------------------------------------------

    def _keep(self, table: type[CoachingTable], rows: Iterable[asyncpg.Record]) -> None:
        record, stored, before, removed = RECORDS[table], self.tables[table], self._before[table], self._removed[table]
        columns, at = COLUMNS[table], KEY_POSITIONS[table]
        children = self._children.get(table)
        for found in rows:
            values = tuple(found)  # in COLUMNS order, as selected (by position: no lookup by name)
            key = values[at[0]] if len(at) == 1 else tuple(values[i] for i in at)
            if key in stored or key in removed:
                continue  # this batch's own version wins
            row = stored[key] = record(**dict(zip(columns, values, strict=True)))
            before[key] = values
            if children is not None:
                children[row.participant_id].append(row)

    async def _fetch(self, table: type[CoachingTable], column: str, keys: Collection[Any], *, lock: bool) -> None:
        names = ", ".join(COLUMNS[table])
        name = str(table.__tablename__)
        sql = f"SELECT {names} FROM {name} WHERE {column} = ANY($1::uuid[])"  # noqa: S608 - names from our tables
        if lock:
            sql += f" ORDER BY {column} FOR UPDATE"
        self._keep(table, await self.connection.fetch(sql, sorted(keys, key=IN_ORDER)))

    async def lock_people(self, person_ids: Collection[UUID]) -> None:
        """shared.db.lock_people on this connection: a person's dashboard row is made from two
        topics (participant.enrolled or coach.added, and contact.details_set)."""
        keys = person_lock_keys(person_ids)
        if keys:
            await self.connection.execute(PERSON_LOCKS_SQL, keys)

    async def load(
        self,
        *,
        participant_ids: Collection[UUID],
        delivery_ids: Collection[UUID],
        reports: Collection[tuple[UUID, int]],
        contacts: Collection[UUID],
        new_rows: Mapping[UUID, tuple[UUID, datetime]],
    ) -> None:
        """Lock and read the participants' rows (in id order: batches never deadlock on them);
        make the missing rows of `new_rows` (participant: organisation, moment) in one
        statement, with what `participant` makes a row from, and lock them too; then lock and
        read the people's contact details, and read the batch's mails and the reports
        (participant, day) it reports again."""
        if participant_ids:
            await self._fetch(DashboardRow, "participant_id", participant_ids, lock=True)
            rows = self.tables[DashboardRow]
            made = sorted((key for key in new_rows if key not in rows), key=IN_ORDER)
            if made:
                record = RECORDS[DashboardRow]
                fresh = [
                    record(participant_id=key, org_id=new_rows[key][0], updated_at=new_rows[key][1]) for key in made
                ]
                await self._insert(DashboardRow, fresh, if_missing=True)
                await self._fetch(DashboardRow, "participant_id", made, lock=True)
            self._missing[DashboardRow].update(set(participant_ids) - rows.keys())
        if contacts:
            await self._fetch(ContactView, "person_id", contacts, lock=True)
            self._missing[ContactView].update(set(contacts) - self.tables[ContactView].keys())
        if delivery_ids:
            await self._fetch(MailSeen, "delivery_id", delivery_ids, lock=False)
            self._missing[MailSeen].update(set(delivery_ids) - self.tables[MailSeen].keys())
        loaded = self._loaded_participants[ReportSeen]
        wanted = sorted(
            (key for key in set(reports) if key[0] not in loaded and key not in self.tables[ReportSeen]),
            key=lambda key: (key[0].int, key[1]),
        )
        if wanted:
            # Only the days reported: the alerts read the last scores themselves (callplan), so a
            # participant's whole history is read only when an applier asks for it (erasure).
            participants, days = zip(*wanted, strict=True)
            sql = (
                f"SELECT {', '.join(COLUMNS[ReportSeen])} FROM report_seen "  # noqa: S608 - names from our tables
                "WHERE (participant_id, day) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))"
            )
            self._keep(ReportSeen, await self.connection.fetch(sql, list(participants), list(days)))
            self._missing[ReportSeen].update(set(wanted) - self.tables[ReportSeen].keys())

    async def _load_participant(self, table: type[CoachingTable], participant_id: UUID) -> None:
        if participant_id not in self._loaded_participants[table]:
            await self._fetch(table, "participant_id", [participant_id], lock=False)
            self._loaded_participants[table].add(participant_id)

    async def _get(self, table: type[CoachingTable], key: Any) -> Any | None:
        stored = self.tables[table]
        if key in stored:
            return stored[key]
        if key in self._missing[table] or key in self._removed[table]:
            return None
        if isinstance(key, tuple) and table in PER_PARTICIPANT:
            await self._load_participant(table, key[0])
        else:
            # Rows two partitions may change at once are locked, as the participant's row is.
            await self._fetch(table, KEYS[table][0], [key], lock=table is not MailSeen)
        if key not in stored:
            self._missing[table].add(key)
        return stored.get(key)

    async def _get_or_add(self, table: type[RowT], key: Any, **values: Any) -> RowT:
        found = await self._get(table, key)
        if found is not None:
            return cast(RowT, found)
        if table in (DashboardRow, OrganisationView, CoachView):
            # Events of one participant (or organisation) come from several topics, so another
            # transaction may create this row at the same moment: create it empty first and
            # lock it, so the other one waits for us (or we for it, and then read its row).
            await self._insert(table, [RECORDS[table](**values)], if_missing=True)
            self._missing[table].discard(key)
            await self._fetch(table, KEYS[table][0], [key], lock=True)
            return cast(RowT, self.tables[table][key])
        return self.add(table, **values)

    # --- changing ---------------------------------------------------------------------------

    async def remove(self, table: type[RowT], key: Any) -> None:
        found = self.tables[table].pop(key, None)
        if found is not None and table in self._children:
            self._children[table][found.participant_id].remove(found)
        self._removed[table].add(key)

    # --- writing ----------------------------------------------------------------------------

    async def _insert(
        self, table: type[CoachingTable], records: Sequence[Any], *, if_missing: bool = False, update: bool = False
    ) -> None:
        """One INSERT … SELECT FROM unnest(…) of every record, in the table's column order."""
        name = str(table.__tablename__)
        columns = COLUMNS[table]
        types = await _column_types(self.connection, name)
        arrays = ", ".join(f"${i}::{types[column]}[]" for i, column in enumerate(columns, start=1))
        sql = f"INSERT INTO {name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
        if if_missing:
            sql += " ON CONFLICT DO NOTHING"
        elif update:
            keys = KEYS[table]
            changed = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column not in keys)
            sql += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {changed}"
        await self.connection.execute(sql, *(list(map(operator.attrgetter(column), records)) for column in columns))

    async def _write_rows(
        self, table: type[CoachingTable], fresh: Sequence[Any], changed: Sequence[Any], columns: Sequence[str]
    ) -> bool:
        """One statement for the table: the new rows inserted whole (a plain INSERT: a row someone
        else created meanwhile fails the batch) and the changed ones updated in the columns they
        changed (an open changes a few of the dashboard row's 35), with an UPDATE … FROM unnest(…)
        and an INSERT … SELECT FROM unnest(…) in one WITH. False when a changed row was not
        there any more: the caller then writes those whole, over what this wrote (the same values)."""
        keys = KEYS[table]
        names = [*keys, *(column for column in columns if column not in keys)]
        if changed and len(names) == len(keys):
            if fresh:
                await self._insert(table, fresh)
            return False  # only a key changed (appliers never do that): written whole, as ever
        name = str(table.__tablename__)
        types = await _column_types(self.connection, name)
        parts: list[str] = []
        arguments: list[list[Any]] = []
        if changed:
            arrays = ", ".join(f"${i}::{types[column]}[]" for i, column in enumerate(names, start=1))
            assignments = ", ".join(f"{column} = v.{column}" for column in names[len(keys) :])
            matches = " AND ".join(f"t.{key} = v.{key}" for key in keys)
            parts.append(
                f"changed AS (UPDATE {name} AS t SET {assignments} "  # noqa: S608 - names from our tables
                f"FROM unnest({arrays}) AS v ({', '.join(names)}) WHERE {matches} RETURNING 1)"
            )
            arguments += (list(map(operator.attrgetter(column), changed)) for column in names)
        if fresh:
            every = COLUMNS[table]
            start = len(arguments) + 1
            arrays = ", ".join(f"${i}::{types[column]}[]" for i, column in enumerate(every, start=start))
            # Executed whether or not the query reads it (a data-modifying WITH always runs).
            parts.append(f"fresh AS (INSERT INTO {name} ({', '.join(every)}) SELECT * FROM unnest({arrays}))")  # noqa: S608
            arguments += (list(map(operator.attrgetter(column), fresh)) for column in every)
        count = "(SELECT count(*) FROM changed)" if changed else "0"
        updated = await self.connection.fetchval(f"WITH {', '.join(parts)} SELECT {count}", *arguments)
        return bool(updated == len(changed))

    async def write(self) -> Written:
        """Write what the batch changed: deletions first (a row removed and added again is
        written anew after), then the new rows, then the changed ones; and tell whose call
        plan or alerts may have changed."""
        written = Written()
        for table in PROJECTION_TABLES:
            removed = self._removed[table]
            if not removed:
                continue
            name, keys = str(table.__tablename__), KEYS[table]
            if len(keys) == 1:
                await self.connection.execute(f"DELETE FROM {name} WHERE {keys[0]} = ANY($1::uuid[])", list(removed))  # noqa: S608
            else:
                first, second = zip(*removed, strict=True)
                types = await _column_types(self.connection, name)
                await self.connection.execute(
                    f"DELETE FROM {name} WHERE ({keys[0]}, {keys[1]}) IN "  # noqa: S608
                    f"(SELECT * FROM unnest($1::{types[keys[0]]}[], $2::{types[keys[1]]}[]))",
                    list(first),
                    list(second),
                )
        for table in PROJECTION_TABLES:
            before, values_of, removed = self._before[table], VALUES[table], self._removed[table]
            noted, as_before = table in NOTED, BEFORE[table]
            fresh, changed = [], []
            touched: set[int] = set()
            positions = range(len(COLUMNS[table]))
            for key, row in self.tables[table].items():
                earlier = before.get(key)
                if earlier is None or key in removed:
                    fresh.append(row)
                else:
                    now = values_of(row)
                    if earlier == now:
                        continue
                    changed.append(row)
                    touched.update(compress(positions, map(operator.ne, earlier, now)))
                if noted:
                    self._note(table, None if earlier is None else as_before(earlier), row, written)
            if (fresh or changed) and not await self._write_rows(
                table, fresh, changed, [COLUMNS[table][i] for i in sorted(touched)]
            ):
                await self._insert(table, changed, update=True)
            written.rows[str(table.__tablename__)] = len(fresh) + len(changed)
        return written

    @staticmethod
    def _note(table: type[CoachingTable], earlier: Any, row: Any, written: Written) -> None:
        """Whose call plan or alerts this changed row may move."""
        if table is DashboardRow:
            before = plan_inputs(earlier) if earlier is not None else None
            after = plan_inputs(row)
            if before is None or before.plan != after.plan:
                # The alerts too: while a participant had no start, nothing was told of them.
                written.plan_changed.add(row.participant_id)
                written.alerts_changed.add(row.participant_id)
            elif before.alerts != after.alerts and _only_opens(before.alerts, after.alerts):
                written.opened.add(row.participant_id)
            elif before.alerts != after.alerts:
                written.alerts_changed.add(row.participant_id)
        elif table is MailSeen:
            if row.sent_at is None or (earlier is not None and earlier.sent_at == row.sent_at):
                pass  # not sent: the plan reads sent mails only
            elif earlier is None or earlier.sent_at is None:
                written.sends.setdefault(row.participant_id, []).append((row.day, row.sent_at))
            else:
                written.plan_changed.add(row.participant_id)  # sent earlier than known: the full rules
        elif table is CallSeen:
            written.plan_changed.add(row.participant_id)
        elif table is ReportSeen and (earlier is None or (earlier.day, earlier.score) != (row.day, row.score)):
            written.alerts_changed.add(row.participant_id)
