"""The running-participant counts the enrolment API decides on (running_participants, kept by
triggers on participant) equal a count of the participants themselves, after any mix of inserts,
status changes, coach changes, deletes and truncation, and after the migration that adds them
to a database that already has participants. Real PostgreSQL, a fresh enrolment database."""

from __future__ import annotations

import asyncio
import random
import typing
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time

import asyncpg
import pytest
from alembic import command

from services.enrolment.domain import ACTIVE_STATUSES, Status
from shared.db import asyncpg_dsn
from shared.migrations import alembic_config
from tests.support.databases import ROOT, fresh_database

pytestmark = pytest.mark.stack

MIGRATIONS = ROOT / "services" / "enrolment" / "migrations"
BEFORE_COUNTS = "d7e3a1f4b806"
STATUSES: tuple[Status, ...] = typing.get_args(Status)
CHANGE_SOME = {
    column: (
        f"UPDATE participant SET {column} = $3 WHERE id IN"  # noqa: S608 - the two column names above
        " (SELECT id FROM participant WHERE org_id = $1 ORDER BY random() LIMIT $2)"
    )
    for column in ("status", "coach_id")
}
"""One column ($3) of at most $2 random participants of an organisation ($1)."""
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def database_before_counts(infrastructure: None) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A fresh enrolment database at the revision before the counts, and a connection to it."""
    async with fresh_database("enrolment") as url:
        config = alembic_config(MIGRATIONS, url)
        await asyncio.to_thread(command.downgrade, config, BEFORE_COUNTS)
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            yield url, connection
        finally:
            await connection.close()


async def organisation_with_coaches(connection: asyncpg.Connection, coaches: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    org_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO organisation (id, name, display_name, brand_colour, licence_valid_from, licence_valid_until,"
        " max_active_participants, variants, created_at, updated_at)"
        " VALUES ($1, 'Org', 'Org', '#336699', '2026-01-01', '2027-12-31', 1000, ARRAY['standaard'], $2, $2)",
        org_id,
        NOW,
    )
    coach_ids = [uuid.uuid4() for _ in range(coaches)]
    await connection.executemany(
        "INSERT INTO staff (id, org_id, role, name, email, created_at) VALUES ($1, $2, 'coach', 'Coach', $3, $4)",
        [(coach_id, org_id, f"{coach_id}@example.org", NOW) for coach_id in coach_ids],
    )
    return org_id, coach_ids


async def insert_participants(
    connection: asyncpg.Connection, org_id: uuid.UUID, coach_ids: list[uuid.UUID], statuses: list[str]
) -> None:
    """Participants in one statement, as the enrolment API's batches and the CSV import insert them."""
    ids = [uuid.uuid4() for _ in statuses]
    await connection.execute(
        "INSERT INTO participant (id, org_id, coach_id, first_name, email, start_date, send_time, timezone,"
        " variant, status, source, created_at, updated_at)"
        " SELECT id, $1, coach_id, 'Deelnemer', id::text || '@example.org', $5, $6, 'Europe/Amsterdam',"
        " 'standaard', status, 'api', $7, $7"
        " FROM unnest($2::uuid[], $3::uuid[], $4::text[]) AS r(id, coach_id, status)",
        org_id,
        ids,
        [coach_ids[n % len(coach_ids)] for n in range(len(ids))],
        statuses,
        date(2026, 12, 2),
        time(8, 0),
        NOW,
    )


async def counted(connection: asyncpg.Connection) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    rows = await connection.fetch(
        "SELECT org_id, coach_id, count(*) AS n FROM participant WHERE status = ANY($1::text[]) GROUP BY 1, 2",
        list(ACTIVE_STATUSES),
    )
    return {(row["org_id"], row["coach_id"]): row["n"] for row in rows}


async def kept(connection: asyncpg.Connection) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    rows = await connection.fetch("SELECT org_id, coach_id, running FROM running_participants WHERE running <> 0")
    return {(row["org_id"], row["coach_id"]): row["running"] for row in rows}


async def test_the_migration_counts_the_participants_already_there(
    database_before_counts: tuple[str, asyncpg.Connection],
) -> None:
    url, connection = database_before_counts
    org_id, coach_ids = await organisation_with_coaches(connection, 3)
    await insert_participants(connection, org_id, coach_ids, [STATUSES[n % len(STATUSES)] for n in range(40)])

    await asyncio.to_thread(command.upgrade, alembic_config(MIGRATIONS, url), "head")

    assert await kept(connection) == await counted(connection)
    assert sum((await kept(connection)).values()) == sum(
        1 for n in range(40) if STATUSES[n % len(STATUSES)] in ACTIVE_STATUSES
    )


async def test_every_kind_of_change_keeps_the_counts_equal_to_the_participants(
    database_before_counts: tuple[str, asyncpg.Connection],
) -> None:
    url, connection = database_before_counts
    await asyncio.to_thread(command.upgrade, alembic_config(MIGRATIONS, url), "head")
    organisations = [await organisation_with_coaches(connection, coaches) for coaches in (1, 4, 7)]
    rng = random.Random(20261201)

    async def random_change() -> str:
        org_id, coach_ids = rng.choice(organisations)
        kind = rng.choice(["insert", "status", "status", "coach_id", "org-wide status", "delete"])
        size = rng.randint(1, 30)  # how many of the organisation's participants change
        if kind == "insert":
            await insert_participants(
                connection, org_id, coach_ids, [rng.choice(STATUSES) for _ in range(rng.randint(1, 60))]
            )
        elif kind in CHANGE_SOME:
            value = rng.choice(STATUSES) if kind == "status" else rng.choice(coach_ids)
            await connection.execute(CHANGE_SOME[kind], org_id, size, value)
        elif kind == "org-wide status":
            # One statement that moves many rows between running and not, both ways at once.
            await connection.execute(
                "UPDATE participant SET status = CASE WHEN status = 'paused' THEN 'stopped'"
                " WHEN status = 'stopped' THEN 'paused' ELSE status END WHERE org_id = $1",
                org_id,
            )
        else:
            await connection.execute(
                "DELETE FROM participant WHERE id IN"
                " (SELECT id FROM participant WHERE org_id = $1 ORDER BY random() LIMIT $2)",
                org_id,
                size,
            )
        return kind

    kinds = set()
    for step in range(120):
        async with connection.transaction():
            kinds.add(await random_change())
            if step % 10 == 0:
                kinds.add(await random_change())  # two changes in one transaction
        assert await kept(connection) == await counted(connection), f"after step {step}"
    assert kinds == {"insert", "status", "coach_id", "org-wide status", "delete"}
    assert sum((await kept(connection)).values()) > 0

    # A change that is rolled back leaves the counts as they were.
    before = await kept(connection)
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("UPDATE participant SET status = 'stopped'")
    assert await kept(connection) == await counted(connection)
    await transaction.rollback()
    assert await kept(connection) == before

    await connection.execute("TRUNCATE participant CASCADE")
    assert await kept(connection) == {}
    await insert_participants(connection, *organisations[1], ["enrolled", "active", "paused", "pending"])
    assert await kept(connection) == await counted(connection)
    assert sum((await kept(connection)).values()) == 3
