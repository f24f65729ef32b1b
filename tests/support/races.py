"""Two consumer units of work at the same moment, made deterministic: the first is held open just
before its commit (its reads done, its locks held) while the second runs; the first commits once
the second has finished or waits for a lock. Whatever the order, the end must be the same as one
after the other. For the rows a service makes from two topics (shared.db.lock_people)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database, asyncpg_dsn
from shared.events import Envelope
from shared.kafka import Subscription, apply_events

Flush = Callable[[AsyncSession], Awaitable[None]]


async def nothing_to_flush(session: AsyncSession) -> None:
    return None


def held_before_commit(
    subscription: Subscription, held: str, reached: asyncio.Event, go_on: asyncio.Event, flush: Flush
) -> Subscription:
    """The subscription, but the change of type `held` runs `flush` (a service that reads at the
    end of its batch does it there) and then waits for `go_on`: its unit of work stays open."""

    def hold(change: Any) -> Any:
        async def held_change(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
            await change(session, envelope, payload)
            await flush(session)
            reached.set()
            await go_on.wait()

        return held_change

    changes = {
        topic: {kind: hold(change) if kind == held else change for kind, change in by_type.items()}
        for topic, by_type in subscription.changes.items()
    }
    return Subscription(changes, subscription.tombstones, subscription.prepare)


async def waiting_for_a_lock(database: Database) -> bool:
    connection = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        return bool(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                make_url(database.url).database,
            )
        )
    finally:
        await connection.close()


async def apply_at_the_same_moment(
    database: Database,
    subscription: Subscription,
    first: Envelope,
    second: Envelope,
    *,
    flush: Flush = nothing_to_flush,
) -> None:
    """Apply `first` in a unit of work held open before its commit, then `second` in another
    (the database's pool needs two connections); let the first commit once the second has
    finished or waits for it."""
    reached, go_on = asyncio.Event(), asyncio.Event()
    held = asyncio.create_task(
        apply_events(database, held_before_commit(subscription, first.type, reached, go_on, flush), [first])
    )
    try:
        await reached.wait()
        second_applied = asyncio.create_task(apply_events(database, subscription, [second]))
        while not second_applied.done() and not await waiting_for_a_lock(database):
            await asyncio.sleep(0.02)
        go_on.set()
        await asyncio.gather(held, second_applied)
    finally:
        go_on.set()
        held.cancel()


async def fetch(database: Database, query: str, *args: object) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        return [tuple(row) for row in await connection.fetch(query, *args)]
    finally:
        await connection.close()
