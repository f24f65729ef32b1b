"""Alembic, the same way for every service: each service keeps its revisions in its own
`migrations/` folder and its env.py calls `run_env` with the service's tables.

    python -m shared.migrations revision SERVICE -m "what changed"   (autogenerate)
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from shared.db import SharedTable
from shared.outbox import OutboxMessage

# Replicas that start together must not migrate the same database at the same time.
_MIGRATION_LOCK_ID = 0x6D696772


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(migrations_dir: Path, database_url: str) -> None:
    """Apply every pending revision (blocking; run it in a thread from async code)."""
    command.upgrade(alembic_config(migrations_dir, database_url), "head")


def run_env(service_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    assert OutboxMessage.metadata is SharedTable.metadata  # imported so the outbox table is registered
    target = [service_metadata, SharedTable.metadata]

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target, compare_type=True)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            context.config.get_section(context.config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
            hide_parameters=True,
        )
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(run_async())


def main() -> None:
    parser = argparse.ArgumentParser(description="Create a migration for one service by autogenerate.")
    sub = parser.add_subparsers(dest="command", required=True)
    revision = sub.add_parser("revision")
    revision.add_argument("service", choices=["enrolment", "mailer", "tracking", "coaching"])
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    migrations_dir = Path(__file__).resolve().parents[1] / "services" / args.service / "migrations"
    url = os.environ.get("MEER_DATABASE_URL", f"postgresql+asyncpg://meer@127.0.0.1:55432/meer_{args.service}")
    config = alembic_config(migrations_dir, url)
    command.upgrade(config, "head")
    command.revision(config, message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
