"""The hit processor on the real stack: hits logged while it is dead (SIGKILL) wait in the
hit log and each becomes exactly one open and one mail.opened once it runs again; two
processors at once share the log and still record each hit once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from uuid import uuid4

import httpx
import pytest

from deploy.local import stack as local_stack
from tests.e2e.conftest import (
    MAIL_CLIENT,
    TRACKING,
    assert_each_open_once,
    db_count,
    eventually,
    opens_on_kafka,
    sent_pixel_token,
)
from tests.e2e.test_mailer_schedule import free_port

pytestmark = pytest.mark.stack
PROCESSOR = "tracking-hit-processor"


async def kill_processor() -> None:
    pid = local_stack.running_pid(PROCESSOR)
    assert pid is not None, "the local stack runs the hit processor"
    os.killpg(pid, signal.SIGKILL)

    async def gone() -> bool:
        return local_stack.running_pid(PROCESSOR) is None

    await eventually(gone, what="the hit processor to be gone")


async def processor_metric(name: str) -> float:
    """One sample of the stack's hit processor's /metrics (a metric without labels)."""
    _, port = local_stack.WORKER_METRICS_PORTS[PROCESSOR]
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


async def test_hits_logged_while_the_processor_is_killed_become_one_open_each(http: httpx.AsyncClient) -> None:
    participants, org_id = [uuid4() for _ in range(20)], uuid4()
    pixels = [
        f"{TRACKING}/o/{await sent_pixel_token(participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]
    await kill_processor()
    try:
        for gif in await asyncio.gather(*[http.get(pixel, headers=MAIL_CLIENT) for pixel in [*pixels, pixels[0]]]):
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        assert await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) == 0
        assert await db_count("tracking", "SELECT count(*) FROM pixel_hit WHERE org_id = $1", org_id) == 21, (
            "every answered hit is committed in the hit log"
        )
        answered = time.monotonic()
        await asyncio.sleep(1.0)  # the hits wait in the log while no processor runs
    finally:
        dead_until = time.monotonic()
        await asyncio.to_thread(local_stack.start_worker, PROCESSOR)

    async def all_recorded() -> bool:
        return await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) >= 21

    await eventually(all_recorded, what="the restarted processor to record every hit")
    # Its metrics say how long the hits waited: at least from their GIFs until it was started
    # again (it cannot commit before; it may well commit before start_worker returns).
    waited = await processor_metric("meer_tracking_hit_age_at_commit_seconds_sum")
    assert waited >= dead_until - answered >= 1.0
    assert await processor_metric("meer_tracking_hit_batch_seconds_count") >= 1
    opens = await eventually(lambda: opens_on_kafka(set(participants), 21), what="every open on Kafka")
    assert len(opens) == 21
    assert_each_open_once(opens, opened_twice=participants[0])
    assert await db_count("tracking", "SELECT count(*) FROM pixel_hit WHERE org_id = $1", org_id) == 0


async def test_two_processors_at_once_record_each_hit_once(http: httpx.AsyncClient) -> None:
    participants, org_id = [uuid4() for _ in range(100)], uuid4()
    pixels = [
        f"{TRACKING}/o/{await sent_pixel_token(participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.tracking.hit_processor",
        env={**os.environ, **local_stack.service_env("tracking"), "MEER_HIT_METRICS_PORT": str(free_port())},
        cwd=local_stack.ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Twice each, in waves, so both processors find hits of the same mails.
        for _ in range(2):
            for gif in await asyncio.gather(*[http.get(pixel, headers=MAIL_CLIENT) for pixel in pixels]):
                assert gif.status_code == 200

        async def all_recorded() -> bool:
            return await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) >= 200

        await eventually(all_recorded, what="both processors to record every hit")
    finally:
        second.terminate()
        await second.wait()
    opens = await eventually(lambda: opens_on_kafka(set(participants), 200), what="every open on Kafka")
    assert len(opens) == 200 and len({e.event_id for e in opens}) == 200
    assert await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) == 200
    firsts = await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1 AND first_open", org_id)
    assert firsts == 100, "one first open per mail, whichever processor took it"
