"""PostgreSQL stopped while mails are opened: every reader still gets the image, and
every open is recorded and reaches Kafka, once, when the database is back."""

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


async def test_opens_during_a_postgres_outage_are_recorded_when_it_is_back(http: httpx.AsyncClient) -> None:
    participants = [uuid4() for _ in range(20)]
    org_id = uuid4()
    pixels = [
        f"{TRACKING}/o/{await sent_pixel_token(participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]
    await asyncio.to_thread(local_stack.stop_postgres)
    try:
        # Mail clients do not wait for the database: each gets its image after the confirm timeout.
        hits = [http.get(pixel, headers=MAIL_CLIENT, timeout=30) for pixel in [*pixels, pixels[0]]]
        for gif in await asyncio.gather(*hits):
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        metrics = (await http.get(f"{TRACKING}/metrics")).text
        assert 'meer_tracking_hits_total{kind="open",outcome="timeout"}' in metrics
        assert "meer_tracking_pixel_hits_waiting 21.0" in metrics, "the hits wait in memory"
    finally:
        await asyncio.to_thread(local_stack.start_postgres)

    async def all_recorded() -> bool:
        return await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id) == 21

    await eventually(all_recorded, what="every open recorded once PostgreSQL is back")
    opens = await eventually(lambda: opens_on_kafka(set(participants), 21), what="every open on Kafka")
    assert len(opens) == 21
    assert_each_open_once(opens, opened_twice=participants[0])
