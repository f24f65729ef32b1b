"""The look-up every enrolment batch makes before it takes the organisation's lock (which of these
addresses already run here?) stays an index probe in a large organisation.

Two plans made it read all of the organisation's participants instead:
- the running statuses as a parameter: the generic plan could not use the partial index (14 ms
  in an organisation of 25,000, against 0.06 ms);
- an organisation that enrolled thousands since the table's last ANALYZE, on a platform whose
  organisations all fit PostgreSQL's list of most common values (tens, as here): its custom plans
  estimated the organisation at one participant (3.8-7 ms per batch in the enrolment benchmark).
The batches' connections plan generically (enrolment_batches.SERVER_SETTINGS); this checks both
conditions with those settings. Real PostgreSQL, a fresh enrolment database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.enrolment import storage
from services.enrolment.enrolment_batches import SERVER_SETTINGS
from shared.db import asyncpg_dsn
from tests.e2e.test_running_participants import insert_participants, organisation_with_coaches
from tests.support.databases import fresh_database

pytestmark = pytest.mark.stack

PARTICIPANTS = 5_000
OTHER_ORGANISATIONS = 40


@pytest.fixture
async def connection(infrastructure: None) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the enrolment batches open them, to a fresh enrolment database."""
    async with fresh_database("enrolment") as url:
        connection = await asyncpg.connect(asyncpg_dsn(url), server_settings=SERVER_SETTINGS)
        try:
            yield connection
        finally:
            await connection.close()


async def plan_of_the_look_up(connection: asyncpg.Connection, org_id: uuid.UUID, asked: list[str]) -> str:
    await connection.execute(f"PREPARE running_emails AS {storage._RUNNING_EMAILS_AMONG}")
    try:
        addresses = ", ".join("'" + email.replace("'", "''") + "'" for email in asked)
        explained = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE running_emails('{org_id}', ARRAY[{addresses}])"
        return "\n".join(row[0] for row in await connection.fetch(explained))
    finally:
        await connection.execute("DEALLOCATE running_emails")


@pytest.mark.parametrize("analysed", [True, False], ids=["analysed", "grown-since-analyse"])
async def test_running_addresses_are_probed_in_the_partial_index_of_a_large_organisation(
    connection: asyncpg.Connection, analysed: bool
) -> None:
    for _ in range(OTHER_ORGANISATIONS):
        other_id, other_coaches = await organisation_with_coaches(connection, 1)
        await insert_participants(connection, other_id, other_coaches, ["active"] * 200)
    await connection.execute("ANALYZE participant")
    org_id, coach_ids = await organisation_with_coaches(connection, 2)
    statuses = ["active"] * (PARTICIPANTS - 20) + ["stopped"] * 10 + ["completed"] * 10
    await insert_participants(connection, org_id, coach_ids, statuses)
    if analysed:
        await connection.execute("ANALYZE participant")
    running = await connection.fetch(
        "SELECT email FROM participant WHERE org_id = $1 AND status = 'active' ORDER BY email LIMIT 2", org_id
    )
    ended = await connection.fetch(
        "SELECT email FROM participant WHERE org_id = $1 AND status = 'stopped' ORDER BY email LIMIT 2", org_id
    )
    asked = [row["email"] for row in running + ended] + ["nieuw@example.org"]

    found = await storage.running_emails_among(connection=connection, org_id=org_id, emails=asked)
    assert found == {row["email"] for row in running}
    assert await storage.running_emails_among(connection=connection, org_id=uuid.uuid4(), emails=asked) == set()

    plan = await plan_of_the_look_up(connection, org_id, asked)
    assert "uq_participant_active_email" in plan, plan
    assert "Rows Removed by Filter" not in plan, plan
