"""Benchmark of the enrolment API: `POST /api/organisations/{id}/participants` with an
organisation API key, from 16 concurrent clients into one organisation that already has
2,000 participants, against a bare FastAPI endpoint (its own uvicorn process) that inserts
one row into PostgreSQL per request, driven by the same client, in one run.

    .venv/bin/python -m pytest tests/bench/bench_enrolment_api.py -s -m bench -o norecursedirs=

Needs the local stack (MEER_LOCAL_PORT_OFFSET / MEER_VAR_DIR as for the end-to-end tests).
The target is at least 300 enrolments/s; every enrolment answered 201 is stored with its
participant.enrolled outbox row.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from deploy.local import stack as local_stack
from shared.db import asyncpg_dsn
from tests.bench.bench_pixel import free_port, start_server, stop_server, wait_for_http
from tests.e2e.conftest import ENROLMENT, LICENSOR, add_coach, create_organisation, db_count

pytestmark = pytest.mark.bench

CLIENTS = int(os.environ.get("MEER_BENCH_CLIENTS", "16"))
ENROLMENTS = int(os.environ.get("MEER_BENCH_ENROLMENTS", "3000"))
EXISTING = 2_000
COACHES = 10
TARGET = 300
BARE_TABLE = "bench_bare_enrolment"


class BareEnrolment(BaseModel):
    first_name: str
    email: str


def bare_app() -> FastAPI:
    """The floor: a FastAPI route that checks an API key header and inserts one row into
    PostgreSQL through an asyncpg pool (no ORM, no rules, no event)."""
    app = FastAPI()
    dsn = asyncpg_dsn(local_stack.service_env("enrolment")["MEER_DATABASE_URL"])
    pools: list[asyncpg.Pool] = []

    @app.on_event("startup")
    async def connect() -> None:
        pools.append(await asyncpg.create_pool(dsn, min_size=10, max_size=10))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/organisations/{org_id}/participants", status_code=201)
    async def enrol(org_id: uuid.UUID, body: BareEnrolment) -> dict[str, str]:
        new_id = uuid.uuid4()
        await pools[0].execute(
            "INSERT INTO bench_bare_enrolment (id, org_id, first_name, email) VALUES ($1, $2, $3, $4)",
            new_id,
            org_id,
            body.first_name,
            body.email,
        )
        return {"id": str(new_id)}

    return app


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="meer-bench-") as name:
        yield Path(name)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    base_url: str, org_id: str, api_key: str, total: int, run: str, server_pid: int | None = None
) -> tuple[float, list[float], float]:
    """`total` enrolments from CLIENTS concurrent clients (each its own connection); the
    seconds taken, each request's latency and the server's CPU seconds meanwhile (a figure
    that other load on the machine changes much less than the rate). Every answer must be 201."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    latencies: list[float] = []
    url = f"{base_url}/api/organisations/{org_id}/participants"

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60, headers={"X-Api-Key": api_key}) as http:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"first_name": f"Deelnemer {i}", "email": f"api-{run}-{i}@example.org", "phone": "06 12345678"}
                started = time.perf_counter()
                response = await http.post(url, json=body)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    return seconds, sorted(latencies), cpu


def p99(latencies: list[float]) -> float:
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000


async def seed(http: httpx.AsyncClient, run: str) -> tuple[str, str]:
    """An organisation with coaches, an API key and EXISTING participants (by CSV import)."""
    organisation = await create_organisation(http, max_active_participants=100_000)
    org_id = organisation["id"]
    for i in range(COACHES):
        await add_coach(http, org_id, name=f"Coach {i}")
    key = await http.post(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=LICENSOR)
    assert key.status_code == 201, key.text
    rows = ["Voornaam;E-mailadres"] + [f"Bestaand {i};bestaand-{run}-{i}@example.org" for i in range(EXISTING)]
    imported = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/import",
        headers=LICENSOR,
        files={"file": ("deelnemers.csv", "\n".join(rows).encode(), "text/csv")},
    )
    assert imported.status_code == 200, imported.text
    return org_id, str(key.json()["api_key"])


async def test_enrolment_api_against_a_bare_insert_endpoint(stack: None, workdir: Path) -> None:
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(timeout=120) as http:
        org_id, api_key = await seed(http, run)

    dsn = asyncpg_dsn(local_stack.service_env("enrolment")["MEER_DATABASE_URL"])
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} (id uuid PRIMARY KEY, org_id uuid NOT NULL,"
            " first_name text NOT NULL, email text NOT NULL)"
        )
    finally:
        await conn.close()

    results: dict[str, tuple[float, list[float], float]] = {}
    port = free_port()
    log_file = workdir / "bare.log"
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
    bare = start_server(
        [*uvicorn, "--factory", "--loop", "uvloop", "--port", str(port), "tests.bench.bench_enrolment_api:bare_app"],
        {},
        log_file,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", bare, log_file)
        await drive(f"http://127.0.0.1:{port}", org_id, api_key, 200, run + "w")  # warm-up
        results["bare FastAPI + one INSERT"] = await drive(
            f"http://127.0.0.1:{port}", org_id, api_key, ENROLMENTS, run, bare.pid
        )
    finally:
        stop_server(bare)

    await drive(ENROLMENT, org_id, api_key, 200, run + "w")  # warm-up
    service_pid = int((local_stack.RUN_DIR / "enrolment.pid").read_text())
    results["enrolment API (API key)"] = await drive(ENROLMENT, org_id, api_key, ENROLMENTS, run, service_pid)

    stored = await db_count(
        "enrolment", "SELECT count(*) FROM participant WHERE org_id = $1 AND source = 'api'", uuid.UUID(org_id)
    )
    assert stored == ENROLMENTS + 200, "every answered enrolment is stored"

    def rate(name: str) -> float:
        return ENROLMENTS / results[name][0]

    print(f"\nEnrolment API, {ENROLMENTS} enrolments from {CLIENTS} concurrent clients, one organisation:")
    for name, (seconds, latencies, cpu) in results.items():
        print(
            f"  {name:28s} {seconds:6.2f} s  {rate(name):7.0f} /s  p99 {p99(latencies):6.1f} ms"
            f"  server CPU {1000 * cpu / ENROLMENTS:5.2f} ms per request"
        )
    service = rate("enrolment API (API key)")
    bare_cpu = results["bare FastAPI + one INSERT"][2]
    service_cpu = results["enrolment API (API key)"][2]
    print(f"  enrolment API / bare endpoint {service / rate('bare FastAPI + one INSERT'):5.2f} of the rate")
    if service_cpu:
        print(f"  bare endpoint / enrolment API {bare_cpu / service_cpu:5.2f} of the server CPU per request")
    print(f"  target: enrolment API >= {TARGET} enrolments/s  -> {'met' if service >= TARGET else 'NOT met'}")
