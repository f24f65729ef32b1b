"""While Kafka is away, each service logs the outage once when it starts (not the Kafka
client's ~100 error lines a second), and once when it ends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deploy.local import stack as local_stack
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.stack

SERVICES = ("enrolment", "mailer", "tracking", "coaching")


def log_lines_since(service: str, offset: int) -> list[dict[str, object]]:
    path: Path = local_stack.LOG_DIR / f"{service}.log"
    with path.open("rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            lines.append({"event": line, "logger": "not json"})
    return lines


async def test_a_kafka_outage_is_logged_at_its_start_and_end_not_every_reconnect(stack: None) -> None:
    offsets = {service: (local_stack.LOG_DIR / f"{service}.log").stat().st_size for service in SERVICES}
    await asyncio.to_thread(local_stack.stop_process, "kafka", 30)
    try:

        async def every_service_saw_it() -> bool:
            return all(
                any(line.get("event") == "dependency outage started" for line in log_lines_since(s, offsets[s]))
                for s in SERVICES
            )

        await eventually(every_service_saw_it, what="each service to log the outage's start")
        counted_from = {service: (local_stack.LOG_DIR / f"{service}.log").stat().st_size for service in SERVICES}
        await asyncio.sleep(8)  # the window in which the client would write hundreds of lines
        during = {service: log_lines_since(service, counted_from[service]) for service in SERVICES}
    finally:
        await asyncio.to_thread(local_stack.start_kafka)

    for service, lines in during.items():
        assert len(lines) <= 5, f"{service} logged {len(lines)} lines in 8 s of the outage: {lines[:10]}"

    async def every_service_saw_the_end() -> bool:
        return all(
            any(line.get("event") == "dependency outage ended" for line in log_lines_since(s, offsets[s]))
            for s in SERVICES
        )

    await eventually(every_service_saw_the_end, what="each service to log the outage's end")
    for service in SERVICES:
        started = [
            line
            for line in log_lines_since(service, offsets[service])
            if line.get("event") == "dependency outage started"
        ]
        assert len(started) == 1, f"{service} logged the start {len(started)} times"
