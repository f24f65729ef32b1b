"""Async SQLModel/SQLAlchemy plumbing on asyncpg: the engine, one session per unit of
work, and the processed-events table that makes consumers idempotent."""

from __future__ import annotations

import dataclasses
import json
import operator
import warnings
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import Uuid, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, registry
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# SQLModel's session nudges towards session.exec() with a multi-line DeprecationWarning on every
# session.execute(); SQLAlchemy's execute() (rows, mappings, textual SQL) is what this code
# means. Python shows such warnings only for code run as __main__: a process started with
# `python -m services.tracking.hit_processor` printed them into its log.
warnings.filterwarnings("ignore", message=r"(?s).*You probably want to use", category=DeprecationWarning)


class SharedTable(SQLModel, registry=registry()):
    """Base of the tables every service has (outbox, processed events), apart from the
    service's own tables so that each service's migrations see exactly its database."""


class ProcessedEvent(SharedTable, table=True):
    """An event this service has handled; written in the same transaction as its effect."""

    __tablename__ = "processed_events"

    event_id: UUID = Field(primary_key=True)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """One service's database: engine, session factory and after-commit hooks."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # A connection lost while PostgreSQL restarted is replaced, not handed out.
            pool_pre_ping=True,
            connect_args={"timeout": 5, "command_timeout": 30},
            # Parameters are personal data (names, addresses, plan text): never in errors or logs.
            hide_parameters=True,
        )
        # A Session subclass of our own, so after-commit hooks fire for this database only.
        self._session_class: type[Session] = type("ServiceSession", (Session,), {})
        self.sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, sync_session_class=self._session_class, expire_on_commit=False
        )
        self._after_commit: list[Callable[[], None]] = []
        event.listen(self._session_class, "after_commit", self._run_after_commit)

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Call hook after every commit of a session from this database (e.g. wake the relay)."""
        self._after_commit.append(hook)

    def _run_after_commit(self, session: Session) -> None:
        if session.info.pop("wrote_outbox", False):
            for hook in self._after_commit:
                hook()

    def session(self) -> AsyncSession:
        """A new session: use as `async with db.session() as s: ...; await s.commit()`.
        Leaving the block without commit rolls everything back."""
        return self.sessions()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def column_arrays(rows: Sequence[Any], *names: str) -> dict[str, list[Any]]:
    """One list per column of `rows`, keyed by the column's name: the array parameters of an
    `unnest(CAST(:name AS type[]), …)`, which writes a whole batch in one statement whose text
    is the same however many rows. Rows are plain tuples in the order of `names`, or objects
    with those attributes; the names of dataclass rows default to their fields."""
    if not names and rows and dataclasses.is_dataclass(rows[0]):
        names = tuple(field.name for field in dataclasses.fields(rows[0]))
    if rows and type(rows[0]) is not tuple:
        rows = [tuple(getattr(row, name) for name in names) for row in rows]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {name: list(column) for name, column in zip(names, columns, strict=True)}


def asyncpg_dsn(database_url: str) -> str:
    """The service's SQLAlchemy URL as a plain asyncpg DSN."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def connect_raw(database_url: str) -> asyncpg.Connection:
    """A dedicated asyncpg connection for a hot loop (no pool checkout, no ORM), with JSON columns
    decoded like SQLAlchemy does. A statement that gets no answer in 30 s fails (TimeoutError, as
    an outage), as on the pool: a loop that must keep going never waits forever on a half-dead
    connection."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5, command_timeout=30)
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return connection


POSTGRES_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
"""What a stopped, restarting or unreachable PostgreSQL looks like on an asyncpg connection."""

DATABASE_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
"""The asyncpg errors (outside SQLAlchemy) that can only mean a lost or refused connection."""

UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57P")
"""Connection exceptions, insufficient resources, and the server shutting down, crashed or still
starting (57P01-57P03: after a crash PostgreSQL answers "the database system is in recovery
mode" for a while). The failure is the server's, never the request's or the event's."""


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says PostgreSQL is away (stopped, restarting, out of reach or out of
    resources) rather than that something is wrong with what was asked of it."""
    if isinstance(error, (OperationalError, InterfaceError, *POSTGRES_UNREACHABLE)):
        return True
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated
        or str(getattr(error.orig, "sqlstate", None) or "").startswith(UNAVAILABLE_SQLSTATE_CLASSES)
    )


class DedicatedConnection:
    """One asyncpg connection kept by one loop, opened on first use and again after a loss."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._connection: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await connect_raw(self.database_url)
        return self._connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()


_CLAIM_EVENTS = text(
    "INSERT INTO processed_events (event_id, processed_at) SELECT unnest(CAST(:ids AS uuid[])), :now "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
).columns(event_id=Uuid())


_UUID_VALUE = operator.attrgetter("int")


async def claim_events(session: AsyncSession, event_ids: Sequence[UUID]) -> set[UUID]:
    """Record that these events are being handled, in one statement; returns those that were
    not handled before (an id given twice is returned once).

    Call it first in the unit of work's transaction: the rows commit with the effects or
    not at all, so a redelivered event changes nothing.
    """
    if not event_ids:
        return set()
    # Sorted: two transactions claiming overlapping ids lock them in the same order (by the
    # ids' value, PostgreSQL's order too, without a Python comparison per pair).
    ids = sorted(set(event_ids), key=_UUID_VALUE)
    result = await session.execute(_CLAIM_EVENTS, {"ids": ids, "now": utcnow()})
    return {row[0] for row in result}


PERSON_LOCKS_SQL = "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS sorted"
"""Take turns per person with every other transaction of this database that locks them, until
commit (asyncpg: pass person_lock_keys(...) as $1). One sorted statement: two transactions
never wait for each other crosswise."""
_LOCK_PEOPLE = text(PERSON_LOCKS_SQL.replace("$1::bigint[]", "CAST(:keys AS bigint[])"))


def person_lock_keys(person_ids: Collection[UUID]) -> list[int]:
    """The advisory lock keys of these people (the first 8 bytes of the id; a rare shared key
    only makes two people take turns)."""
    return sorted({int.from_bytes(person_id.bytes[:8], "big", signed=True) for person_id in person_ids})


async def lock_people(session: AsyncSession, person_ids: Collection[UUID]) -> None:
    """PERSON_LOCKS_SQL on a session's transaction.

    For a row made from two topics (a person's contact details on meer.contact, their enrolment
    or coach account on another), which two consumers may apply at the same moment: each would
    see the other's row missing and neither would put the name and address on it. Taking turns,
    the second sees what the first committed (each statement of a READ COMMITTED transaction
    reads what was committed before it began)."""
    keys = person_lock_keys(person_ids)
    if keys:
        await session.execute(_LOCK_PEOPLE, {"keys": keys})


async def claim_event(session: AsyncSession, event_id: UUID) -> bool:
    """claim_events for one event: False if it was handled before. For a write path that
    applies its own event at once (coaching's commands), so that the echo from Kafka is skipped."""
    return bool(await claim_events(session, [event_id]))
