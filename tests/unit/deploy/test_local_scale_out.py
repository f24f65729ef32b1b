"""The local stack's scale-out settings: a Kafka cluster of three nodes and replicas of every
service, with ports derived inside the stack's own window, and PostgreSQL's fsync on when asked
(the drills) while compose and the deployment files never turn it off."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from deploy.local import stack

ROOT = Path(__file__).resolve().parents[3]
SCALE_SETTINGS = (
    "MEER_LOCAL_KAFKA_BROKERS",
    "MEER_LOCAL_PG_FSYNC",
    *(stack.replica_setting(base) for base in (*stack.SERVICE_PORTS, *stack.WORKERS)),
)
# Stacks on one machine use port offsets 300 apart: every port of one stack stays below the next's.
STACK_WINDOW = 300


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """The stack module as it is with these MEER_LOCAL_* settings; reloaded as it was afterwards."""

    def load(**env: str) -> ModuleType:
        for name in SCALE_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        local = importlib.reload(stack)
        # The key files are made on first use; these tests only look at the settings.
        monkeypatch.setattr(local, "ensure_staff_keys", lambda: (Path("/keys/staff.pem"), Path("/keys/staff.pub")))
        return local

    yield load
    monkeypatch.undo()
    importlib.reload(stack)


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_by_default_one_kafka_node_one_process_per_service_and_no_fsync(
    configured: Callable[..., ModuleType],
) -> None:
    local = configured()
    assert [node.name for node in local.KAFKA_NODES] == ["kafka"]
    assert local.Urls.kafka == f"127.0.0.1:{local.KAFKA_PORT}"
    props = properties(local.kafka_properties(local.KAFKA_NODES[0]))
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{local.KAFKA_CONTROLLER_PORT}"
    assert props["log.dirs"] == str(local.KAFKA_DIR / "data")
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert [p.name for p in local.SERVICE_PROCESSES] == list(local.SERVICE_PORTS)
    assert [p.name for p in local.WORKER_PROCESSES] == list(local.WORKERS)
    assert "-c fsync=off" in local.postgres_options()
    assert "MEER_KAFKA_REPLICATION_FACTOR" not in local.service_env("coaching")


def test_three_nodes_form_one_quorum_with_replication_three_and_two_in_sync(
    configured: Callable[..., ModuleType],
) -> None:
    local = configured(MEER_LOCAL_KAFKA_BROKERS="3")
    nodes = local.KAFKA_NODES
    assert [node.name for node in nodes] == ["kafka", "kafka-2", "kafka-3"]
    every = [properties(local.kafka_properties(node)) for node in nodes]
    assert len({props["controller.quorum.voters"] for props in every}) == 1, "one quorum"
    assert every[0]["controller.quorum.voters"].count("@") == 3
    assert [props["node.id"] for props in every] == ["1", "2", "3"]
    assert len({props["log.dirs"] for props in every}) == 3, "each node its own data"
    for props in every:
        assert props["process.roles"] == "broker,controller"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        for topic in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
            assert props[f"{topic}.replication.factor"] == "3"
        for topic in ("transaction.state.log", "share.coordinator.state.topic"):
            assert props[f"{topic}.min.isr"] == "2"
    ports = [port for node in nodes for port in (node.port, node.controller_port, node.sasl_port)]
    assert len(set(ports)) == 9
    assert all(local.KAFKA_PORT <= port <= local.KAFKA_PORT + 99 for port in ports), "within +0..+99"
    assert local.Urls.kafka.split(",") == [f"127.0.0.1:{node.port}" for node in nodes]
    env = local.service_env("mailer")
    assert env["MEER_KAFKA_BOOTSTRAP"] == local.Urls.kafka
    assert env["MEER_KAFKA_REPLICATION_FACTOR"] == "3"
    assert set(local.PARTS) >= {"kafka", "kafka-2", "kafka-3"}
    assert local.part_ports("kafka-3") == [nodes[2].port, nodes[2].controller_port, nodes[2].sasl_port]


def test_replicas_get_their_own_name_port_log_and_journal_in_the_stack_window(
    configured: Callable[..., ModuleType],
) -> None:
    replicas = {local_setting: "3" for local_setting in SCALE_SETTINGS if "REPLICAS" in local_setting}
    local = configured(MEER_LOCAL_KAFKA_BROKERS="3", MEER_LOCAL_PORT_OFFSET="0", **replicas)
    processes = [*local.SERVICE_PROCESSES, *local.WORKER_PROCESSES]
    assert len(processes) == 3 * (len(local.SERVICE_PORTS) + len(local.WORKERS))
    names = [process.name for process in processes]
    assert len(set(names)) == len(names) and set(names) <= set(local.PARTS)
    assert {"coaching-2", "coaching-3", "tracking-hit-processor-3"} <= set(names)
    ports = [process.port for process in processes if process.port is not None]
    others = [local.PG_PORT, local.SMTP_PORT, local.MAILCATCHER_HTTP_PORT]
    others += [port for node in local.KAFKA_NODES for port in (node.port, node.controller_port, node.sasl_port)]
    assert len(set(ports)) == len(ports) and not set(ports) & set(others)
    assert all(8001 <= port < 8001 + STACK_WINDOW for port in ports)
    tracking = [process for process in processes if process.base == "tracking"]
    journals = {local.process_env(process)["MEER_PIXEL_JOURNAL_DIR"] for process in tracking}
    assert len(journals) == len(tracking), "no two tracking processes replay one journal"
    second = next(process for process in processes if process.name == "coaching-2")
    env = local.process_env(second)
    assert env["MEER_HTTP_PORT"] == str(second.port) != local.service_env("coaching")["MEER_HTTP_PORT"]
    assert "MEER_CONSUMER_GROUP" not in env, "replicas share their service's consumer group"


def test_the_drills_setting_turns_fsync_on(configured: Callable[..., ModuleType]) -> None:
    assert "-c fsync=on" in configured(MEER_LOCAL_PG_FSYNC="on").postgres_options()


@pytest.mark.parametrize(("setting", "value"), [("MEER_LOCAL_KAFKA_BROKERS", "0"), ("MEER_LOCAL_REPLICAS_MAILER", "x")])
def test_a_count_out_of_range_is_one_clear_error(
    configured: Callable[..., ModuleType], setting: str, value: str
) -> None:
    with pytest.raises(SystemExit, match=setting):
        configured(**{setting: value})


def test_a_bad_fsync_value_is_one_clear_error(configured: Callable[..., ModuleType]) -> None:
    with pytest.raises(SystemExit, match="MEER_LOCAL_PG_FSYNC"):
        configured(MEER_LOCAL_PG_FSYNC="maybe")


# Settings that let PostgreSQL acknowledge a commit it may lose in a crash.
UNSAFE = re.compile(r"\b(fsync|full_page_writes)\b\s*[=:]?\s*['\"]?(off|false|no|0)\b", re.IGNORECASE)


def deployment_files() -> list[Path]:
    found = [ROOT / "docker-compose.yml"]
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_file() and "local" not in path.relative_to(ROOT / "deploy").parts and path.suffix != ".pyc":
            found.append(path)
    return found


def test_compose_and_the_deployment_files_never_turn_fsync_off() -> None:
    files = deployment_files()
    assert any(path.suffix in (".yaml", ".yml") and "k8s" in path.parts for path in files)
    offending = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in files
        for match in UNSAFE.finditer(path.read_text(errors="replace"))
    ]
    assert offending == []


def test_the_unsafe_pattern_finds_the_ways_to_turn_fsync_off() -> None:
    for text in ("-c fsync=off", "fsync: 'off'", "POSTGRES_INITDB_ARGS: -c full_page_writes=false", "fsync = 0"):
        assert UNSAFE.search(text), text
    assert not UNSAFE.search("fsync=on")
