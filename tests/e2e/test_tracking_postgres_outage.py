"""PostgreSQL stopped while mails are opened: every reader still gets the image, and
every open is recorded and reaches Kafka, once, when the database is back."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest

from deploy.local import stack as local_stack
from shared.events import Envelope, MailOpened, Topic
from tests.e2e.conftest import MAIL_CLIENT, TRACKING, db_count, eventually, read_topic, tracking_token

pytestmark = pytest.mark.stack


async def test_opens_during_a_postgres_outage_are_recorded_when_it_is_back(http: httpx.AsyncClient) -> None:
    participants = [uuid4() for _ in range(20)]
    org_id = uuid4()
    pixels = [
        f"{TRACKING}/o/{tracking_token('open', participant_id=participant, org_id=org_id)}.gif"
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

    await eventually(all_recorded, timeout=60, what="every open recorded once PostgreSQL is back")
    wanted = set(participants)

    async def all_published() -> list[Envelope] | None:
        found = [
            envelope
            for record in await read_topic(Topic.ENGAGEMENT)
            if (envelope := Envelope.model_validate_json(record.value)).type == MailOpened.TYPE
            and envelope.participant_id in wanted
        ]
        return found if len(found) >= 21 else None

    opens = await eventually(all_published, timeout=60, what="every open on Kafka")
    assert len(opens) == 21 and len({e.event_id for e in opens}) == 21, "every open once, none twice"
    by_participant: dict[UUID | None, list[bool]] = {}
    for envelope in opens:
        by_participant.setdefault(envelope.participant_id, []).append(envelope.payload["first_open"])
    assert sorted(by_participant[participants[0]]) == [False, True]
    assert all(flags == [True] for participant, flags in by_participant.items() if participant != participants[0])
