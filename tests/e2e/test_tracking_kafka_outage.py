"""Kafka stopped while mails are opened, then started again: every open arrives, once."""

from __future__ import annotations

import asyncio
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

pytestmark = pytest.mark.stack


async def test_opens_during_a_kafka_outage_all_arrive_afterwards_once(http: httpx.AsyncClient) -> None:
    participants = [uuid4() for _ in range(20)]
    org_id = uuid4()
    pixels = [
        f"{TRACKING}/o/{await sent_pixel_token(participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]
    await asyncio.to_thread(local_stack.stop_process, "kafka", 30)
    try:
        for pixel in pixels:
            gif = await http.get(pixel, headers=MAIL_CLIENT)
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        await http.get(pixels[0], headers=MAIL_CLIENT)  # a repeat, also during the outage

        async def all_recorded() -> bool:
            return await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) == 21

        # The pixel and the hit processor need PostgreSQL only: each hit becomes an open while Kafka is away.
        await eventually(all_recorded, what="each hit recorded in tracking's own database while Kafka is away")
        assert await db_count("tracking", "SELECT count(*) FROM outbox") >= 21, "their events wait in the outbox"
    finally:
        await asyncio.to_thread(local_stack.start_kafka)

    wanted = set(participants)
    opens = await eventually(
        lambda: opens_on_kafka(wanted, 21), timeout=90, what="every open on Kafka after the outage"
    )

    async def drained() -> bool:
        return await db_count("tracking", "SELECT count(*) FROM outbox") == 0

    await eventually(drained, what="the outbox to be empty")
    opens = await opens_on_kafka(wanted, 21) or []
    assert len(opens) == 21
    assert_each_open_once(opens, opened_twice=participants[0])
