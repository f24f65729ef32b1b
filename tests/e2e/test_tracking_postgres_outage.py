"""PostgreSQL stopped while mails are opened: every reader still gets the image, each hit is
fsync'd to the pixel's local journal before its GIF goes out, and every open is recorded and
reaches Kafka, once, when the database is back; also when the pixel process was killed
(SIGKILL) during the outage, with the hits only in its journal."""

from __future__ import annotations

import asyncio
import os
import signal
from uuid import UUID, uuid4

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

pytestmark = pytest.mark.stack


async def sent_pixels(participants: list[UUID], org_id: UUID) -> list[str]:
    return [
        f"{TRACKING}/o/{await sent_pixel_token(participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]


async def open_all(http: httpx.AsyncClient, pixels: list[str]) -> None:
    """Each pixel once and the first one twice, concurrently, as mail clients do."""
    hits = [http.get(pixel, headers=MAIL_CLIENT, timeout=30) for pixel in [*pixels, pixels[0]]]
    for gif in await asyncio.gather(*hits):
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"


async def assert_every_open_once(participants: list[UUID], org_id: UUID) -> None:
    async def all_recorded() -> bool:
        return await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) >= 21

    await eventually(all_recorded, what="every open recorded once PostgreSQL is back")
    opens = await eventually(lambda: opens_on_kafka(set(participants), 21), what="every open on Kafka")
    assert await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) == 21
    assert len(opens) == 21
    assert_each_open_once(opens, opened_twice=participants[0])


async def test_opens_during_a_postgres_outage_are_recorded_when_it_is_back(http: httpx.AsyncClient) -> None:
    participants, org_id = [uuid4() for _ in range(20)], uuid4()
    pixels = await sent_pixels(participants, org_id)
    await asyncio.to_thread(local_stack.stop_postgres)
    try:
        await open_all(http, pixels)
        metrics = (await http.get(f"{TRACKING}/metrics")).text
        assert "meer_tracking_pixel_hits_waiting 0.0" in metrics, "no answered hit waits in memory"
        journaled = float(metrics.split("\nmeer_tracking_pixel_hits_journaled ")[1].split()[0])
        assert journaled >= 21, "the hits are in the journal"
    finally:
        await asyncio.to_thread(local_stack.start_postgres)
    await assert_every_open_once(participants, org_id)


async def test_opens_survive_a_pixel_process_killed_during_a_postgres_outage(http: httpx.AsyncClient) -> None:
    participants, org_id = [uuid4() for _ in range(20)], uuid4()
    pixels = await sent_pixels(participants, org_id)
    await asyncio.to_thread(local_stack.stop_postgres)
    try:
        await open_all(http, pixels)
        pid = local_stack.running_pid("tracking")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # no shutdown: what it answered is only in its journal

        async def gone() -> bool:
            return local_stack.running_pid("tracking") is None

        await eventually(gone, what="the pixel process to be gone")
    finally:
        await asyncio.to_thread(local_stack.start_postgres)
    # The restarted process replays the journal the killed one left.
    await asyncio.to_thread(local_stack.start_services, False)
    await assert_every_open_once(participants, org_id)
    assert not list(local_stack.PIXEL_JOURNAL_DIR.glob("*.journal")), "the replayed journal is removed"
