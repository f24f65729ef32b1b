"""The services' Kafka security settings work against a real broker: a SCRAM-SHA-512 login on
the local stack's SASL listener, held to ACLs (the deployments use the same settings with a user
per service, deploy/k8s/kafka-users.yaml and deploy/kafka-setup.sh)."""

from __future__ import annotations

import secrets
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from aiokafka.protocol.admin import CreateAclsRequest

from deploy.local.stack import HOST, KAFKA_SASL_PORT, kafka_java_cmd
from shared.kafka import client_options, create_broker, create_producer, ensure_topics, kafka_security
from shared.settings import ServiceSettings
from tests.e2e.conftest import KAFKA

pytestmark = pytest.mark.stack
SASL_BOOTSTRAP = f"{HOST}:{KAFKA_SASL_PORT}"


def scram_user(name: str, password: str) -> None:
    """Give a user a SCRAM-SHA-512 password (over the plaintext listener, as an operator would)."""
    done = subprocess.run(
        kafka_java_cmd(
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            KAFKA,
            "--alter",
            "--add-config",
            f"SCRAM-SHA-512=[iterations=4096,password={password}]",
            "--entity-type",
            "users",
            "--entity-name",
            name,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]


TOPIC, LITERAL, ALLOW = 2, 3, 3
READ, WRITE, DESCRIBE = 3, 4, 8


async def allow(user: str, topic: str, *operations: int) -> None:
    """Add ACLs, as kafka-acls.sh would (aiokafka's admin client has no call for it, its protocol has)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        for operation in operations:
            request = CreateAclsRequest(TOPIC, topic, LITERAL, f"User:{user}", "*", operation, ALLOW)
            response = await admin._send_request(request)
            assert all(code == 0 for code, _ in response.creation_responses), response
    finally:
        await admin.close()


def settings_for(user: str, password: str) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap=SASL_BOOTSTRAP,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=user,
        kafka_sasl_password=password,
    )


async def test_a_service_logs_in_with_scram_for_topics_the_broker_and_the_relay(stack: None) -> None:
    user, password = f"meer-test-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
    scram_user(user, password)
    settings = settings_for(user, password)
    security = kafka_security(settings)
    topic = f"meer.test-sasl-{uuid.uuid4().hex[:8]}"

    # As in the deployments, the topics exist and the user may use only its own.
    await ensure_topics(KAFKA, (topic,), partitions=1)
    await allow(user, topic, READ, WRITE, DESCRIBE)
    await ensure_topics(SASL_BOOTSTRAP, (topic,), partitions=1, security=security)  # finds it, creates nothing
    # The outbox relay's producer and FastStream's broker, as Runtime makes them.
    producer = create_producer(SASL_BOOTSTRAP, client_id="sasl-test", security=security)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"by the relay", key=b"k")
    finally:
        await producer.stop()
    broker = create_broker(SASL_BOOTSTRAP, client_id="sasl-test", security=security)
    await broker.connect()
    try:
        await broker.publish(b"by the broker", topic, key=b"k")
    finally:
        await broker.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=SASL_BOOTSTRAP, enable_auto_commit=False, **client_options(security))
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        batch = await consumer.getmany(partition, timeout_ms=10_000, max_records=10)
        assert [r.value for r in batch[partition]] == [b"by the relay", b"by the broker"]
    finally:
        await consumer.stop()

    # Held to its ACLs: a topic it was not given stays closed to it.
    forbidden = f"meer.test-sasl-other-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KAFKA, (forbidden,), partitions=1)
    producer = create_producer(SASL_BOOTSTRAP, client_id="sasl-test", security=security)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(forbidden, b"not allowed", key=b"k")
    finally:
        await producer.stop()

    # A wrong password gets nowhere.
    wrong = create_producer(
        SASL_BOOTSTRAP, client_id="sasl-test", security=kafka_security(settings_for(user, "fout-wachtwoord"))
    )
    with pytest.raises((KafkaError, KafkaConnectionError)):
        await wrong.start()
    await wrong.stop()
