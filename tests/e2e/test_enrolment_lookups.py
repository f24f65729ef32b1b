"""The look-up every enrolment batch makes before it takes the organisation's lock (which of these
addresses already run here?) stays an index look-up in a large organisation, also in the generic
plan PostgreSQL chooses for a prepared statement after five runs. With the running statuses as a
parameter, that plan could not use the partial index and read every participant of the
organisation: 3.8 ms per batch on average in the enrolment benchmark, 14 ms in an organisation of
25,000. Real PostgreSQL, a fresh enrolment database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.enrolment import storage
from shared.db import asyncpg_dsn
from tests.e2e.test_running_participants import insert_participants, organisation_with_coaches
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

PARTICIPANTS = 5_000


@pytest.fixture
async def connection(infrastructure: None) -> AsyncIterator[asyncpg.Connection]:
    async with fresh_database("enrolment") as url:
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            yield connection
        finally:
            await connection.close()


async def test_running_addresses_are_looked_up_in_the_partial_index_in_a_generic_plan(
    connection: asyncpg.Connection,
) -> None:
    org_id, coach_ids = await organisation_with_coaches(connection, 2)
    statuses = ["active"] * (PARTICIPANTS - 20) + ["stopped"] * 10 + ["completed"] * 10
    await insert_participants(connection, org_id, coach_ids, statuses)
    await connection.execute("ANALYZE participant")
    running = await connection.fetch(
        "SELECT email FROM participant WHERE org_id = $1 AND status = 'active' ORDER BY email LIMIT 2", org_id
    )
    ended = await connection.fetch(
        "SELECT email FROM participant WHERE org_id = $1 AND status = 'stopped' ORDER BY email LIMIT 2", org_id
    )
    asked = [row["email"] for row in running + ended] + ["nieuw@example.org"]

    # What PostgreSQL does with the service's prepared statement once it settles on a generic plan.
    await connection.execute("SET plan_cache_mode = force_generic_plan")
    found = await storage.running_emails_among(connection=connection, org_id=org_id, emails=asked)
    assert found == {row["email"] for row in running}
    assert await storage.running_emails_among(connection=connection, org_id=uuid.uuid4(), emails=asked) == set()

    await connection.execute(f"PREPARE running_emails AS {storage._RUNNING_EMAILS_AMONG}")
    addresses = ", ".join("'" + email.replace("'", "''") + "'" for email in asked)
    explained = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE running_emails('{org_id}', ARRAY[{addresses}])"
    plan = "\n".join(row[0] for row in await connection.fetch(explained))
    assert "uq_participant_active_email" in plan, plan
    assert "Rows Removed by Filter" not in plan, plan
