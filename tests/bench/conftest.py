"""Benchmarks run in an order where none waits for a backlog another left: coaching first
(it measures the live consumers), the morning burst (it waits until coaching has projected
every open it makes, so it leaves nothing behind), the replicas (the same), the batch
consumers (in-process, on topics of their own), the enrolment API after the mailer (it
leaves thousands of participant.enrolled for the mailer to digest), the pixel last (it leaves
~37,000 opens on Kafka that the stack's coaching consumer digests for minutes once it runs again)."""

from __future__ import annotations

import pytest

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
