"""A dependency outage is logged once when it starts, then at most once a minute, and once
when it ends, however many error lines the client library writes meanwhile."""

from __future__ import annotations

import logging

from shared.logging import DependencyOutageFilter, DependencyOutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_of_many_error_lines_gives_a_start_a_summary_a_minute_and_an_end() -> None:
    outage = DependencyOutageLog("kafka", summary_interval_s=60)
    lines = []
    # 100 lines a second for two and a half minutes.
    for tick in range(15_000):
        line = outage.failed("Unable connect to node with id 1: [Errno 111] Connect call failed", 1000 + tick / 100)
        if line is not None:
            lines.append(line)
    ended = outage.recovered(1150.0)

    assert [message for message, _ in lines] == [
        "dependency outage started",
        "dependency outage continues",
        "dependency outage continues",
    ]
    assert lines[0][1]["first_error"].startswith("Unable connect to node")
    assert lines[1][1]["outage_s"] == 60.0
    assert lines[1][1]["lines_held_back"] == 6000
    assert lines[2][1]["lines_held_back"] == 6000
    assert ended is not None
    assert ended[0] == "dependency outage ended"
    assert ended[1]["outage_s"] == 150.0
    assert ended[1]["lines_held_back"] == 14_999
    assert not outage.in_outage


def test_no_end_without_an_outage_and_a_new_outage_starts_afresh_once_settled() -> None:
    outage = DependencyOutageLog("kafka", summary_interval_s=60, settle_s=15)
    assert outage.recovered(10.0) is None
    assert outage.failed("first", 20.0) is not None
    assert outage.failed("again", 21.0) is None
    assert outage.recovered(22.0) is not None
    assert outage.failed("the consumer group rejoins", 23.0) is None, "settling down is no new outage"
    assert not outage.in_outage
    again = outage.failed("second outage", 40.0)
    assert again is not None and again[0] == "dependency outage started"
    assert again[1]["first_error"] == "second outage"


def test_the_filter_holds_back_client_warnings_and_passes_everything_else() -> None:
    clock = Clock()
    outage = DependencyOutageLog("kafka", summary_interval_s=60)
    kept: list[logging.LogRecord] = []
    emitted: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler = Keep()
    handler.addFilter(DependencyOutageFilter(outage, "aiokafka", clock, lambda message, _: emitted.append(message)))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # configure_logging (run by other tests in this process) raises the client's own level.
    client = logging.getLogger("aiokafka")
    old_client_level = client.level
    client.setLevel(logging.NOTSET)
    try:
        for _ in range(50):
            logging.getLogger("aiokafka.client").error("Unable connect to node with id %s", 1)
            logging.getLogger("aiokafka.consumer.group_coordinator").warning("Heartbeat failed")
            clock.now += 2
        logging.getLogger("aiokafka_lookalike").error("not the Kafka client")
        logging.getLogger("services.mailer").warning("a line of our own")
        logging.getLogger("aiokafka").info("an info line is not an error")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        client.setLevel(old_client_level)

    assert emitted == ["dependency outage started", "dependency outage continues"]
    assert [record.name for record in kept] == ["aiokafka_lookalike", "services.mailer", "aiokafka"]
    assert outage.in_outage
