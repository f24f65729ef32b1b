"""Retention is one definition (shared.kafka.topic_config) wherever a topic is made: by the
services (local stack, compose), by Strimzi (deploy/k8s/topics.yaml), and the brokers' defaults."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from deploy.local.stack import kafka_properties
from shared import kafka
from shared.events import Topic
from shared.kafka import (
    COMPACTED_TOPIC_CONFIG,
    DEAD_LETTER_RETENTION_MS,
    DOMAIN_RETENTION_MS,
    ensure_topics,
    topic_config,
)
from tests.unit.deploy.test_deploy_files import load_compose
from tests.unit.deploy.test_kubernetes import of_kind

EVERY_TOPIC = [name for topic in Topic.ALL for name in (topic, Topic.dead_letter(topic))]


def test_domain_topics_are_kept_for_rebuilds_and_dead_letters_for_a_finite_time() -> None:
    # Coaching rebuilds its projection by replaying the topics from the start.
    assert DOMAIN_RETENTION_MS == -1
    assert 0 < DEAD_LETTER_RETENTION_MS <= 30 * 24 * 3_600_000
    for topic in Topic.ALL:
        assert topic_config(Topic.dead_letter(topic))["retention.ms"] == str(DEAD_LETTER_RETENTION_MS)


def test_the_contact_topic_is_compacted_and_its_dead_letters_are_kept_for_a_finite_time() -> None:
    assert Topic.COMPACTED == (Topic.CONTACT,)
    assert topic_config(Topic.CONTACT) == COMPACTED_TOPIC_CONFIG
    assert "retention.ms" not in topic_config(Topic.CONTACT)
    assert topic_config(Topic.dead_letter(Topic.CONTACT))["cleanup.policy"] == "delete"


@pytest.mark.parametrize("name", EVERY_TOPIC)
def test_strimzi_topics_have_the_services_topic_config(name: str) -> None:
    topics = {t["spec"]["topicName"]: t["spec"]["config"] for t in of_kind("KafkaTopic").values()}
    config = {key: str(value) for key, value in topics[name].items() if key != "min.insync.replicas"}
    assert config == topic_config(name)


def test_the_brokers_default_is_the_domain_retention_in_compose_the_local_stack_and_strimzi() -> None:
    # A topic a producer makes by itself (auto.create) gets the broker's default.
    environment = load_compose()["services"]["kafka"]["environment"]
    retention = {key: value for key, value in environment.items() if key.startswith("KAFKA_LOG_RETENTION")}
    assert retention == {"KAFKA_LOG_RETENTION_MS": DOMAIN_RETENTION_MS}
    local = [line for line in kafka_properties().splitlines() if line.startswith("log.retention")]
    assert local == [f"log.retention.ms={DOMAIN_RETENTION_MS}"]
    [strimzi] = of_kind("Kafka").values()
    config = strimzi["spec"]["kafka"]["config"]
    assert {key: value for key, value in config.items() if key.startswith("log.retention")} == {
        "log.retention.ms": DOMAIN_RETENTION_MS
    }


class FakeAdmin:
    """Records what ensure_topics asks the broker to create."""

    created: ClassVar[list[Any]] = []

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return [Topic.MAIL]

    async def create_topics(self, new_topics: list[Any]) -> Any:
        FakeAdmin.created = new_topics
        return type("Response", (), {"topic_errors": [(t.name, 0, None) for t in new_topics]})()


async def test_ensure_topics_creates_what_is_missing_with_the_topic_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", FakeAdmin)
    await ensure_topics("broker:9092", Topic.ALL, partitions=3)
    created = {t.name: t.topic_configs for t in FakeAdmin.created}
    assert set(created) == set(EVERY_TOPIC) - {Topic.MAIL}
    assert all(config == topic_config(name) for name, config in created.items())
