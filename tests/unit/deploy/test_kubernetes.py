"""The Kubernetes manifests (deploy/k8s/) are valid and agree with the code and with compose.

Core resources are validated against the Kubernetes JSON schemas that kubernetes-validate
ships (strict: an unknown field fails); the Strimzi resources against the OpenAPI schemas of
Strimzi's CRDs, vendored in strimzi-1.2.0-crd-schemas.json (descriptions left out), with
unknown fields refused as the API server's strict field validation does. No cluster needed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.events import Topic
from tests.unit.deploy.test_deploy_files import (
    APP_SERVICES,
    load_compose,
    setting_env_names,
    settings_class,
)

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
STRIMZI_SCHEMAS = Path(__file__).with_name("strimzi-1.2.0-crd-schemas.json")
NAMESPACE = "meer"
# The oldest Kubernetes release still maintained when these were written, and the newest schema.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
# What the Secrets hold in these tests; the values only have to be valid settings.
SAMPLE_SECRET_VALUES = {
    ("meer-licensor", "secret"): "licensor-secret-for-the-k8s-test",
    ("meer-tracking-keys", "keys"): "newest-key,older-key@2030-12-31",
    ("meer-mailer-link-keys", "keys"): "newest-link-key,older-link-key",
    # Made by Strimzi's user operator for each KafkaUser (kafka-users.yaml).
    **{(f"meer-{service}", "password"): f"kafka-password-of-{service}" for service in APP_SERVICES},
    ("meer-metrics-token", "token"): "metrics-token-for-the-k8s-test",
    ("meer-smtp", "username"): "relay-user",
    ("meer-smtp", "password"): "relay-password",
    ("meer-research-export-key", "key"): "research-export-key-for-the-k8s-test",
}


def manifest_files() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


@functools.cache
def resources() -> tuple[dict[str, Any], ...]:
    """Every resource in the manifests, parsed once (do not change them)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(
        document
        for path in manifest_files()
        for document in yaml.load_all(path.read_text(), Loader=loader)
        if document is not None
    )


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources() if r["kind"] == kind}


def resource_ids() -> Iterator[Any]:
    for resource in resources():
        yield pytest.param(resource, id=f"{resource['kind']}/{resource['metadata']['name']}")


def is_strimzi(resource: dict[str, Any]) -> bool:
    return str(resource["apiVersion"]).startswith("kafka.strimzi.io/")


# --- the files ----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert {p.name for p in manifest_files()} == on_disk
    assert yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"] == NAMESPACE


def test_every_resource_is_in_the_platforms_namespace() -> None:
    for resource in resources():
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == NAMESPACE, resource["metadata"]["name"]


def test_no_secret_values_in_the_repository() -> None:
    assert not of_kind("Secret"), "Secrets are created by the operator (deploy/README.md), never committed"
    for name, config in of_kind("ConfigMap").items():
        for key in config["data"]:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|KEYS|DATABASE_URL", key), f"{name}.{key} belongs in a Secret"


# --- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("resource", [p for p in resource_ids() if not is_strimzi(p.values[0])])
def test_core_resource_is_valid_against_the_kubernetes_schema(resource: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} on {version}: {error.message} at {error.path}")


def strict_schema(schema: Any) -> Any:
    """A CRD's structural OpenAPI schema as JSON Schema that refuses unknown fields."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: strict_schema(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


def strimzi_schema(resource: dict[str, Any]) -> dict[str, Any]:
    schemas = json.loads(STRIMZI_SCHEMAS.read_text())
    key = f"{resource['apiVersion']}/{resource['kind']}"
    assert key in schemas, f"no vendored Strimzi schema for {key}"
    result: dict[str, Any] = strict_schema(schemas[key])
    return result


@pytest.mark.parametrize("resource", [p for p in resource_ids() if is_strimzi(p.values[0])])
def test_strimzi_resource_is_valid_against_its_crd_schema(resource: dict[str, Any]) -> None:
    try:
        jsonschema.Draft7Validator(strimzi_schema(resource)).validate(resource)
    except jsonschema.ValidationError as error:
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {error.message} at {list(error.path)}")
    # metadata is a plain object in the CRD schema; the API server checks it as ObjectMeta.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": resource["metadata"]}, KUBERNETES_VERSIONS[-1], True
    )


def test_the_strimzi_check_refuses_a_misspelt_field() -> None:
    # Without it, the CRD test above would accept anything under spec.
    topic = next(iter(of_kind("KafkaTopic").values()))
    broken = {**topic, "spec": {**topic["spec"], "partition": 6}}
    with pytest.raises(jsonschema.ValidationError, match="partition"):
        jsonschema.Draft7Validator(strimzi_schema(broken)).validate(broken)


# --- Kafka -------------------------------------------------------------------------------------

# Broker options Strimzi manages itself and refuses in spec.kafka.config (KafkaClusterSpec's
# FORBIDDEN_PREFIXES in Strimzi 1.2.0, the ZooKeeper and quota-plugin ones left out).
STRIMZI_FORBIDDEN_PREFIXES = (
    "listeners", "advertised.", "broker.", "listener.", "host.name", "port", "inter.broker.listener.name",
    "sasl.", "ssl.", "security.", "password.", "log.dir", "authorizer.", "super.user",
    "node.id", "process.roles", "controller.", "metadata.log.dir",
)  # fmt: skip


def test_kafka_runs_in_kraft_mode_with_three_replicated_brokers() -> None:
    [kafka] = of_kind("Kafka").values()
    pools = [p for p in of_kind("KafkaNodePool").values() if p["metadata"]["labels"]["strimzi.io/cluster"] == "meer"]
    roles = {
        role: sum(p["spec"]["replicas"] for p in pools if role in p["spec"]["roles"])
        for role in ("broker", "controller")
    }
    assert roles == {"broker": 3, "controller": 3}
    assert "zookeeper" not in kafka["spec"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False
    refused = [key for key in config if key.startswith(STRIMZI_FORBIDDEN_PREFIXES)]
    assert not refused, f"Strimzi manages these itself and refuses them: {refused}"


def test_services_reach_the_strimzi_bootstrap_service() -> None:
    [kafka] = of_kind("Kafka").values()
    [listener] = [lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["type"] == "internal"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    assert of_kind("ConfigMap")["meer-common"]["data"]["MEER_KAFKA_BOOTSTRAP"] == bootstrap


def test_topics_are_exactly_the_services_topics_and_their_dead_letter_topics() -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind("KafkaTopic").values()}
    # With all of them in place, a service's ensure_topics() creates none (with one replica) itself.
    assert set(topics) == {name for topic in Topic.ALL for name in (topic, Topic.dead_letter(topic))}
    compose = load_compose()
    compose_env = compose["services"]["kafka"]["environment"]
    default_partitions = re.fullmatch(r"\$\{MEER_KAFKA_PARTITIONS:-(\d+)\}", compose_env["KAFKA_NUM_PARTITIONS"])
    assert default_partitions
    for topic in topics.values():
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "meer"
        assert (
            spec["partitions"]
            == int(default_partitions.group(1))
            == int(of_kind("ConfigMap")["meer-common"]["data"]["MEER_KAFKA_PARTITIONS"])
        )
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2
        # Retention and compaction: tests/unit/deploy/test_topics.py.


# --- the services -------------------------------------------------------------------------------


def container(service: str) -> dict[str, Any]:
    [spec] = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = spec
    return result


def environment_names(service: str) -> set[str]:
    config = of_kind("ConfigMap")
    names = {entry["name"] for entry in container(service).get("env", [])}
    for source in container(service).get("envFrom", []):
        names |= set(config[source["configMapRef"]["name"]]["data"])
    return names


def resolved_environment(service: str) -> dict[str, str]:
    config = of_kind("ConfigMap")
    env: dict[str, str] = {}
    for source in container(service)["envFrom"]:
        env.update(config[source["configMapRef"]["name"]]["data"])
    for entry in container(service)["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if ref["name"] == "meer-database":
            env[entry["name"]] = f"postgresql+asyncpg://meer:secret@postgres.example:5432/meer_{ref['key']}"
        else:
            env[entry["name"]] = SAMPLE_SECRET_VALUES[(ref["name"], ref["key"])]
    return env


def test_every_service_has_a_deployment_service_and_disruption_budget() -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(of_kind(kind)) - {"tracking-hit-processor"} == set(APP_SERVICES), kind


def test_the_hit_processor_runs_with_trackings_database_and_keys() -> None:
    [spec] = of_kind("Deployment")["tracking-hit-processor"]["spec"]["template"]["spec"]["containers"]
    assert spec["args"] == ["services.tracking.hit_processor"]
    # Tracking's settings but the journal (the pixel's), and its token for the metrics port.
    assert {entry["name"] for entry in spec["env"]} == {entry["name"] for entry in container("tracking")["env"]} - {
        "MEER_PIXEL_JOURNAL_DIR",
    }
    port = int(of_kind("ConfigMap")["meer-tracking"]["data"]["MEER_HIT_METRICS_PORT"])
    assert spec["ports"] == [{"name": "metrics", "containerPort": port}]
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@pytest.mark.parametrize("service", APP_SERVICES)
def test_deployment_runs_the_service_with_probes_and_resources(service: str) -> None:
    deployment = of_kind("Deployment")[service]
    spec = container(service)
    assert spec["image"].startswith("meer-contact:") and spec["args"] == [f"services.{service}"]
    port = int(of_kind("ConfigMap")[f"meer-{service}"]["data"]["MEER_HTTP_PORT"])
    assert spec["ports"] == [{"name": "http", "containerPort": port}]
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "time to wait for dependencies and migrate"
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"]) and "memory" in spec["resources"]["limits"]
    pod = deployment["spec"]["template"]["spec"]
    # The "restricted" Pod Security Standard, and the image's user (deploy/Dockerfile).
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = of_kind("PodDisruptionBudget")[service]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["minAvailable"] < deployment["spec"]["replicas"], "a drain must be able to move a replica"
    service_spec = of_kind("Service")[service]["spec"]
    assert service_spec["selector"].items() <= labels.items()
    assert service_spec["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_environment_is_settings_of_that_service_and_covers_compose(service: str) -> None:
    names = environment_names(service)
    assert names <= setting_env_names(settings_class(service)), "a misspelt variable is silently ignored"
    compose_env = set(load_compose()["services"][service]["environment"])
    assert {n for n in compose_env if n.startswith("MEER_")} <= names, "the same MEER_ settings as compose"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_service_settings_load_in_production(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MEER_"):
            monkeypatch.delenv(key)
    env = resolved_environment(service)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(service)()
    assert settings.env == "production" and settings.metrics_token
    assert settings.http_port == int(env["MEER_HTTP_PORT"])
    assert settings.database_url.endswith(f"/meer_{service}")


@pytest.mark.parametrize("service", APP_SERVICES)
def test_only_enrolment_mounts_the_private_signing_key(service: str) -> None:
    volumes = of_kind("Deployment")[service]["spec"]["template"]["spec"]["volumes"]
    keys = {item["key"] for v in volumes if "secret" in v for item in v["secret"]["items"]}
    assert ("staff-token.pem" in keys) == (service == "enrolment")
    for entry in container(service)["env"]:
        if entry["name"].endswith("_KEY_PATH"):
            mount = next(m for m in container(service)["volumeMounts"] if entry["value"].startswith(m["mountPath"]))
            assert Path(entry["value"]).name in keys and mount["readOnly"] is True


def test_every_referenced_secret_is_documented() -> None:
    referenced = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for service in APP_SERVICES
        for entry in container(service)["env"]
        if "valueFrom" in entry
    } | {
        v["secret"]["secretName"]
        for d in of_kind("Deployment").values()
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    # Strimzi makes the cluster CA's Secret and one per KafkaUser (its password) itself.
    made_by_strimzi = {"meer-cluster-ca-cert", *of_kind("KafkaUser")}
    guide = (ROOT / "deploy" / "README.md").read_text()
    missing = [name for name in sorted(referenced - made_by_strimzi) if f"create secret generic {name}" not in guide]
    assert not missing, f"deploy/README.md does not say how to create {missing}"
