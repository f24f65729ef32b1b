"""Benchmark of the enrolment API: `POST /api/organisations/{id}/participants` with an
organisation API key, from 16 concurrent connections (wrk, MEER_BENCH_SECONDS each run) into
one organisation that already has 2,000 participants, against a bare FastAPI endpoint (its own
uvicorn process) that inserts one row into PostgreSQL per request, driven the same way, in one
run: with one process of each, then with two (the connections split over them, as a load
balancer would; the second enrolment replica is started here if the stack runs only one).

The enrolment API is measured twice: with the whole stack running, and with the services that
consume each enrolment at once (mailer, coaching) stopped. On a 2-core machine those consumers,
their databases and Kafka take more than half of the cores beside the API; the second pair shows
what the API alone takes. The consumers catch up afterwards (the benchmark waits for it),
and the cores each process used during each run are printed.

    ./meer bench -k enrolment_api

Needs the local stack (MEER_LOCAL_PORT_OFFSET / MEER_VAR_DIR as for the end-to-end tests).
The target is at least 300 enrolments/s; every enrolment answered 201 is stored with its
participant.enrolled outbox row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from deploy.local import stack as local_stack
from shared.db import asyncpg_dsn
from shared.events import Topic
from tests.bench.bench_pixel import free_port, parse_wrk, start_server, stop_server, wait_for_http
from tests.bench.bench_replicas import ensure_running
from tests.bench.machine import MachineCpu, cpu_by_process, cpu_seconds, cpu_used_between, load
from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    add_coach,
    consumer_lag,
    create_organisation,
    db_count,
    eventually,
)

pytestmark = pytest.mark.bench

CLIENTS = int(os.environ.get("MEER_BENCH_CLIENTS", "16"))
SECONDS = int(os.environ.get("MEER_BENCH_SECONDS", "15"))
EXISTING = 2_000
COACHES = 10
TARGET = 300
BARE_TABLE = "bench_bare_enrolment"
BARE_APP = "tests.bench.bench_enrolment_api:bare_app"
DOWNSTREAM = ("mailer", "coaching")
"""The services that consume each new enrolment at once (a day-1 mail planned, a dashboard row)."""
STOPPED = ", consumers stopped"


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


@dataclass
class Run:
    """One measured run: the rate wrk saw, its p99, the server's CPU per enrolment."""

    created: int
    seconds: float
    p99_ms: float
    cpu_ms: float

    @property
    def rate(self) -> float:
        return self.created / self.seconds


@contextlib.asynccontextmanager
async def consumers_stopped(names: Sequence[str]) -> AsyncIterator[None]:
    """Stop these local services (as ./meer down does) and start them again afterwards: what the
    API alone can take, with the cores the consumers would use beside it free. Their events wait
    on Kafka meanwhile; the benchmark waits for them to catch up after its runs. Stopped, not
    frozen: a benchmark killed in between leaves them down, and ./meer up starts them again."""
    stopped = [local_stack.ServiceProcess(name, 1) for name in names if local_stack.running_pid(name) is not None]
    for process in stopped:
        await asyncio.to_thread(local_stack.stop_process, process.name)
    try:
        yield
    finally:
        await asyncio.to_thread(ensure_running, stopped)


def wrk_script(workdir: Path, org_id: str, api_key: str, run: str) -> Path:
    """A wrk script that POSTs enrolments with unique addresses and prints how many answers
    were 201 and how many were not (the first few others with their body)."""
    script = workdir / f"enrol-{run}.lua"
    script.write_text(
        f"""
threads = {{}}
local started = 0
function setup(thread)
  started = started + 1
  thread:set("tid", started)
  table.insert(threads, thread)
end
sent, answered, created, other = 0, 0, 0, 0
local path = "/api/organisations/{org_id}/participants"
local headers = {{["X-Api-Key"] = "{api_key}", ["Content-Type"] = "application/json"}}
request = function()
  sent = sent + 1
  local body = string.format(
    '{{"first_name": "Deelnemer %d", "email": "api-{run}-%d-%d@example.org", "phone": "06 12345678"}}',
    sent, tid, sent)
  return wrk.format("POST", path, headers, body)
end
response = function(status, headers, body)
  answered = answered + 1
  if status == 201 then created = created + 1 else
    other = other + 1
    if other <= 3 then io.stderr:write(status .. " " .. body .. "\\n") end
  end
end
done = function(summary, latency, requests)
  local c, o = 0, 0
  for _, thread in ipairs(threads) do c = c + thread:get("created"); o = o + thread:get("other") end
  io.write(string.format("created %d other %d\\n", c, o))
end
"""
    )
    return script


def drive(
    urls: list[str], org_id: str, api_key: str, seconds: int, run: str, workdir: Path, server_pids: list[int]
) -> Run:
    """Enrolments for `seconds` from CLIENTS connections spread over `urls` (a load balancer in
    front of the replicas), driven by wrk: one Python client process could not send more than
    ~150 requests/s on this machine, below the target it is meant to show. Every answer must be 201."""
    threads = 2 if len(urls) == 1 else 1
    cpu_before = sum(cpu_seconds(pid) for pid in server_pids)
    generators = [
        subprocess.Popen(
            [
                "wrk",
                f"-t{threads}",
                f"-c{CLIENTS // len(urls)}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(wrk_script(workdir, org_id, api_key, f"{run}-{n}")),
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, url in enumerate(urls)
    ]
    outputs = [generator.communicate() for generator in generators]
    cpu = sum(cpu_seconds(pid) for pid in server_pids) - cpu_before
    created, elapsed, p99s = 0, 0.0, []
    for stdout, stderr in outputs:
        counts = re.search(r"created (\d+) other (\d+)", stdout)
        assert counts, stdout + stderr
        assert int(counts.group(2)) == 0, f"answers other than 201: {stderr}"
        result = parse_wrk(stdout)
        created += int(counts.group(1))
        # wrk's rate is its own threads' answers over its own run; the runs overlap fully.
        elapsed = max(elapsed, result.requests / result.rps)
        p99s.append(result.p99_ms)
    return Run(created, elapsed, max(p99s), 1000 * cpu / created)


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


async def test_enrolment_api_against_a_bare_insert_endpoint(coaching_caught_up: None, workdir: Path) -> None:
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

    results: dict[str, Run] = {}
    machine_busy: dict[str, float] = {}
    stack_cpu: dict[str, dict[str, float]] = {}
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
    bare_ports = [free_port(), free_port()]
    bares = [
        start_server(
            [*uvicorn, "--factory", "--loop", "uvloop", "--port", str(port), BARE_APP],
            {},
            workdir / f"bare-{port}.log",
        )
        for port in bare_ports
    ]
    bare_urls = [f"http://127.0.0.1:{port}" for port in bare_ports]
    try:
        for url, server in zip(bare_urls, bares, strict=True):
            wait_for_http(f"{url}/healthz", server, workdir / f"bare-{url.rsplit(':', 1)[1]}.log")
            drive([url], org_id, api_key, 2, f"{run}w{url[-5:]}", workdir, [])  # warm-up
        for processes in (1, 2):
            results[f"bare FastAPI + INSERT x{processes}"] = drive(
                bare_urls[:processes],
                org_id,
                api_key,
                SECONDS,
                f"{run}b{processes}",
                workdir,
                [server.pid for server in bares[:processes]],
            )
    finally:
        for server in bares:
            stop_server(server)

    # Two replicas behind a load balancer, as deploy/ runs them: the second one started here if
    # the stack runs only one (MEER_LOCAL_REPLICAS_ENROLMENT), stopped again afterwards.
    replicas = [local_stack.ServiceProcess("enrolment", n) for n in (1, 2)]
    started = await asyncio.to_thread(ensure_running, replicas)
    accepted_before = await stored_by_api(org_id)
    created = 0
    try:
        for replica in replicas:
            created += drive([replica.url], org_id, api_key, 2, f"{run}w{replica.name}", workdir, []).created
        pids = [int(local_stack.running_pid(replica.name) or 0) for replica in replicas]
        for downstream in ("", STOPPED):
            async with consumers_stopped(DOWNSTREAM if downstream else ()):
                for processes in (1, 2):
                    label = f"enrolment API x{processes}{downstream}"
                    cpu_before, machine_before = cpu_by_process(), MachineCpu.now()
                    result = drive(
                        [replica.url for replica in replicas[:processes]],
                        org_id,
                        api_key,
                        SECONDS,
                        f"{run}s{processes}{'p' if downstream else ''}",
                        workdir,
                        pids[:processes],
                    )
                    # The whole stack answers for each enrolment at once (mailer and coaching
                    # consume it, PostgreSQL and Kafka carry it): on a small machine they share
                    # the cores.
                    machine_busy[label] = MachineCpu.now().busy_since(machine_before)
                    stack_cpu[label] = cpu_used_between(cpu_before, cpu_by_process())
                    results[label] = result
                    created += result.created
    finally:
        for process in started:
            await asyncio.to_thread(local_stack.stop_process, process.name)

    # wrk stops with up to CLIENTS requests unanswered per run; the service may still store those.
    stored = await stored_by_api(org_id) - accepted_before
    assert created <= stored <= created + (len(replicas) + 4) * CLIENTS, f"{created} answered 201, {stored} stored"
    started_waiting = time.perf_counter()
    for group in DOWNSTREAM:

        async def caught_up(group: str = group) -> bool:
            return await consumer_lag(group, (Topic.PARTICIPANT,)) == 0

        await eventually(caught_up, timeout=600, what=f"{group} to consume the enrolments it was stopped for")
    waited = time.perf_counter() - started_waiting

    print(
        f"\nEnrolment API, {SECONDS} s of enrolments from {CLIENTS} connections (wrk), one organisation"
        f" (load average {load()}):"
    )
    for name, result in results.items():
        print(
            f"  {name:42s} {result.seconds:6.2f} s  {result.rate:7.0f} /s  p99 {result.p99_ms:6.1f} ms"
            f"  server CPU {result.cpu_ms:5.2f} ms per request"
        )
    for label in machine_busy:
        window = results[label].seconds
        print(f"  {label}: cores used during the run (machine {100 * machine_busy[label]:.0f}% busy):")
        for kind, seconds in stack_cpu[label].items():
            if seconds >= 0.05 * window:
                print(f"      {kind:36} {seconds / window:4.2f} cores")
    print(f"  (then {waited:.0f} s until the stopped consumers had caught up)")
    for processes in (1, 2):
        service, bare = results[f"enrolment API x{processes}"], results[f"bare FastAPI + INSERT x{processes}"]
        print(f"  x{processes}: enrolment API / bare endpoint {service.rate / bare.rate:5.2f} of the rate")
    for downstream, where in (("", "the whole stack on this machine"), (STOPPED, "the API alone, consumers stopped")):
        best = max(results[f"enrolment API x{processes}{downstream}"].rate for processes in (1, 2))
        print(f"  target: enrolment API >= {TARGET} enrolments/s, {where} -> {'met' if best >= TARGET else 'NOT met'}")


async def stored_by_api(org_id: str) -> int:
    return await db_count(
        "enrolment", "SELECT count(*) FROM participant WHERE org_id = $1 AND source = 'api'", uuid.UUID(org_id)
    )
