"""Kafka stopped while mails are opened, then started again: every open arrives, once."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest

from deploy.local import stack as local_stack
from shared.events import Envelope, MailOpened, Topic
from tests.e2e.conftest import MAIL_CLIENT, TRACKING, db_count, eventually, read_topic, tracking_token

pytestmark = pytest.mark.stack


async def test_opens_during_a_kafka_outage_all_arrive_afterwards_once(http: httpx.AsyncClient) -> None:
    participants = [uuid4() for _ in range(20)]
    org_id = uuid4()
    pixels = [
        f"{TRACKING}/o/{tracking_token('open', participant_id=participant, org_id=org_id)}.gif"
        for participant in participants
    ]
    await asyncio.to_thread(local_stack.stop_process, "kafka", 30)
    try:
        for pixel in pixels:
            gif = await http.get(pixel, headers=MAIL_CLIENT)
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        await http.get(pixels[0], headers=MAIL_CLIENT)  # a repeat, also during the outage
        recorded = await db_count("tracking", "SELECT count(*) FROM open_record WHERE org_id = $1", org_id)
        assert recorded == 21, "each hit committed to tracking's own database while Kafka is away"
        assert await db_count("tracking", "SELECT count(*) FROM outbox") >= 21, "their events wait in the outbox"
    finally:
        await asyncio.to_thread(local_stack.start_kafka)

    wanted = set(participants)

    async def all_arrived() -> list[Envelope] | None:
        found = [
            envelope
            for record in await read_topic(Topic.ENGAGEMENT)
            if (envelope := Envelope.model_validate_json(record.value)).type == MailOpened.TYPE
            and envelope.participant_id in wanted
        ]
        return found if len(found) >= 21 else None

    opens = await eventually(all_arrived, timeout=90, what="every open on Kafka after the outage")

    async def drained() -> bool:
        return await db_count("tracking", "SELECT count(*) FROM outbox") == 0

    await eventually(drained, what="the outbox to be empty")
    opens = await all_arrived() or []
    assert len(opens) == 21 and len({e.event_id for e in opens}) == 21, "every open once, none twice"
    by_participant: dict[UUID | None, list[bool]] = {}
    for envelope in opens:
        by_participant.setdefault(envelope.participant_id, []).append(envelope.payload["first_open"])
    assert sorted(by_participant[participants[0]]) == [False, True]
    assert all(flags == [True] for participant, flags in by_participant.items() if participant != participants[0])
