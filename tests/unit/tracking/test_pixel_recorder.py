"""The pixel recorder's promise to mail clients: a hit waits for its commit, but never
longer than the confirm timeout, whatever the database does."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from services.tracking.domain import JudgeRules, read_hit_facts
from services.tracking.recorder import OpenRecorder, PixelHit, PixelHitUnconfirmed, RecordedOpen
from shared.db import utcnow
from shared.tracking_tokens import TrackingToken


def recorder(confirm_timeout_s: float) -> OpenRecorder:
    # No writer runs in these tests: nothing ever commits, as when PostgreSQL hangs.
    return OpenRecorder(
        "postgresql+asyncpg://nobody@127.0.0.1:1/none",
        JudgeRules(fast_hit_s=60, instant_click_s=10, burst_min_links=2),
        burst_window_s=10,
        batch_max=10,
        confirm_timeout_s=confirm_timeout_s,
    )


def hit() -> PixelHit:
    token = TrackingToken.model_validate({"k": "open", "d": uuid4(), "p": uuid4(), "o": uuid4(), "n": 1, "t": 0})
    return PixelHit(token=token, facts=read_hit_facts("GET", []), received_at=utcnow())


async def test_a_hit_that_is_not_committed_in_time_is_answered_as_unconfirmed() -> None:
    pixel = recorder(confirm_timeout_s=0.05)
    watchdog = asyncio.create_task(pixel.run_watchdog())
    try:
        with pytest.raises(PixelHitUnconfirmed):
            await asyncio.wait_for(pixel.submit(hit()), timeout=10)
    finally:
        watchdog.cancel()


async def test_a_hit_confirmed_before_its_deadline_keeps_its_result() -> None:
    pixel = recorder(confirm_timeout_s=0.05)
    watchdog = asyncio.create_task(pixel.run_watchdog())
    try:
        confirmed = pixel.submit(hit())
        late = pixel.submit(hit())
        confirmed.set_result(RecordedOpen(first_open=True, likely_automated=False))
        assert await confirmed == RecordedOpen(first_open=True, likely_automated=False)
        with pytest.raises(PixelHitUnconfirmed):
            await asyncio.wait_for(late, timeout=10)
    finally:
        watchdog.cancel()
