"""Two coaching processes share the live view (issue #19): a second replica runs beside the
stack's coaching in the same consumer group, so Kafka splits the partitions between them,
and an admin's dashboard stream is open on each. Every open reaches both streams, so each
open applied by one replica reached a dashboard connected to the other (PostgreSQL
LISTEN/NOTIFY, see services/coaching/live.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from deploy.local.stack import service_env
from services.coaching.rebuild import TOPICS
from shared.events import Envelope, MailOpened
from tests.e2e.conftest import COACHING, consumer_lag, eventually, mint_staff_token, publish
from tests.e2e.test_mailer_schedule import free_port

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS = 12
"""Keyed by participant: with 3 partitions, both replicas apply some of them."""


@contextlib.asynccontextmanager
async def second_replica() -> AsyncIterator[str]:
    """Another `python -m services.coaching` on the stack's database and consumer group; its URL."""
    port = free_port()
    env = {**os.environ, **service_env("coaching"), "MEER_HTTP_PORT": str(port), "MEER_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.coaching"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get(f"{url}/readyz")).status_code == 200
                return False

            await eventually(ready, what="the second coaching replica to be ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def read_opens(response: httpx.Response, seen: set[str], ready: asyncio.Event) -> None:
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            if event == "ready":
                ready.set()
            elif event == "participant":
                data = json.loads(line.split(":", 1)[1])
                if data["event_type"] == MailOpened.TYPE:
                    seen.add(data["participant_id"])


@contextlib.asynccontextmanager
async def dashboard(http: httpx.AsyncClient, base_url: str, token: str, seen: set[str]) -> AsyncIterator[None]:
    """An open live stream of the admin's dashboard on one replica, collecting opened participants."""
    ready = asyncio.Event()
    async with http.stream("GET", f"{base_url}/api/live", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200
        reader = asyncio.create_task(read_opens(response, seen, ready))
        try:
            await asyncio.wait_for(ready.wait(), timeout=30)
            yield
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_an_open_applied_by_one_replica_reaches_dashboards_on_every_replica(stack: None) -> None:
    org = uuid.uuid4()
    token = mint_staff_token("org_admin", org)
    participants = [uuid.uuid4() for _ in range(PARTICIPANTS)]
    now = datetime.now(UTC)
    opens = [
        Envelope.wrap(
            MailOpened(delivery_id=uuid.uuid4(), day=1, opened_at=now, first_open=True, likely_automated=False),
            org_id=org,
            participant_id=participant,
            occurred_at=now,
        )
        for participant in participants
    ]
    on_first: set[str] = set()
    on_second: set[str] = set()
    async with second_replica() as replica, httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
        async with dashboard(http, COACHING, token, on_first), dashboard(http, replica, token, on_second):
            await publish(opens)
            expected = {str(p) for p in participants}

            async def both_heard() -> bool:
                return on_first >= expected and on_second >= expected

            await eventually(both_heard, what="every open on the dashboards of both replicas")

        async def committed() -> bool:
            return await consumer_lag("coaching", TOPICS) == 0

        await eventually(committed, what="the coaching group to commit the opens")
