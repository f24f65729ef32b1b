"""ensure_topics() makes a topic and its dead-letter topic on the real broker with topic_config()."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.kafka import ensure_topics, topic_config
from tests.e2e.conftest import KAFKA

pytestmark = pytest.mark.stack


async def test_ensure_topics_creates_topics_with_their_retention(stack: None) -> None:
    topic = f"meer.test-retention-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KAFKA, (topic,), partitions=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        names = (topic, f"{topic}.dlt")
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        found = {
            name: {key: value for key, value, *_ in entries if key in ("retention.ms", "cleanup.policy")}
            for response in responses
            for _, _, _, name, entries in response.resources
        }
        assert found == {name: topic_config(name) for name in names}
    finally:
        await admin.delete_topics(list(names))
        await admin.close()
