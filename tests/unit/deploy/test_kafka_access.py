"""Each service's KafkaUser (deploy/k8s/kafka-users.yaml) allows exactly what its code does:
Write to the topics of the events it constructs and to the dead-letter topics of what it
consumes, Read from the topics its handlers are registered for, in its own consumer group."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared import events
from shared.events import Payload, Topic
from shared.kafka import topic_config
from tests.unit.deploy.test_deploy_files import APP_SERVICES, load_compose
from tests.unit.deploy.test_kubernetes import of_kind

ROOT = Path(__file__).resolve().parents[3]
PAYLOADS = {
    name: cls
    for name, cls in vars(events).items()
    if inspect.isclass(cls) and issubclass(cls, Payload) and cls is not Payload and hasattr(cls, "TOPIC")
}


def produced_topics(service: str) -> set[str]:
    """Topics of the event payloads the service's code constructs (every event goes through its
    outbox), including in the shared modules it imports (e.g. shared.export_parts answers exports)."""
    found = set()
    sources = [path for path in (ROOT / "services" / service).rglob("*.py") if "migrations" not in path.parts]
    shared_modules = {
        node.module
        for path in sources
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared.")
    }
    sources += [ROOT / (module.replace(".", "/") + ".py") for module in sorted(shared_modules)]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PAYLOADS:
                found.add(PAYLOADS[node.func.id].TOPIC)
    return found


class RecordingRuntime:
    """Enough of shared.runtime.Runtime for register_kafka_handlers: records what is subscribed."""

    def __init__(self, settings: Any) -> None:
        self.database: Any = None
        self.settings = settings
        self.topics: set[str] = set()

    def subscribe(
        self, changes: dict[str, Any], tombstones: dict[str, Any] | None = None, *, prepare: Any = None
    ) -> None:
        self.topics |= set(changes) | set(tombstones or {})


def consumed_topics(service: str) -> set[str]:
    """The topics the service's register_kafka_handlers subscribes to."""
    module = importlib.import_module(f"services.{service}.handlers")
    settings_module = importlib.import_module(f"services.{service}.settings")
    runtime = RecordingRuntime(getattr(settings_module, f"{service.capitalize()}Settings")())
    extra: dict[str, tuple[Any, ...]] = {"mailer": (lambda: None,), "coaching": (None, ZoneInfo("Europe/Amsterdam"))}
    module.register_kafka_handlers(runtime, *extra.get(service, ()))
    return runtime.topics


def acls(service: str) -> dict[tuple[str, str], set[str]]:
    user = of_kind("KafkaUser")[f"meer-{service}"]["spec"]
    assert user["authentication"] == {"type": "scram-sha-512"}
    found: dict[tuple[str, str], set[str]] = {}
    for acl in user["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource["patternType"] == "literal" and acl.get("type", "allow") == "allow"
        found.setdefault((resource["type"], resource["name"]), set()).update(acl["operations"])
    return found


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_kafka_user_allows_exactly_what_the_service_code_does(service: str) -> None:
    produced, consumed = produced_topics(service), consumed_topics(service)
    assert produced and consumed and (produced | consumed) <= set(Topic.ALL)
    assert acls(service) == expected_acls(service)


def test_the_services_log_in_as_their_own_kafka_user_over_tls() -> None:
    common = of_kind("ConfigMap")["meer-common"]["data"]
    assert common["MEER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert common["MEER_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    [kafka] = of_kind("Kafka").values()
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all(lst["tls"] and lst["authentication"]["type"] == "scram-sha-512" for lst in listeners)
    for service in APP_SERVICES:
        [container] = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env["MEER_KAFKA_SASL_USERNAME"]["value"] == f"meer-{service}"
        assert env["MEER_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"meer-{service}",
            "key": "password",
        }


# --- compose: the same users, ACLs and topics, made by the kafka-setup container ----------------

SETUP_SCRIPT = ROOT / "deploy" / "kafka-setup.sh"


def expected_acls(service: str) -> dict[tuple[str, str], set[str]]:
    """What the service's code needs: its groups and topics with their operations."""
    produced, consumed = produced_topics(service), consumed_topics(service)
    expected: dict[tuple[str, str], set[str]] = {("group", service): {"Read"}}
    for topic in produced | {Topic.dead_letter(t) for t in consumed}:
        expected.setdefault(("topic", topic), set()).update({"Describe", "Write"})
    for topic in consumed:
        expected.setdefault(("topic", topic), set()).update({"Describe", "Read"})
    return expected


def setup_script() -> str:
    """deploy/kafka-setup.sh as the code asks for it (regenerate: python -m tests.unit.deploy.test_kafka_access)."""
    lines = [
        "#!/bin/sh",
        "# Makes compose's Kafka topics, SCRAM users and ACLs; run by the kafka-setup container over",
        "# the broker's loopback listener. Generated from the code (the handlers each service registers,",
        "# the events it constructs, shared.kafka.topic_config) by tests/unit/deploy/test_kafka_access.py:",
        "#   python -m tests.unit.deploy.test_kafka_access > deploy/kafka-setup.sh",
        "set -eu",
        'bootstrap="--bootstrap-server 127.0.0.1:9094"',
        "bin=/opt/kafka/bin",
        "topic() {",
        '  name=$1; shift; "$bin/kafka-topics.sh" $bootstrap --create --if-not-exists --topic "$name" \\',
        '    --partitions "${MEER_KAFKA_PARTITIONS:-6}" --replication-factor 1 "$@"',
        "}",
        'user() { "$bin/kafka-configs.sh" $bootstrap --alter --entity-type users --entity-name "$1" \\',
        '  --add-config "SCRAM-SHA-512=[password=$2]"; }',
        'allow() { principal=$1; shift; "$bin/kafka-acls.sh" $bootstrap --add \\',
        '  --allow-principal "User:$principal" "$@"; }',
    ]
    for topic in sorted(name for t in Topic.ALL for name in (t, Topic.dead_letter(t))):
        configs = " ".join(f"--config {key}={value}" for key, value in sorted(topic_config(topic).items()))
        lines.append(f"topic {topic} {configs}")
    for service in APP_SERVICES:
        user = f"meer-{service}"
        lines.append(f'user {user} "$MEER_KAFKA_PASSWORD_{service.upper()}"')
        for (kind, name), operations in sorted(expected_acls(service).items()):
            ops = " ".join(f"--operation {op}" for op in sorted(operations))
            lines.append(f"allow {user} --{kind} {name} {ops}")
    return "\n".join(lines) + "\n"


def test_the_compose_setup_script_is_generated_from_the_code() -> None:
    assert SETUP_SCRIPT.read_text() == setup_script(), "regenerate it: see its header"


def test_compose_services_log_in_as_their_own_user_and_wait_for_the_setup() -> None:
    compose = load_compose()
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert str(kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"]) == "false"
    # Only the loopback listener (inside the Kafka container) and the controller are anonymous.
    assert "SASL_PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    setup = compose["services"]["kafka-setup"]
    assert setup["network_mode"] == "service:kafka"
    for service in APP_SERVICES:
        spec = compose["services"][service]
        env = spec["environment"]
        assert env["MEER_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["MEER_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["MEER_KAFKA_SASL_USERNAME"] == f"meer-{service}"
        variable = f"MEER_KAFKA_PASSWORD_{service.upper()}"
        assert env["MEER_KAFKA_SASL_PASSWORD"].startswith(f"${{{variable}:?")
        assert setup["environment"][variable] == env["MEER_KAFKA_SASL_PASSWORD"]
        assert spec["depends_on"]["kafka-setup"] == {"condition": "service_completed_successfully"}


if __name__ == "__main__":
    print(setup_script(), end="")
