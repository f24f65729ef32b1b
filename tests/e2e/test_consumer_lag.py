"""Consumer lag per group, topic and partition: measured right on the real broker, and
exported by every service for its own consumer group on /metrics."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.kafka import consumer_lag
from tests.e2e.conftest import COACHING, ENROLMENT, KAFKA, MAILER, TRACKING, add_coach, create_organisation, eventually

pytestmark = pytest.mark.stack

SERVICES = {"enrolment": ENROLMENT, "mailer": MAILER, "tracking": TRACKING, "coaching": COACHING}
LAG_LINE = re.compile(r"^meer_consumer_lag\{([^}]*)\} (\S+)$", re.MULTILINE)


async def test_lag_is_what_the_group_has_not_committed_per_partition(stack: None) -> None:
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=KAFKA,
        group_id=f"lag-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        for partition, count in ((0, 5), (1, 3)):
            for _ in range(count):
                await producer.send_and_wait(topic, b"{}", partition=partition)
        p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

        async def assigned() -> bool:
            await consumer.getmany(timeout_ms=200)  # fetched, not committed
            return consumer.assignment() == {p0, p1}

        await eventually(assigned, what="both partitions assigned")
        assert await consumer_lag(consumer) == {p0: 5, p1: 3}, "nothing committed yet: everything waits"

        await consumer.commit({p0: 5, p1: 1})
        assert await consumer_lag(consumer) == {p0: 0, p1: 2}

        await producer.send_and_wait(topic, b"{}", partition=0)
        assert await consumer_lag(consumer) == {p0: 1, p1: 2}, "a new record counts at once"
    finally:
        await consumer.stop()
        await producer.stop()


def lag_series(metrics: str) -> dict[tuple[str, str, str, str], float]:
    series = {}
    for labels, value in LAG_LINE.findall(metrics):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        series[(parsed["service"], parsed["group"], parsed["topic"], parsed["partition"])] = float(value)
    return series


async def test_each_service_exports_its_groups_lag_which_drops_to_zero(http: httpx.AsyncClient) -> None:
    # Events flow to every service: an organisation, a coach and an enrolment.
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    enrolled = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        json={"first_name": "Lotte", "email": f"lag-{uuid.uuid4().hex[:8]}@example.org"},
        headers={"Authorization": "Bearer dev-only-licensor-secret"},
    )
    assert enrolled.status_code == 201, enrolled.text

    for service, base_url in SERVICES.items():

        async def caught_up(base_url: str = base_url) -> dict[tuple[str, str, str, str], float] | None:
            series = lag_series((await http.get(f"{base_url}/metrics")).text)
            topics = {topic for _, _, topic, _ in series}
            # Every partition of each consumed topic (3 on the local stack): an earlier test's second
            # replica in the same group may have left a moment ago, and the group is still rebalancing.
            every_partition = len(series) == 3 * len(topics)
            if series and every_partition and all(value == 0 for value in series.values()):
                return series
            return None

        series = await eventually(caught_up, what=f"{service}'s consumer lag at 0 on every partition")
        assert {(s, group) for s, group, _, _ in series} == {(service, service)}, "its own group, by name"
        topics = {topic for _, _, topic, _ in series}
        assert topics and all(topic.startswith("meer.") for topic in topics)
        partitions = {(topic, partition) for _, _, topic, partition in series}
        assert len(partitions) == 3 * len(topics), "every partition of each consumed topic (3 on the local stack)"
