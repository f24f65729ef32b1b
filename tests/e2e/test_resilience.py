"""Services and lost dependencies: a bounded wait at start with one clear line, /readyz
that tells the truth while running, and recovery without a restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.local import stack as local_stack
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    MAIL_CLIENT,
    MAILER,
    TRACKING,
    enrol_and_receive_day_one,
    eventually,
    opens_on_kafka,
    tracking_links,
)

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def start_service_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.tracking"],
        cwd=ROOT,
        # This stack's settings (ports shift with MEER_LOCAL_PORT_OFFSET), then the one broken dependency.
        env={
            **os.environ,
            **local_stack.service_env("tracking"),
            "MEER_HTTP_PORT": "18993",
            "MEER_STARTUP_TIMEOUT_S": "3",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "dependency"),
    [
        ({"MEER_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "Kafka"),
        ({"MEER_DATABASE_URL": "postgresql+asyncpg://meer@127.0.0.1:1/meer_tracking"}, "PostgreSQL"),
    ],
)
def test_service_without_a_dependency_exits_with_one_clear_line(
    stack: None, env: dict[str, str], dependency: str
) -> None:
    started = time.monotonic()
    result = start_service_with(env)
    assert result.returncode == 1
    assert time.monotonic() - started < 30, "the wait at start is bounded"
    lines = [line for line in (result.stdout + result.stderr).splitlines() if f"cannot reach {dependency}" in line]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


async def readiness(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, bool]]:
    try:
        response = await http.get(f"{url}/readyz")
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json().get("checks", {})


async def test_lost_postgres_is_reported_and_the_services_recover(http: httpx.AsyncClient) -> None:
    await asyncio.to_thread(local_stack.stop_postgres)
    try:

        async def reports_postgres_down() -> bool:
            status, checks = await readiness(http, COACHING)
            return status == 503 and checks.get("postgres") is False

        await eventually(reports_postgres_down, what="/readyz to report PostgreSQL down")
    finally:
        await asyncio.to_thread(local_stack.start_postgres)

    await _every_service_ready_and_the_flow_through_tracking_works(http)


async def test_lost_kafka_is_reported_and_the_flow_recovers(http: httpx.AsyncClient) -> None:
    await asyncio.to_thread(local_stack.stop_process, "kafka", 30)
    try:

        async def reports_kafka_down() -> bool:
            status, checks = await readiness(http, MAILER)
            return status == 503 and checks.get("kafka") is False

        await eventually(reports_kafka_down, what="/readyz to report Kafka down")
    finally:
        await asyncio.to_thread(local_stack.start_kafka)

    await _every_service_ready_and_the_flow_through_tracking_works(http)


async def _every_service_ready_and_the_flow_through_tracking_works(http: httpx.AsyncClient) -> None:
    """All four services report ready again, and an enrolment reaches the participant's mailbox,
    whose open tracking records and publishes (tracking consumed the mail.sent to know the mail)."""
    for url in (ENROLMENT, MAILER, TRACKING, COACHING):
        await eventually(lambda url=url: _ready(http, url), what=f"{url} ready again")
    participant_id, message = await enrol_and_receive_day_one(http)
    pixel = await http.get(tracking_links(message)["o"], headers=MAIL_CLIENT)
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    await eventually(lambda: opens_on_kafka({participant_id}, 1), what="tracking to publish the open")


async def _ready(http: httpx.AsyncClient, url: str) -> bool:
    status, _ = await readiness(http, url)
    return status == 200
