"""Fresh, migrated service databases on the stack's PostgreSQL, one per test module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from deploy.local.stack import Urls
from shared.db import Database
from shared.migrations import upgrade_to_head

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def fresh_database(service: str) -> AsyncIterator[str]:
    """Create meer_<service>_t_<random>, migrate it to head, yield its asyncpg URL, drop it."""
    name = f"meer_{service}_t_{uuid.uuid4().hex[:10]}"
    server = Urls.postgres_server()
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{server.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    try:
        await asyncio.to_thread(upgrade_to_head, ROOT / "services" / service / "migrations", url)
        yield url
    finally:
        admin = await asyncpg.connect(f"{server}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def fresh_database_pool(service: str, *, pool_size: int) -> AsyncIterator[Database]:
    """fresh_database, with a Database (pool of `pool_size`) on it, disposed of after."""
    async with fresh_database(service) as url:
        database = Database(url, pool_size=pool_size)
        try:
            yield database
        finally:
            await database.dispose()
