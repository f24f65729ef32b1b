"""Benchmarks run in an order where none waits for a backlog another left: coaching first
(it measures the live consumers), the morning burst (it waits until coaching has projected
every open it makes, so it leaves nothing behind), the replicas (the same), the batch
consumers (in-process, on topics of their own), the enrolment API after the mailer (it
leaves thousands of participant.enrolled for the mailer to digest), the pixel last (it leaves
~37,000 opens on Kafka that the stack's coaching consumer digests for minutes once it runs again).
Run by hand in another order, the coaching and enrolment API benchmarks first wait for such a backlog
(coaching_caught_up)."""

from __future__ import annotations

import time

import pytest

from services.coaching.rebuild import TOPICS as COACHING_TOPICS
from tests.e2e.conftest import consumer_lag, eventually

ORDER = (
    "bench_coaching",
    "bench_morning_burst",
    "bench_replicas",
    "bench_consumers",
    "bench_csv_import",
    "bench_mailer",
    "bench_enrolment_api",
    "bench_pixel",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return ORDER.index(module) if module in ORDER else len(ORDER)

    items.sort(key=rank)


@pytest.fixture
async def coaching_caught_up(stack: None) -> None:
    """Measure on a settled stack: a backlog an earlier run left (the pixel benchmark's opens,
    when benchmarks run by hand in another order) is digested first, and the wait is printed,
    not counted. Otherwise coaching digests it beside what is measured, on the same cores."""
    started = time.perf_counter()

    async def caught_up() -> bool:
        return await consumer_lag("coaching", COACHING_TOPICS) == 0

    await eventually(caught_up, timeout=1800, what="coaching to digest the backlog of an earlier run")
    waited = time.perf_counter() - started
    if waited > 1:
        print(f"\n(waited {waited:.0f} s for coaching to digest a backlog an earlier run left)")
