"""MEER_KAFKA_* security settings become FastStream's security object and aiokafka's options."""

import ssl

import pytest
from faststream.security import SASLScram256, SASLScram512

from shared.kafka import client_options, create_producer, kafka_security
from shared.settings import ServiceSettings


def test_plaintext_by_default_on_loopback() -> None:
    assert kafka_security(ServiceSettings()) is None
    assert client_options(None) == {}


async def test_sasl_ssl_with_scram_checks_the_brokers_certificate() -> None:
    settings = ServiceSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="meer-mailer",
        kafka_sasl_password="geheim",
    )
    security = kafka_security(settings)
    assert isinstance(security, SASLScram512) and security.use_ssl and security.ssl_context is not None
    assert security.ssl_context.verify_mode == ssl.CERT_REQUIRED and security.ssl_context.check_hostname
    options = client_options(security)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("meer-mailer", "geheim")
    # The outbox relay's plain producer gets the same login.
    producer = create_producer("broker:9093", client_id="test", security=security)
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_plain_username == "meer-mailer"


def test_sasl_plaintext_with_scram_256() -> None:
    settings = ServiceSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="meer-tracking",
        kafka_sasl_password="geheim",
    )
    security = kafka_security(settings)
    assert isinstance(security, SASLScram256) and not security.use_ssl
    assert client_options(security)["security_protocol"] == "SASL_PLAINTEXT"


def test_sasl_without_a_login_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="MEER_KAFKA_SASL_USERNAME"):
        ServiceSettings(kafka_security_protocol="SASL_SSL")


def test_the_dead_letters_tool_logs_in_like_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.deadletters import DeadLetterSettings

    monkeypatch.setenv("MEER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MEER_KAFKA_SASL_USERNAME", "meer-operations")
    monkeypatch.setenv("MEER_KAFKA_SASL_PASSWORD", "geheim")
    options = client_options(kafka_security(DeadLetterSettings()))
    assert (options["security_protocol"], options["sasl_plain_username"]) == ("SASL_SSL", "meer-operations")
