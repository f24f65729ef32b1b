"""The container description (docker-compose.yml, deploy/Dockerfile) and the Prometheus
files agree with the code: the settings each service reads, its port, its database, the
metrics the alerts query; and promtool accepts the config, the rules and their tests.

No Docker engine is needed: these read the files, import the settings classes and run
promtool (Debian package `prometheus`)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.tracking.settings import TrackingSettings
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"

APP_SERVICES = ("enrolment", "mailer", "tracking", "coaching")
HIT_PROCESSOR = "tracking-hit-processor"
"""Tracking's second process: no API, scraped on its metrics port (MEER_HIT_METRICS_PORT) alone."""
PLATFORM = {*APP_SERVICES, "kafka", "postgres", "mailpit", "prometheus"}

# What .env provides in these tests; the values only have to be valid.
SAMPLE_VARIABLES = {
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "MEER_LICENSOR_SECRET": "licensor-secret-for-the-compose-test",
    "MEER_TRACKING_KEYS": "newest-key,older-key@2030-12-31",
    "MEER_MAILER_LINK_KEYS": "newest-link-key,older-link-key",
    **{f"MEER_KAFKA_PASSWORD_{s.upper()}": f"kafka{s}0123" for s in ("enrolment", "mailer", "tracking", "coaching")},
    "MEER_METRICS_TOKEN": "metrics-token-for-the-compose-test",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password-for-the-compose-test",
    "MEER_RESEARCH_EXPORT_KEY": "research-export-key-for-the-compose-test",
}

# Variables compose hands a service before its settings class reads them, as
# {(service, variable): reason}. Each is a strict expected failure: once the field exists,
# pytest reports the XPASS as a failure and the entry must go. Anything else must be a field.
PENDING_SETTINGS: dict[tuple[str, str], str] = {}


# --- reading the files --------------------------------------------------------------


class MissingVariable(LookupError):
    """A `${NAME:?message}` whose variable is not set: compose refuses to start."""


_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's variable substitution: ${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = variables.get(name)
        if op is None:
            return value or ""
        # With the colon an empty value counts as unset, as in the shell.
        if value is not None and (value or not op.startswith(":")):
            return value
        if op.endswith("-"):
            return arg
        raise MissingVariable(name)

    return _INTERPOLATION.sub(replace, text)


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def environment(compose: Mapping[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping, not a list"
    return {str(key): str(value) for key, value in env.items()}


def resolved_environment(compose: Mapping[str, Any], service: str) -> dict[str, str]:
    return {key: interpolate(value, SAMPLE_VARIABLES) for key, value in environment(compose, service).items()}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services.{service}.settings should define one settings class, found {classes}"
    return classes[0]


def setting_env_names(cls: type[ServiceSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def published_ports(compose: Mapping[str, Any], service: str) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each short-syntax mapping."""
    result = []
    for entry in compose["services"][service].get("ports", []):
        parts = interpolate(str(entry), {}).split(":")
        assert len(parts) == 3, f"{service}: publish as 'address:host port:container port', got {entry!r}"
        result.append((parts[0], parts[1], parts[2]))
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def compose_env_params() -> Iterator[Any]:
    compose = load_compose()
    for service in APP_SERVICES:
        for variable in environment(compose, service):
            if variable.startswith("MEER_"):
                reason = PENDING_SETTINGS.get((service, variable))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(service, variable, id=f"{service}-{variable}", marks=marks)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed; it comes with Debian's package: apt-get install -y prometheus")
    return subprocess.run(["promtool", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


# --- compose: the platform and how it starts ---------------------------------------


def test_compose_describes_the_whole_platform(compose: dict[str, Any]) -> None:
    missing = PLATFORM - set(compose.get("services", {}))
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_service_runs_its_own_module_from_the_shared_image(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["command"] == [f"services.{service}"]
    assert (ROOT / "services" / service / "__main__.py").exists()
    assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("service", APP_SERVICES)
def test_service_waits_for_healthy_dependencies_and_reports_readiness(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    depends_on = spec.get("depends_on", {})
    assert isinstance(depends_on, dict), f"{service}: depends_on must name a condition per dependency"
    for dependency in ("postgres", "kafka"):
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", f"{service} -> {dependency}"
    probe = " ".join(spec["healthcheck"]["test"])
    assert "/readyz" in probe and "MEER_HTTP_PORT" in probe


def test_every_awaited_dependency_has_a_healthcheck(compose: dict[str, Any]) -> None:
    # `condition: service_healthy` on a service without a healthcheck makes compose refuse to start.
    services = compose["services"]
    for name, spec in services.items():
        for dependency, condition in (spec.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"


# --- compose: the environment each service gets ------------------------------------


@pytest.mark.parametrize(("service", "variable"), list(compose_env_params()))
def test_compose_variable_is_a_setting_of_that_service(service: str, variable: str) -> None:
    # Settings ignore unknown variables, so a misspelt one would be dropped without a word.
    known = setting_env_names(settings_class(service))
    assert variable in known, f"{service} has no setting {variable}; its settings are {sorted(known)}"


def test_pending_settings_are_still_in_compose(compose: dict[str, Any]) -> None:
    stale = [(s, v) for s, v in PENDING_SETTINGS if v not in environment(compose, s)]
    assert not stale, f"remove from PENDING_SETTINGS: {stale}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_service_settings_load_in_production_from_compose(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MEER_ENV=production the settings refuse development secrets and bad values."""
    for key in list(os.environ):
        if key.startswith("MEER_"):
            monkeypatch.delenv(key)
    env = resolved_environment(compose, service)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(service)()
    assert settings.env == "production"
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - a container must listen beyond itself
    assert settings.http_port == int(env["MEER_HTTP_PORT"])
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.database_url.endswith(f"/meer_{service}")


def test_required_variables_are_exactly_the_empty_lines_of_the_example() -> None:
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", COMPOSE_FILE.read_text()))
    empty = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=\s*$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert required == empty, "every ${X:?...} in docker-compose.yml needs an empty X= in deploy/compose.env.example"
    assert set(SAMPLE_VARIABLES) == required


def test_no_secret_has_a_committed_value(compose: dict[str, Any]) -> None:
    secret_like = re.compile(r"SECRET|PASSWORD|_KEYS$|TOKEN$")
    for name, spec in compose["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if secret_like.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), f"{name}.{key} must be ${{{key}:?...}}"
    for service in APP_SERVICES:
        url = environment(compose, service)["MEER_DATABASE_URL"]
        with pytest.raises(MissingVariable):
            interpolate(url, {})  # the database password, too, comes from .env only


def test_mailer_and_tracking_share_the_tracking_keys(compose: dict[str, Any]) -> None:
    # Different keys would make every link and pixel in every mail fail verification.
    signing, verifying = (environment(compose, s)["MEER_TRACKING_KEYS"] for s in ("mailer", "tracking"))
    assert signing == verifying


def test_only_enrolment_and_mailer_hold_the_mailer_link_keys(compose: dict[str, Any]) -> None:
    # Whoever holds them can open the one-time links on Kafka; different ones break every link.
    holders = {s: environment(compose, s).get("MEER_MAILER_LINK_KEYS") for s in APP_SERVICES}
    assert {s for s, keys in holders.items() if keys} == {"enrolment", "mailer"}
    assert holders["enrolment"] == holders["mailer"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_key_paths_point_at_mounted_secrets(compose: dict[str, Any], service: str) -> None:
    mounted = compose["services"][service].get("secrets", [])
    for key, value in environment(compose, service).items():
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in mounted, f"{service}.{key} reads {value}, but {secret} is not mounted"
            assert "file" in compose["secrets"][secret]
    if service != "enrolment":
        assert "staff_token_private_key" not in mounted, "only enrolment may hold the private signing key"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_service_has_its_own_database(compose: dict[str, Any], service: str) -> None:
    url = urlsplit(resolved_environment(compose, service)["MEER_DATABASE_URL"])
    postgres_env = compose["services"]["postgres"]["environment"]
    assert url.scheme == "postgresql+asyncpg"
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/meer_{service}")
    assert url.username == postgres_env["POSTGRES_USER"]
    assert url.password == SAMPLE_VARIABLES["POSTGRES_PASSWORD"]


def test_init_script_creates_exactly_the_service_databases(compose: dict[str, Any]) -> None:
    created = set(re.findall(r"^CREATE DATABASE (\w+);", INIT_SQL.read_text(), flags=re.MULTILINE))
    assert created == {f"meer_{service}" for service in APP_SERVICES}
    mounts = [str(v).split(":") for v in compose["services"]["postgres"]["volumes"]]
    init_mounts = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert [(ROOT / m[0]).resolve() for m in init_mounts] == [INIT_SQL]


def test_published_ports_are_on_the_loopback_address_only(compose: dict[str, Any]) -> None:
    # Mailpit shows every mail and the APIs have no TLS: a reverse proxy faces the world.
    for name in compose["services"]:
        for address, _, _ in published_ports(compose, name):
            assert address == "127.0.0.1", f"{name} publishes on {address or 'every address'}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_port_agrees_between_settings_compose_and_prometheus(compose: dict[str, Any], service: str) -> None:
    port = environment(compose, service)["MEER_HTTP_PORT"]
    assert [(host, inside) for _, host, inside in published_ports(compose, service)] == [(port, port)]
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    job = next(job for job in scrape if job["job_name"] == service)
    [discovery] = job["dns_sd_configs"]
    assert (discovery["names"], discovery["type"], discovery["port"]) == ([service], "A", int(port))


def test_hit_processor_metrics_port_agrees_between_settings_compose_and_prometheus(compose: dict[str, Any]) -> None:
    port = environment(compose, HIT_PROCESSOR)["MEER_HIT_METRICS_PORT"]
    assert int(port) == TrackingSettings().hit_metrics_port
    assert [str(p) for p in compose["services"][HIT_PROCESSOR]["expose"]] == [port]
    assert not published_ports(compose, HIT_PROCESSOR), "only Prometheus, inside the network, needs it"
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    job = next(job for job in scrape if job["job_name"] == HIT_PROCESSOR)
    [discovery] = job["dns_sd_configs"]
    assert (discovery["names"], discovery["type"], discovery["port"]) == ([HIT_PROCESSOR], "A", int(port))
    assert job["authorization"]["credentials_file"] == "/prometheus/metrics-token"


# --- compose: Kafka ---------------------------------------------------------------------


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@localhost:9093"
    assert not [key for key in env if "ZOOKEEPER" in key]
    assert not [name for name in compose["services"] if "zookeeper" in name]
    # The storage format step rejects anything but a base64url UUID.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert "SASL_PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert kafka["volumes"] == [f"kafka-data:{env['KAFKA_LOG_DIRS']}"]


# --- the image ---------------------------------------------------------------------------


def test_dockerfile_installs_pinned_and_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert all(arguments.split()[0] == "python:3.11-slim" for keyword, arguments in instructions if keyword == "FROM")
    installs = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]
    assert installs, "no pip install in the Dockerfile"
    for args in installs:
        assert re.search(r"-r \S*requirements\.txt", args) and re.search(r"-c \S*constraints\.txt", args), args
    final = final_stage(instructions)
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage never leaves root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert [keyword for keyword, _ in final].index("USER") > max(
        i for i, (keyword, _) in enumerate(final) if keyword in {"RUN", "COPY"}
    ), "USER must come after the last RUN or COPY, or those layers would decide the user"
    entrypoint = [json.loads(arguments) for keyword, arguments in final if keyword == "ENTRYPOINT"]
    assert entrypoint == [["python", "-m"]]
    healthcheck = " ".join(arguments for keyword, arguments in final if keyword == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "MEER_HTTP_PORT" in healthcheck


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert rules[0] == "*", ".dockerignore should start by excluding everything"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in arguments.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} but .dockerignore keeps it out"
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    for private in (".venv", "var", "tests", ".git", ".env"):
        assert private not in allowed


# --- Prometheus ---------------------------------------------------------------------


def test_promtool_accepts_the_config() -> None:
    # --syntax-only: the metrics-token file exists only inside the container (compose writes it).
    result = promtool("check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", APP_SERVICES)
def test_prometheus_sends_the_metrics_token_that_compose_writes(compose: dict[str, Any], service: str) -> None:
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    job = next(job for job in scrape if job["job_name"] == service)
    assert job["authorization"]["type"] == "Bearer"
    prometheus = compose["services"]["prometheus"]
    assert f"> {job['authorization']['credentials_file']}" in " ".join(prometheus["entrypoint"])
    assert prometheus["environment"]["METRICS_TOKEN"] == environment(compose, service)["MEER_METRICS_TOKEN"]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "deploy/prometheus/alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_says_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_alerts_query_only_metrics_the_services_export() -> None:
    # An alert on a misspelt metric is never evaluated against anything and never fires.
    defined = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(meer_\w+)\"")
    exported: set[str] = set()
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]:
        for kind, name in defined.findall(path.read_text()):
            if kind == "Counter":
                exported.add(name if name.endswith("_total") else f"{name}_total")
            elif kind in {"Histogram", "Summary"}:
                exported |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            else:
                exported.add(name)
    queried = {name for rule in alert_rules() for name in re.findall(r"\bmeer_\w+", rule["expr"])}
    assert queried, "no alert queries a meer_ metric"
    assert queried <= exported, f"not exported by any service: {sorted(queried - exported)}"


def test_availability_alerts_cover_every_scraped_service() -> None:
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    assert {job["job_name"] for job in scrape} == {*APP_SERVICES, HIT_PROCESSOR}
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert rules["MeerHitProcessorDown"] == f'up{{job="{HIT_PROCESSOR}"}} == 0'
    assert rules["MeerHitProcessorAbsent"] == f'absent(up{{job="{HIT_PROCESSOR}"}})'
    down = re.search(r'up\{job=~"([^"]+)"\}', rules["MeerServiceDown"])
    assert down and set(down.group(1).split("|")) == set(APP_SERVICES)
    assert set(re.findall(r'absent\(up\{job="(\w+)"\}\)', rules["MeerServiceAbsent"])) == set(APP_SERVICES)
