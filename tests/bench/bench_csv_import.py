"""Benchmark: a 10,000-row CSV imported through enrolment's import path (read, check every
row, choose coaches, insert each participant with its participant.enrolled outbox row in
one transaction), by the same code the CLI and the API use, and by the CLI command itself,
next to a bare asyncpg COPY of the same rows (no checks, no events), in one run, on the
local stack's PostgreSQL, each in a fresh migrated database.

    .venv/bin/python -m pytest tests/bench/bench_csv_import.py -s -m bench -o norecursedirs=
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.enrolment import csv_rows, storage
from services.enrolment.schemas import OrganisationCreate
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases import csv_import, organisations, staff_accounts
from shared.db import Database
from tests.support.databases import fresh_database

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]
ROWS = int(os.environ.get("MEER_BENCH_CSV_ROWS", "10000"))
COACHES = 20


def spreadsheet(rows: int, run: str) -> bytes:
    """A Dutch Excel export: BOM, semicolons, CRLF, Dutch dates and local phone numbers."""
    start = (date.today() + timedelta(days=14)).strftime("%d-%m-%Y")
    lines = ["Voornaam;E-mailadres;Telefoonnummer;Startdatum;Verzendtijd"]
    lines += [f"Deelnemer {i};deelnemer-{run}-{i}@example.org;06 {10_000_000 + i};{start};8:30" for i in range(rows)]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


async def seed_organisation(database: Database, settings: EnrolmentSettings) -> uuid.UUID:
    async with database.session() as session:
        organisation = organisations.license_organisation(
            session=session,
            body=OrganisationCreate(
                name="Bench",
                display_name="Bench",
                licence_valid_from=date.today() - timedelta(days=1),
                licence_valid_until=date.today() + timedelta(days=365),
                max_active_participants=100_000,
            ),
            base_url=settings.enrolment_base_url,
        )
        await session.flush()
        for i in range(COACHES):
            await staff_accounts.invite_staff(
                session=session,
                organisation=organisation,
                name=f"Coach {i}",
                email=f"coach-{uuid.uuid4().hex[:8]}@example.org",
                role="coach",
                settings=settings,
                now=datetime.now(UTC),
            )
        await session.commit()
        return organisation.id


async def import_through_the_service(database: Database, org_id: uuid.UUID, data: bytes) -> dict[str, float]:
    """The import path of the CLI and the API, phase by phase."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    table = csv_rows.read_csv(data)
    timings["read"] = time.perf_counter() - started
    async with database.session() as session:
        organisation = await storage.get_organisation(session=session, org_id=org_id, for_update=True)
        assert organisation is not None
        now = datetime.now(UTC)
        mark = time.perf_counter()
        context = await csv_import.import_context(session=session, organisation=organisation, now=now)
        plan = csv_rows.plan_import(table.rows, context)
        timings["check"] = time.perf_counter() - mark
        assert len(plan.accepted) == ROWS and not plan.rejected
        mark = time.perf_counter()
        imported = await csv_import.write_import(
            session=session, organisation=organisation, accepted=plan.accepted, now=now
        )
        await session.commit()
        timings["write"] = time.perf_counter() - mark
    assert len(imported) == ROWS
    timings["total"] = time.perf_counter() - started
    return timings


async def bare_copy(url: str, org_id: uuid.UUID, coach_id: uuid.UUID, data: bytes) -> float:
    """The floor: the same rows, split naively and COPYed in, no checks and no events."""
    started = time.perf_counter()
    lines = data.decode("utf-8-sig").splitlines()[1:]
    now = datetime.now(UTC)
    start = date.today() + timedelta(days=14)
    records = []
    for line in lines:
        first_name, email, phone, _, _ = line.split(";")
        records.append(
            (
                uuid.uuid4(),
                org_id,
                coach_id,
                first_name,
                email,
                phone,
                start,
                datetime.strptime("08:30", "%H:%M").time(),
                "Europe/Amsterdam",
                "standaard",
                "enrolled",
                "csv",
                now,
                now,
            )
        )
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.copy_records_to_table(
            "participant",
            records=records,
            columns=[
                "id",
                "org_id",
                "coach_id",
                "first_name",
                "email",
                "phone",
                "start_date",
                "send_time",
                "timezone",
                "variant",
                "status",
                "source",
                "created_at",
                "updated_at",
            ],
        )
    finally:
        await conn.close()
    return time.perf_counter() - started


async def test_csv_import_of_ten_thousand_rows_against_a_bare_copy(infrastructure: None, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    data = spreadsheet(ROWS, run)
    settings = EnrolmentSettings()

    async with fresh_database("enrolment") as url:
        database = Database(url, pool_size=2)
        try:
            org_id = await seed_organisation(database, settings)
            service = await import_through_the_service(database, org_id, data)
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            try:
                participants = await conn.fetchval("SELECT count(*) FROM participant WHERE org_id = $1", org_id)
                events = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE convert_from(value, 'UTF8') LIKE '%\"participant.enrolled\"%'"
                )
                spread = await conn.fetch(
                    "SELECT count(*) AS n FROM participant WHERE org_id = $1 GROUP BY coach_id", org_id
                )
            finally:
                await conn.close()
            assert participants == ROWS and events == ROWS, "every row with its one event"
            loads = [row["n"] for row in spread]
            assert len(loads) == COACHES and max(loads) - min(loads) <= 1, "coaches evenly loaded"

            # The same rows for a second organisation, copied in bare.
            other = await seed_organisation(database, settings)
            async with database.session() as session:
                coaches = await storage.coach_lookup(session=session, org_id=other)
            bare = await bare_copy(url, other, next(iter(coaches.values())), spreadsheet(ROWS, run + "b"))
        finally:
            await database.dispose()

    # The CLI command as a user runs it: a new process, its own settings, a progress bar.
    async with fresh_database("enrolment") as url:
        database = Database(url, pool_size=1)
        try:
            cli_org = await seed_organisation(database, settings)
        finally:
            await database.dispose()
        sheet = tmp_path / "deelnemers.csv"
        sheet.write_bytes(spreadsheet(ROWS, run + "c"))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "services.enrolment.cli", "import-csv", str(sheet), "--org", str(cli_org)],
            cwd=ROOT,
            env={**os.environ, "MEER_DATABASE_URL": url},
            capture_output=True,
            text=True,
        )
        cli_seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        assert f"imported {ROWS} of {ROWS} rows; 0 rejected" in done.stdout

    print(f"\nCSV import of {ROWS} rows ({len(data) / 1e6:.1f} MB), in one run:")
    print(
        f"  enrolment import path   {service['total']:6.2f} s  {ROWS / service['total']:8.0f} rows/s"
        f"  (read {service['read']:.2f} s, check {service['check']:.2f} s, write with events {service['write']:.2f} s)"
    )
    print(f"  CLI import-csv command  {cli_seconds:6.2f} s  {ROWS / cli_seconds:8.0f} rows/s  (new process included)")
    print(f"  bare asyncpg COPY       {bare:6.2f} s  {ROWS / bare:8.0f} rows/s  (no checks, no events)")
    print(f"  import path / bare COPY {service['total'] / bare:6.1f}x the time")
