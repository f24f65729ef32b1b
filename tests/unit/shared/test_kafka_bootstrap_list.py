"""Several bootstrap servers (a Kafka cluster) in MEER_KAFKA_BOOTSTRAP, comma-separated: every
client of a service is given each of them, so it starts while any one of them answers."""

from __future__ import annotations

from shared.kafka import create_broker


def test_the_services_broker_gets_every_bootstrap_server() -> None:
    broker = create_broker("10.0.0.1:9092, 10.0.0.2:9092,10.0.0.3:9092", client_id="test")
    assert broker._connection_kwargs["bootstrap_servers"] == ["10.0.0.1:9092", "10.0.0.2:9092", "10.0.0.3:9092"]


def test_one_bootstrap_server_is_still_one() -> None:
    assert create_broker("127.0.0.1:19092", client_id="test")._connection_kwargs["bootstrap_servers"] == [
        "127.0.0.1:19092"
    ]
