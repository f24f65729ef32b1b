"""How the hit processor paces its batches: after one that was not full, the next waits until
the interval since the last began is over (so a burst's many small commits are judged
together), and a commit notified while a batch runs is never missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.tracking import hit_processor
from services.tracking.hit_processor import BatchOutcome, HitProcessor, pause_before_next_batch
from services.tracking.settings import TrackingSettings
from tests.unit.tracking.test_pixel_hit_log import UNREACHABLE  # the LISTEN connection fails; it retries quietly


def test_the_next_batch_waits_out_the_interval_since_the_last_began() -> None:
    assert pause_before_next_batch(started=10.0, now=10.01, interval_s=0.05) == pytest.approx(0.04)


def test_a_batch_that_took_longer_than_the_interval_is_followed_at_once() -> None:
    assert pause_before_next_batch(started=10.0, now=10.2, interval_s=0.05) == 0.0


def test_no_interval_means_no_pause() -> None:
    assert pause_before_next_batch(started=10.0, now=10.0, interval_s=0.0) == 0.0


class _Session:
    async def commit(self) -> None:
        return None


class _Database:
    url = UNREACHABLE

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[_Session]:
        yield _Session()


async def test_hits_committed_while_a_batch_runs_start_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # The poll interval is an hour: only the notification can start the second batch.
    settings = TrackingSettings(database_url=UNREACHABLE, hit_poll_interval_s=3600, hit_batch_interval_s=0.01)
    processor = HitProcessor(_Database(), settings)  # type: ignore[arg-type]
    second_batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    batches = 0

    async def process_hits(_session: Any, **_: Any) -> BatchOutcome:
        nonlocal batches
        batches += 1
        if batches == 1:
            processor._hits_logged.set()  # the pixel committed more hits while this batch ran
        elif not second_batch.done():
            second_batch.set_result(None)
        return BatchOutcome(claimed=1, opened=1, held=0, duplicates=0)

    monkeypatch.setattr(hit_processor, "process_hits", process_hits)
    running = asyncio.create_task(processor.run())
    try:
        # Not a speed limit: without the notification this would wait for the hour-long poll.
        await asyncio.wait_for(second_batch, timeout=60)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert batches >= 2
