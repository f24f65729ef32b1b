"""Enrolments through the API into one organisation commit together.

Enrolments into one organisation take turns on its row (FOR UPDATE), so that the licence count
holds exactly. One transaction per enrolment made each wait for the commit before it; here the
enrolments that arrive while one batch commits go in together in the next one: one lock, one
count, one insert and one commit for all of them. No request waits for a timer: a lone
enrolment goes in at once, and each organisation has its own queue, so one organisation's burst
never delays another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from services.enrolment import storage
from services.enrolment.use_cases import participants
from services.enrolment.use_cases.participants import EnrolmentRequest
from shared.db import Database, utcnow
from shared.errors import Refusal
from shared.logging import get_logger

log = get_logger(__name__)
MAX_BATCH = 200
"""Enrolments per transaction at most: a batch stays a short transaction."""

Outcome = dict[str, Any] | Refusal


@dataclass
class _Waiting:
    request: EnrolmentRequest
    answer: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class EnrolmentBatches:
    """One queue per organisation; a worker per organisation while its queue is not empty."""

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._database = database
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
            except IntegrityError:
                # A parallel transaction (another replica, a CSV import) enrolled one of these
                # addresses at the same moment: one by one, so that only that one is refused.
                outcomes = [await self._enrol_alone(org_id, waiting.request) for waiting in batch]
        except Exception as error:  # noqa: BLE001 - the requests answer it (a 503 for an outage)
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
        async with self._database.session() as session:
            organisation = await storage.get_organisation(session=session, org_id=org_id, for_update=True)
            if organisation is None:
                return [Refusal("not_found", f"Organisation {org_id} does not exist.") for _ in requests]
            outcomes = await participants.enrol_together(
                session=session, organisation=organisation, requests=requests, now=utcnow()
            )
            await session.commit()
            return outcomes

    async def _enrol_alone(self, org_id: UUID, request: EnrolmentRequest) -> Outcome:
        try:
            return (await self._enrol(org_id, [request]))[0]
        except IntegrityError:
            return Refusal("conflict", participants.ALREADY_ENROLLED, field="email")
