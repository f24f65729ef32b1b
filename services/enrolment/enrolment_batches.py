"""Enrolments through the API into one organisation commit together.

Enrolments into one organisation take turns on its row (FOR UPDATE), so that the licence count
holds exactly. One transaction per enrolment made each wait for the commit before it; here the
enrolments that arrive while one batch commits go in together in the next one: one lock, one
count, one insert and one commit for all of them. No request waits for a timer: a lone
enrolment goes in at once, and each organisation has its own queue, so one organisation's burst
never delays another's.

The lock is what every enrolment into the organisation waits for, so the time it is held is kept
short: the batch's addresses are looked up before it is taken, participants and their outbox rows
go in as one statement, and the transaction runs on a plain asyncpg connection in a thread with an
event loop of its own. On the service's loop each answer from PostgreSQL waited until the loop
had parsed and checked the other requests that were ready (3-4 ms each), with the lock held.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import uvloop

from services.enrolment import storage
from services.enrolment.use_cases import participants
from services.enrolment.use_cases.participants import EnrolmentRequest
from shared.db import asyncpg_dsn, database_unavailable, utcnow
from shared.errors import Refusal
from shared.logging import get_logger

log = get_logger(__name__)
MAX_BATCH = 200
"""Enrolments per transaction at most: a batch stays a short transaction."""
CONNECTIONS = 4
"""Connections of the batches' pool: one per organisation enrolling at the same moment."""

SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
"""The batches' statements are planned once per connection, for any organisation. With custom
plans, PostgreSQL estimated an organisation that enrolled since the table's last ANALYZE (a new
one, in a burst) at one participant, and looked up a batch's addresses by reading all of the
organisation's participants: 3.8-7 ms per batch in the enrolment benchmark, growing with the
organisation. The generic plan assumes an average organisation and probes the address index
(tests/e2e/test_enrolment_lookups.py)."""

Outcome = dict[str, Any] | Refusal
T = TypeVar("T")


@dataclass
class _Waiting:
    request: EnrolmentRequest
    answer: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TransactionLoop:
    """Runs transactions on asyncpg connections of its own, on an event loop (uvloop, as the
    service's) in a thread of its own. That loop does nothing else, so it takes up PostgreSQL's
    answers at once (as soon as the thread gets the GIL)."""

    def __init__(self, database_url: str, *, connections: int = CONNECTIONS) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._connections = connections
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """work(connection) on a connection of the pool, in the thread; its result or its error."""
        if self._loop is None:
            self._loop = uvloop.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="enrolment-batches", daemon=True)
            self._thread.start()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._on_pool(work), self._loop))

    async def _on_pool(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            # Created on the loop that uses it; no connection opens before the first enrolment.
            # asyncpg's own reset on release stays: it costs a round trip per batch, but a
            # connection that PostgreSQL dropped mid-batch fails it and is closed, where a
            # cheaper reset returned it to the pool broken (InternalClientError, a 500, in the
            # PostgreSQL drill).
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self._connections,
                timeout=5,
                command_timeout=30,
                server_settings=SERVER_SETTINGS,
            )
        async with self._pool.acquire() as connection:
            return await work(connection)

    async def close(self) -> None:
        """Close the pool and stop the thread."""
        if self._pool is not None:
            await self._submit(self._pool.close())
            self._pool = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)
            self._loop.close()
            self._loop = self._thread = None

    async def _submit(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))


class EnrolmentBatches:
    """One queue per organisation; a worker per organisation while its queue is not empty."""

    def __init__(
        self,
        database_url: str,
        *,
        on_commit: Callable[[], None],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._transactions = TransactionLoop(database_url)
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queues: dict[UUID, list[_Waiting]] = {}
        self._workers: dict[UUID, asyncio.Task[None]] = {}

    async def enrol(self, org_id: UUID, request: EnrolmentRequest) -> dict[str, Any]:
        """The new participant's row once committed; raises the refusal this request gets."""
        waiting = _Waiting(request)
        self._queues.setdefault(org_id, []).append(waiting)
        if org_id not in self._workers:
            self._workers[org_id] = asyncio.create_task(self._work(org_id))
        return await waiting.answer

    async def close(self) -> None:
        """Stop the transaction thread (at shutdown)."""
        await self._transactions.close()

    async def _work(self, org_id: UUID) -> None:
        try:
            while queue := self._queues.get(org_id):
                batch, self._queues[org_id] = queue[: self._max_batch], queue[self._max_batch :]
                await self._settle(org_id, batch)
        finally:
            # No await between the empty queue and this: a new request starts a new worker.
            self._queues.pop(org_id, None)
            self._workers.pop(org_id, None)

    async def _settle(self, org_id: UUID, batch: Sequence[_Waiting]) -> None:
        """Answer every request of the batch, whatever happens."""
        try:
            try:
                outcomes = await self._enrol(org_id, [waiting.request for waiting in batch])
            except asyncpg.IntegrityConstraintViolationError:
                # A parallel transaction (another replica, a CSV import) enrolled one of these
                # addresses at the same moment, or the batch has one twice: one by one, so that
                # only that one is refused.
                outcomes = [await self._enrol_alone(org_id, waiting.request) for waiting in batch]
        except Exception as error:  # noqa: BLE001 - the requests answer it (a 503 for an outage)
            if database_unavailable(error) and not isinstance(error, ConnectionError):
                # The service's 503 handler knows SQLAlchemy's errors and ConnectionError; a
                # plain asyncpg connection fails with TimeoutError or asyncpg's own errors too.
                unavailable = ConnectionError("PostgreSQL is not reachable")
                unavailable.__cause__ = error
                error = unavailable
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(error)
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.answer.done():  # the client went away; the enrolment stands
                continue
            if isinstance(outcome, Refusal):
                waiting.answer.set_exception(outcome)
            else:
                waiting.answer.set_result(outcome)

    async def _enrol(self, org_id: UUID, requests: Sequence[EnrolmentRequest]) -> list[Outcome]:
        async def transaction(connection: asyncpg.Connection) -> tuple[list[Outcome], bool]:
            emails = [request.fields.email for request in requests]
            # Before the lock: an address enrolled between this and the insert is refused by
            # the unique index, and the batch goes again one by one.
            taken = await storage.running_emails_among(connection=connection, org_id=org_id, emails=emails)
            async with connection.transaction():
                terms = await storage.lock_organisation(connection=connection, org_id=org_id)
                if terms is None:
                    return [Refusal("not_found", f"Organisation {org_id} does not exist.") for _ in requests], False
                counts = await storage.enrolment_counts(connection=connection, org_id=org_id)
                plan = participants.plan_enrolments(
                    org_id=org_id, terms=terms, counts=counts, taken=taken, requests=requests, now=utcnow()
                )
                await storage.insert_participants_with_events(
                    connection=connection, org_id=org_id, rows=plan.rows, events=plan.events
                )
            return plan.outcomes, bool(plan.rows)

        outcomes, wrote = await self._transactions.run(transaction)
        if wrote:
            self._on_commit()
        return outcomes

    async def _enrol_alone(self, org_id: UUID, request: EnrolmentRequest) -> Outcome:
        try:
            return (await self._enrol(org_id, [request]))[0]
        except asyncpg.IntegrityConstraintViolationError:
            return Refusal("conflict", participants.ALREADY_ENROLLED, field="email")
