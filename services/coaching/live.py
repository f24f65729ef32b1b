"""Live updates: after a change to a participant commits, tell the open dashboards that
may show that participant (their coach's, and their organisation's admins').

In-process fan-out: each open dashboard (a Server-Sent Events stream) holds a queue. With
several replicas of coaching, each replica only knows its own streams; the handler would
then also `NOTIFY` the change in its transaction and every replica `LISTEN`s and fans out
locally (see the README section on scaling out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID

import jwt
from sse_starlette import EventSourceResponse, ServerSentEvent

QUEUE_SIZE = 1000


@dataclass(frozen=True)
class ParticipantChanged:
    """Something about one participant changed (ids and the event type only)."""

    org_id: UUID
    participant_id: UUID
    coach_ids: frozenset[UUID]
    """The coach now, and before a coach change: both dashboards must hear of it."""
    event_type: str


@dataclass(eq=False)
class Subscriber:
    """One open dashboard: an organisation, and a coach (None: the admin sees all)."""

    org_id: UUID
    coach_id: UUID | None
    queue: asyncio.Queue[tuple[ParticipantChanged, ...] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    """One item per push: the changes of one commit this dashboard may show."""
    overflowed: bool = False

    def wants(self, change: ParticipantChanged) -> bool:
        return change.org_id == self.org_id and (self.coach_id is None or self.coach_id in change.coach_ids)


class LiveHub:
    """The open dashboards of this process, by organisation."""

    def __init__(self) -> None:
        self._subscribers: dict[UUID, set[Subscriber]] = {}

    @property
    def open_streams(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    def publish(self, change: ParticipantChanged) -> None:
        """Queue the change for every dashboard that may show it; never blocks the handler."""
        self.publish_many([change])

    def publish_many(self, changes: Iterable[ParticipantChanged]) -> None:
        """Queue the changes of one commit (at most one per participant: coalesce first) as one
        push per dashboard that may show any of them; never blocks the consumer."""
        by_org: dict[UUID, list[ParticipantChanged]] = {}
        for change in changes:
            by_org.setdefault(change.org_id, []).append(change)
        for org_id, found in by_org.items():
            for subscriber in self._subscribers.get(org_id, ()):
                wanted = tuple(change for change in found if subscriber.wants(change))
                if not wanted:
                    continue
                try:
                    subscriber.queue.put_nowait(wanted)
                except asyncio.QueueFull:
                    # A stalled reader: tell it to reload instead of growing without bound.
                    subscriber.overflowed = True

    @contextlib.asynccontextmanager
    async def subscribe(self, *, org_id: UUID, coach_id: UUID | None) -> AsyncIterator[Subscriber]:
        """Register an open dashboard for as long as the block runs."""
        subscriber = Subscriber(org_id=org_id, coach_id=coach_id)
        self._subscribers.setdefault(org_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            group = self._subscribers.get(org_id, set())
            group.discard(subscriber)
            if not group:
                self._subscribers.pop(org_id, None)

    def close_all(self) -> None:
        """Wake every stream so it can end (at shutdown)."""
        for group in self._subscribers.values():
            for subscriber in group:
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)


ACCESS_RECHECK_S = 5.0
"""How often an open stream checks that its login was not revoked."""


def _seconds_left(token: str) -> float:
    """Seconds until the (already verified) token expires."""
    expires = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
    return max(0.0, float(expires) - time.time())


def stream_changes(
    hub: LiveHub,
    *,
    org_id: UUID,
    coach_id: UUID | None,
    token: str,
    ping_s: float,
    still_allowed: Callable[[], Awaitable[bool]],
) -> EventSourceResponse:
    """A Server-Sent Events stream of participant changes for one viewer, until their login
    expires or is revoked (logout, reset, deactivation: checked every few seconds).

    Events: `ready` once; `participant` with {"participant_id", "event_type"} per change;
    `reload` when the stream fell behind; `expired` when the login ran out (then it ends).
    """
    deadline = time.monotonic() + _seconds_left(token)
    recheck_s = min(ping_s, ACCESS_RECHECK_S)

    async def events() -> AsyncIterator[ServerSentEvent]:
        async with hub.subscribe(org_id=org_id, coach_id=coach_id) as subscriber:
            yield ServerSentEvent(event="ready", data="{}", retry=3000)
            next_check = time.monotonic() + recheck_s
            while True:
                wait = max(0.0, min(deadline, next_check) - time.monotonic())
                try:
                    changes = await asyncio.wait_for(subscriber.queue.get(), timeout=wait)
                except TimeoutError:
                    if time.monotonic() >= deadline or not await still_allowed():
                        yield ServerSentEvent(event="expired", data="{}")
                        return
                    next_check = time.monotonic() + recheck_s
                    continue
                if changes is None:
                    return
                if subscriber.overflowed:
                    subscriber.overflowed = False
                    yield ServerSentEvent(event="reload", data="{}")
                    continue
                for change in changes:
                    data = {"participant_id": str(change.participant_id), "event_type": change.event_type}
                    yield ServerSentEvent(event="participant", data=json.dumps(data))

    return EventSourceResponse(
        events(), ping=int(ping_s), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
