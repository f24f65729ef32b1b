"""The look-up every enrolment batch makes before it takes the organisation's lock (which of these
addresses already run here?) stays an index look-up in a large organisation, also in the generic
plan PostgreSQL may choose for a prepared statement after five runs. With the running statuses as
a parameter, that plan could not use the partial index and read every participant of the
organisation: 14 ms in an organisation of 25,000, against 0.06 ms. Real PostgreSQL, a fresh
enrolment database."""

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


async def test_running_addresses_are_looked_up_in_the_partial_index_also_in_a_generic_plan(
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

    addresses = ", ".join("'" + email.replace("'", "''") + "'" for email in asked)
    for plan_cache_mode in ("auto", "force_generic_plan"):
        # The first runs of a prepared statement, then the generic plan PostgreSQL may settle on.
        await connection.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        found = await storage.running_emails_among(connection=connection, org_id=org_id, emails=asked)
        assert found == {row["email"] for row in running}
        assert await storage.running_emails_among(connection=connection, org_id=uuid.uuid4(), emails=asked) == set()

        await connection.execute(f"PREPARE running_emails AS {storage._RUNNING_EMAILS_AMONG}")
        explained = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE running_emails('{org_id}', ARRAY[{addresses}])"
        plan = "\n".join(row[0] for row in await connection.fetch(explained))
        await connection.execute("DEALLOCATE running_emails")
        assert "uq_participant_active_email" in plan, plan
        assert "Rows Removed by Filter" not in plan, plan
