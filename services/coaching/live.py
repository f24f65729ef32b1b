"""Live updates: after a change to a participant commits, tell the open dashboards that
may show that participant (their coach's, and their organisation's admins').

Each open dashboard (a Server-Sent Events stream) holds a queue in the replica it is
connected to. A change reaches every replica through PostgreSQL: the consumer sends
`NOTIFY coaching_live` in the transaction that changes the projection (PostgreSQL delivers
it only when that transaction commits, so a dashboard that reads the row again sees the
new state), and every replica `LISTEN`s on one connection of its own (LiveListener) and
fans the changes out to its own streams. Why not each replica reading the topics in a
group of its own: every replica would then parse the whole flood of opens a second time,
and could push before the consumer that owns the partition committed the projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import jwt
from sse_starlette import EventSourceResponse, ServerSentEvent

from shared.db import POSTGRES_UNREACHABLE, connect_raw
from shared.logging import get_logger

log = get_logger(__name__)

QUEUE_SIZE = 1000
CHANNEL = "coaching_live"
"""The PostgreSQL notification channel of participant changes."""
MAX_PAYLOAD_BYTES = 7900
"""PostgreSQL refuses a notification payload of 8000 bytes or more: larger lists are chunked."""


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


def encode_changes(changes: Iterable[ParticipantChanged]) -> list[str]:
    """The changes as notification payloads of at most MAX_PAYLOAD_BYTES each (ids and event
    types only): `[[org, participant, [coach, …], type], …]` in JSON, ids as 32 hex digits."""
    payloads: list[str] = []
    items: list[str] = []
    size = 2
    for change in changes:
        item = json.dumps(
            [change.org_id.hex, change.participant_id.hex, sorted(c.hex for c in change.coach_ids), change.event_type],
            separators=(",", ":"),
        )
        if items and size + len(item) + 1 > MAX_PAYLOAD_BYTES:
            payloads.append("[" + ",".join(items) + "]")
            items, size = [], 2
        items.append(item)
        size += len(item) + 1
    if items:
        payloads.append("[" + ",".join(items) + "]")
    return payloads


def decode_changes(payload: str) -> list[ParticipantChanged]:
    """The changes of one notification payload (encode_changes)."""
    return [
        ParticipantChanged(
            org_id=UUID(hex=org),
            participant_id=UUID(hex=participant),
            coach_ids=frozenset(UUID(hex=coach) for coach in coaches),
            event_type=str(kind),
        )
        for org, participant, coaches, kind in json.loads(payload)
    ]


async def notify_changes(connection: asyncpg.Connection, changes: Iterable[ParticipantChanged]) -> None:
    """Send the changes to every replica's dashboards; inside a transaction, PostgreSQL delivers
    them when it commits (and never when it rolls back)."""
    payloads = encode_changes(changes)
    if payloads:
        # One statement, not one per payload: a statement per round trip is what a batch waits on.
        await connection.execute(
            "SELECT count(pg_notify($1, payload)) FROM unnest($2::text[]) AS payload",
            CHANNEL,
            payloads,
        )


class LiveHub:
    """The open dashboards of this process, by organisation."""

    def __init__(self) -> None:
        self._subscribers: dict[UUID, set[Subscriber]] = {}
        self.notifier: Callable[[Sequence[ParticipantChanged]], bool] | None = None
        """Sends changes to every replica (LiveListener); None or False: this replica only."""

    @property
    def open_streams(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    def publish(self, change: ParticipantChanged) -> None:
        """After a commit of this process (a coach's own write): tell every replica's dashboards
        that may show it; never blocks the caller."""
        if self.notifier is None or not self.notifier([change]):
            self.publish_many([change])

    def reload_all(self) -> None:
        """Tell every open dashboard to load the page again (changes may have been missed)."""
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.overflowed = True
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(())

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


class LiveListener:
    """This replica's ear on the changes of every replica: one dedicated connection that
    LISTENs on CHANNEL and hands each notification to the hub. After a lost connection (a
    PostgreSQL restart) it connects again, logs the loss once and its end once, and tells the
    open dashboards to reload (notifications sent meanwhile are gone)."""

    def __init__(self, database_url: str, hub: LiveHub, *, check_s: float = 5.0, retry_s: float = 1.0) -> None:
        self.database_url = database_url
        self.hub = hub
        self.check_s = check_s
        self.retry_s = retry_s
        self.listening = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._lost = False
        self._sending: set[asyncio.Task[None]] = set()
        hub.notifier = self.send

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            changes = decode_changes(payload)
        except (ValueError, TypeError) as error:
            log.warning("live notification not understood", error=type(error).__name__)
            return
        self.hub.publish_many(changes)

    def send(self, changes: Sequence[ParticipantChanged]) -> bool:
        """Notify every replica of changes committed by this process; False when not listening
        (the caller then tells only its own dashboards)."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return False
        task = asyncio.get_running_loop().create_task(self._send(connection, changes))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return True

    async def _send(self, connection: asyncpg.Connection, changes: Sequence[ParticipantChanged]) -> None:
        try:
            await notify_changes(connection, changes)
        except Exception as error:  # noqa: BLE001 - the connection went away: at least our own dashboards
            log.warning("live notification not sent", error=type(error).__name__)
            self.hub.publish_many(changes)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a loss."""
        while True:
            try:
                connection = await connect_raw(self.database_url)
                try:
                    await connection.add_listener(CHANNEL, self._on_notification)
                    self._connection = connection
                    self.listening.set()
                    if self._lost:
                        self._lost = False
                        log.info("live notifications listening again")
                        self.hub.reload_all()
                    while True:
                        await asyncio.sleep(self.check_s)
                        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                        # that arrives as the check ends, and the listener would never stop.
                        async with asyncio.timeout(self.check_s):
                            await connection.fetchval("SELECT 1")
                finally:
                    self._connection = None
                    self.listening.clear()
                    connection.terminate()
            except (*POSTGRES_UNREACHABLE, asyncpg.PostgresError) as error:
                if not self._lost:
                    self._lost = True
                    log.warning(
                        "live notifications lost; listening again when PostgreSQL is back", error=type(error).__name__
                    )
            await asyncio.sleep(self.retry_s)


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

    async def events() -> AsyncIterator[ServerSentEvent | bytes]:
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
                # One chunk per push, not one per participant: each chunk passes the middleware and
                # a send timeout of its own, ~10% of coaching's CPU in a morning burst's pushes.
                yield b"".join(
                    ServerSentEvent(
                        event="participant",
                        data=json.dumps(
                            {"participant_id": str(change.participant_id), "event_type": change.event_type}
                        ),
                    ).encode()
                    for change in changes
                )

    return EventSourceResponse(
        events(), ping=int(ping_s), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
