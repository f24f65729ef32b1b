"""Runs the whole platform on this machine without Docker: Kafka (KRaft), PostgreSQL,
the SMTP catcher and the four services, as background processes under ./var.

    python -m deploy.local.stack up [--no-demo] [--restart-services]
    python -m deploy.local.stack down
    python -m deploy.local.stack status

Every step is idempotent: `up` starts only what is not running yet. Logs go to
var/log/<name>.log, pid files to var/run/<name>.pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("MEER_VAR_DIR", ROOT / "var"))
LOG_DIR = VAR / "log"
RUN_DIR = VAR / "run"
KAFKA_LIBS = VAR / "kafka-libs"
KAFKA_DIR = VAR / "kafka"
PG_DIR = VAR / "pg"

HOST = "127.0.0.1"
# A second stack on the same machine (another checkout, a parallel test run) sets
# MEER_LOCAL_PORT_OFFSET and MEER_VAR_DIR, and shares nothing with the first.
PORT_OFFSET = int(os.environ.get("MEER_LOCAL_PORT_OFFSET", "0"))
KAFKA_PORT = 19092 + PORT_OFFSET
KAFKA_CONTROLLER_PORT = 19093 + PORT_OFFSET
KAFKA_SASL_PORT = 19094 + PORT_OFFSET  # SCRAM logins, for the test of the services' Kafka security settings
PG_PORT = 55432 + PORT_OFFSET
SMTP_PORT = 1025 + PORT_OFFSET
MAILCATCHER_HTTP_PORT = 8025 + PORT_OFFSET
SERVICE_PORTS = {"enrolment": 8001, "mailer": 8002, "tracking": 8003, "coaching": 8004}
SERVICE_PORTS = {name: port + PORT_OFFSET for name, port in SERVICE_PORTS.items()}
# Processes without an HTTP port of their own: the service whose settings they run with, and their module.
WORKERS = {"tracking-hit-processor": ("tracking", "services.tracking.hit_processor")}
# Where a worker serves /metrics (its only HTTP port), and the setting that tells it so.
WORKER_METRICS_PORTS = {"tracking-hit-processor": ("MEER_HIT_METRICS_PORT", 8009 + PORT_OFFSET)}
KEYS_DIR = VAR / "keys"
PIXEL_JOURNAL_DIR = VAR / "pixel-journal"
KAFKA_PARTITIONS = 3

# Scale-out on one machine. MEER_LOCAL_KAFKA_BROKERS=3 runs a KRaft cluster of three combined
# broker+controller nodes from the same jars; MEER_LOCAL_REPLICAS_<PROCESS>=2 (COACHING,
# TRACKING_HIT_PROCESSOR, ...) runs that many copies of a service or worker in one consumer group.
# Node n and replica n listen NODE_PORT_STEP*(n-1) above the first: inside this stack's port window
# (stacks are 300 apart), and never on a port of another part of the stack.
NODE_PORT_STEP = 10
MAX_NODES = 9


def _count_setting(name: str) -> int:
    raw = os.environ.get(name, "1")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_NODES:
        raise SystemExit(f"[meer] error: {name}={raw!r} is not a number from 1 to {MAX_NODES}; set it to, e.g., 3")
    return int(raw)


KAFKA_BROKERS = _count_setting("MEER_LOCAL_KAFKA_BROKERS")
KAFKA_REPLICATION_FACTOR = min(KAFKA_BROKERS, 3)
# One node may be away (a restart, a crash) while producers with acks=all go on; two may not.
KAFKA_MIN_INSYNC_REPLICAS = max(1, KAFKA_REPLICATION_FACTOR - 1)
# The drills need PostgreSQL to keep what it acknowledged across a SIGKILL; development does not.
PG_FSYNC = os.environ.get("MEER_LOCAL_PG_FSYNC", "off")
if PG_FSYNC not in ("on", "off"):
    raise SystemExit(f"[meer] error: MEER_LOCAL_PG_FSYNC={PG_FSYNC!r} must be 'on' or 'off'")


@dataclass(frozen=True)
class KafkaNode:
    """One node of the local Kafka: node 1 keeps today's ports, process name and folder."""

    node_id: int

    @property
    def name(self) -> str:
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"

    @property
    def port(self) -> int:
        return KAFKA_PORT + NODE_PORT_STEP * (self.node_id - 1)

    @property
    def controller_port(self) -> int:
        return KAFKA_CONTROLLER_PORT + NODE_PORT_STEP * (self.node_id - 1)

    @property
    def sasl_port(self) -> int:
        return KAFKA_SASL_PORT + NODE_PORT_STEP * (self.node_id - 1)

    @property
    def directory(self) -> Path:
        return KAFKA_DIR if self.node_id == 1 else KAFKA_DIR / f"node-{self.node_id}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


KAFKA_NODES = tuple(KafkaNode(n) for n in range(1, KAFKA_BROKERS + 1))


@dataclass(frozen=True)
class ServiceProcess:
    """One process of a service or worker: replica 1 keeps today's name, port and files."""

    base: str  # a key of SERVICE_PORTS or WORKERS
    replica: int

    @property
    def name(self) -> str:
        return self.base if self.replica == 1 else f"{self.base}-{self.replica}"

    @property
    def service(self) -> str:
        return WORKERS[self.base][0] if self.base in WORKERS else self.base

    @property
    def module(self) -> str:
        return WORKERS[self.base][1] if self.base in WORKERS else f"services.{self.base}"

    @property
    def port(self) -> int | None:
        if self.base not in SERVICE_PORTS:
            return None
        return SERVICE_PORTS[self.base] + NODE_PORT_STEP * (self.replica - 1)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def metrics_port(self) -> int | None:
        """A worker's own /metrics and /healthz port (see WORKER_METRICS_PORTS)."""
        if self.base not in WORKER_METRICS_PORTS:
            return None
        return WORKER_METRICS_PORTS[self.base][1] + NODE_PORT_STEP * (self.replica - 1)


def replica_setting(base: str) -> str:
    return f"MEER_LOCAL_REPLICAS_{base.upper().replace('-', '_')}"


REPLICAS = {base: _count_setting(replica_setting(base)) for base in (*SERVICE_PORTS, *WORKERS)}


def replicas_of(base: str) -> list[ServiceProcess]:
    return [ServiceProcess(base, n) for n in range(1, REPLICAS[base] + 1)]


SERVICE_PROCESSES = [process for base in SERVICE_PORTS for process in replicas_of(base)]
WORKER_PROCESSES = [process for base in WORKERS for process in replicas_of(base)]


ERROR_WORDS = ("error", "fatal", "denied", "could not", "cannot", "failed", "exception")


class StackError(RuntimeError):
    """A step of the local stack failed; the message (one line) says what failed and what to do."""


@contextlib.contextmanager
def step(what: str, todo: str) -> Iterator[None]:
    """Turn any failure inside a start step into one StackError line: what failed, what to do."""
    try:
        yield
    except StackError:
        raise
    except Exception as error:  # every failure becomes one readable line
        detail = telling_line(str(error)) if str(error).strip() else type(error).__name__
        raise StackError(f"{what} failed ({type(error).__name__}: {detail}); {todo}") from error


@dataclass(frozen=True)
class Urls:
    """Where the parts of the local stack listen."""

    kafka: str = ",".join(node.address for node in KAFKA_NODES)
    smtp_host: str = HOST
    smtp_port: int = SMTP_PORT
    mailcatcher: str = f"http://{HOST}:{MAILCATCHER_HTTP_PORT}"

    @staticmethod
    def service(name: str) -> str:
        return f"http://{HOST}:{SERVICE_PORTS[name]}"

    @staticmethod
    def postgres_server() -> str:
        """Server URL without a database; DATABASE_URL wins when it is set."""
        external = os.environ.get("DATABASE_URL")
        if external:
            return external.rsplit("/", 1)[0] if external.count("/") > 2 else external
        return f"postgresql://meer@{HOST}:{PG_PORT}"


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# --- processes ---------------------------------------------------------------


_children: dict[str, subprocess.Popen[bytes]] = {}


def _pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def running_pid(name: str) -> int | None:
    """The pid of a process this script started, if it is still alive."""
    path = _pid_file(name)
    if not path.exists():
        return None
    child = _children.get(name)
    if child is not None and child.poll() is not None:
        # Our own child that exited is a zombie until reaped: kill(pid, 0) would still succeed.
        path.unlink(missing_ok=True)
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pid


def start_process(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start argv in its own session, output appended to var/log/<name>.log."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    _pid_file(name).write_text(str(proc.pid))
    _children[name] = proc
    return proc.pid


def stop_process(name: str, timeout: float = 15.0) -> None:
    pid = running_pid(name)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        log(f"{name} did not stop in {timeout:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pid_file(name).unlink(missing_ok=True)
    log(f"stopped {name}")


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def last_log_lines_of(path: Path, count: int) -> str:
    lines = path.read_text(errors="replace").splitlines()[-count:] if path.exists() else []
    return "\n".join(line[:300] for line in lines)


def wait_until(what: str, check: Callable[[], bool], timeout: float, log_name: str) -> None:
    """Poll check() until it is true; fail early if the process died, or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if _pid_file(log_name).exists() and running_pid(log_name) is None:
            last = telling_line(last_log_lines_of(LOG_DIR / f"{log_name}.log", 20))
            raise StackError(f"{what} exited at start ({last}); see {LOG_DIR / log_name}.log")
        time.sleep(0.2)
    raise StackError(
        f"{what} did not become ready within {timeout:.0f}s; see {LOG_DIR / log_name}.log "
        "(a busy machine: run './meer up' again)"
    )


# --- Java and Kafka ----------------------------------------------------------


def java_major_version() -> int | None:
    java = shutil.which("java")
    if java is None:
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    for token in out.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and "." in token:
            return int(head)
    return None


def ensure_kafka_jars() -> None:
    """Copy the broker's jars from Maven Central once; re-copy when pom.xml changes."""
    pom = ROOT / "deploy" / "local" / "pom.xml"
    stamp = KAFKA_LIBS / ".pom-sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if shutil.which("mvn") is None:
        raise StackError("no Maven found: install it with 'apt-get install -y maven'")
    log("fetching the Kafka broker jars with Maven (first start only)")
    if KAFKA_LIBS.exists():
        shutil.rmtree(KAFKA_LIBS)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
            f"-DoutputDirectory={KAFKA_LIBS}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(
            f"Maven could not fetch the Kafka jars ({telling_line(result.stdout + result.stderr, first=True)}); "
            "check the internet connection to Maven Central and run './meer up' again"
        )
    stamp.write_text(digest)


def kafka_properties(node: KafkaNode = KAFKA_NODES[0]) -> str:
    """One node's server.properties; with several nodes each is a broker and a controller voter."""
    voters = ",".join(f"{other.node_id}@{HOST}:{other.controller_port}" for other in KAFKA_NODES)
    replication, min_isr = KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port},"
            f"SASL_PLAINTEXT://{HOST}:{node.sasl_port}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{node.port},SASL_PLAINTEXT://{HOST}:{node.sasl_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            # The services use PLAINTEXT on loopback; this listener only lets tests log in with
            # SCRAM and be held to ACLs as in the deployments (tests/e2e/test_kafka_sasl.py).
            # The plaintext listeners' anonymous clients (everything else here) may do anything.
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
            f"log.dirs={node.data}",
            f"num.partitions={KAFKA_PARTITIONS}",
            "auto.create.topics.enable=true",
            f"default.replication.factor={replication}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replication}",
            "offsets.topic.num.partitions=3",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            # Topics made by a producer, not ensure_topics(), keep events as long (shared.kafka.topic_config).
            "log.retention.ms=-1",
            # The log cleaner looks for compactable logs every second (default 15 s): tests wait less.
            "log.cleaner.backoff.ms=1000",
            "",
        ]
    )


def kafka_java_cmd(main_class: str, *args: str) -> list[str]:
    return [
        "java",
        "-Xms256m",
        # Three nodes share two cores and a few GB with everything else (TECH-NOTES: ~370 MB each).
        "-Xmx768m" if len(KAFKA_NODES) == 1 else "-Xmx512m",
        "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{KAFKA_DIR / 'none'}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main_class,
        *args,
    ]


def kafka_ready(node: KafkaNode = KAFKA_NODES[0]) -> bool:
    """True once the node answers a metadata request (an open port is not enough) and the
    cluster it reports has every node of this stack as a broker."""

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=node.address, request_timeout_ms=2000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return len(cluster["brokers"]) == len(KAFKA_NODES)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        finally:
            await admin.close()

    return port_open(node.port) and asyncio.run(probe())


NODES_FILE = "nodes"


def format_kafka_storage() -> None:
    """Format every node's data folder once, all with one cluster id; refuse data made for
    another number of nodes (its controller quorum would never form)."""
    made_for = KAFKA_DIR / NODES_FILE
    first = KAFKA_NODES[0].data / "meta.properties"
    formatted_nodes = int(made_for.read_text()) if made_for.exists() else (1 if first.exists() else None)
    if formatted_nodes is not None and formatted_nodes != len(KAFKA_NODES):
        raise StackError(
            f"the Kafka data in {KAFKA_DIR} was made for {formatted_nodes} node(s), not {len(KAFKA_NODES)} "
            "(MEER_LOCAL_KAFKA_BROKERS); start afresh with './meer down --delete-data' or use another MEER_VAR_DIR"
        )
    missing = [node for node in KAFKA_NODES if not (node.data / "meta.properties").exists()]
    if not missing:
        return
    cluster_id = next(
        (
            line.split("=", 1)[1].strip()
            for node in KAFKA_NODES
            if (node.data / "meta.properties").exists()
            for line in (node.data / "meta.properties").read_text().splitlines()
            if line.startswith("cluster.id=")
        ),
        None,
    )
    if cluster_id is None:
        made = subprocess.run(kafka_java_cmd("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True)
        if made.returncode != 0 or not made.stdout.strip():
            raise StackError(
                f"Kafka's storage tool did not run ({telling_line(made.stderr + made.stdout)}); "
                f"delete {KAFKA_LIBS} and run './meer up' again"
            )
        cluster_id = made.stdout.strip().splitlines()[-1]
    for node in missing:
        props = node.directory / "server.properties"
        result = subprocess.run(
            kafka_java_cmd(
                "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted"
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka's storage in {node.data} failed "
                f"({telling_line(result.stderr + result.stdout)}); delete that folder and run './meer up' again"
            )
    made_for.write_text(f"{len(KAFKA_NODES)}\n")


def start_kafka() -> None:
    if all(running_pid(node.name) and port_open(node.port) for node in KAFKA_NODES):
        log(f"kafka already running on {Urls.kafka}")
        return
    major = java_major_version()
    if major is None or major < 17:
        raise StackError("no JDK 17 or newer found: install it with 'apt-get install -y openjdk-17-jre-headless'")
    ensure_kafka_jars()
    for node in KAFKA_NODES:
        node.directory.mkdir(parents=True, exist_ok=True)
        (node.directory / "server.properties").write_text(kafka_properties(node))
    format_kafka_storage()
    # All nodes first: a controller quorum needs a majority of its voters before any answers.
    for node in KAFKA_NODES:
        if not running_pid(node.name):
            start_process(node.name, kafka_java_cmd("kafka.Kafka", str(node.directory / "server.properties")))
    for node in KAFKA_NODES:
        wait_until(f"Kafka on {node.address}", functools.partial(kafka_ready, node), 180, node.name)
    log(f"kafka ready on {Urls.kafka}")


def start_kafka_node(node: KafkaNode, timeout: float = 240) -> None:
    """Start one node of a running cluster again (after a drill killed it); wait until it is back.
    A node that was killed replays its logs first: minutes on a loaded 2-core machine."""
    if not running_pid(node.name):
        start_process(node.name, kafka_java_cmd("kafka.Kafka", str(node.directory / "server.properties")))
    wait_until(f"Kafka on {node.address}", functools.partial(kafka_ready, node), timeout, node.name)
    log(f"{node.name} ready on {node.address}")


# --- PostgreSQL --------------------------------------------------------------


def pg_bin(tool: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True)
    if candidates:
        return str(candidates[0])
    raise StackError("no PostgreSQL server found: install it with 'apt-get install -y postgresql'")


def as_pg_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def postgres_user_home() -> Path:
    try:
        return Path(pwd.getpwnam("postgres").pw_dir)
    except KeyError:
        raise StackError(
            "there is no 'postgres' user to run PostgreSQL as root: install it with 'apt-get install -y postgresql'"
        ) from None


def pg_home() -> Path:
    """The folder with this stack's PostgreSQL data, socket and log.

    As an ordinary user the server runs as that user, in var/pg. As root it runs as the
    postgres user, who may not enter the checkout (a clone in root's home is 0700), so it
    lives in the postgres user's home, in a folder named after a hash of the var folder:
    every stack (MEER_VAR_DIR) keeps its own. A stack whose data was made in var/pg before
    keeps using it there."""
    if os.geteuid() != 0 or (PG_DIR / "data" / "PG_VERSION").exists():
        return PG_DIR
    digest = hashlib.sha256(str(VAR.resolve()).encode()).hexdigest()[:16]
    return postgres_user_home() / f"meer-{digest}"


STACK_ID_FILE = "stack-id"


def forget_orphaned_postgres(home: Path) -> None:
    """Delete PostgreSQL data left behind by a var folder that no longer exists.

    As root the data lives outside the var folder (see pg_home), so deleting var/ (and with
    it Kafka's log) would otherwise leave a database full of projections and outbox rows that
    no topic backs any more. The var folder and the data folder each keep the same stack id;
    when they differ, the data belongs to a var folder that is gone. Data made before ids
    existed is kept when Kafka's data is still there, and adopted."""
    var_id_file, home_id_file = VAR / STACK_ID_FILE, home / STACK_ID_FILE
    var_id = var_id_file.read_text().strip() if var_id_file.exists() else None
    home_id = home_id_file.read_text().strip() if home_id_file.exists() else None
    has_data = (home / "data" / "PG_VERSION").exists()
    adopt = var_id is None and home_id is None and KAFKA_DIR.exists()
    same_stack = var_id is not None and var_id == home_id
    if has_data and not same_stack and not adopt:
        log(f"removing PostgreSQL data of a deleted var folder ({home}): it belongs to no Kafka log any more")
        shutil.rmtree(home)
    if not same_stack:
        stack_id = var_id or uuid.uuid4().hex
        VAR.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        var_id_file.write_text(stack_id + "\n")
        home_id_file.write_text(stack_id + "\n")


def pg_log_file(home: Path) -> Path:
    return LOG_DIR / "postgres.log" if home == PG_DIR else home / "postgres.log"


def telling_line(output: str, *, first: bool = False) -> str:
    """The line of a tool's output or log that says what went wrong, for a one-line error."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if any(word in line.lower() for word in ERROR_WORDS)]
    pick = errors or lines
    if not pick:
        return "no output"
    return (pick[0] if first else pick[-1])[:300]


def start_postgres() -> None:
    if os.environ.get("DATABASE_URL"):
        log("DATABASE_URL is set: using that PostgreSQL server")
        return
    if port_open(PG_PORT):
        log(f"postgres already running on {HOST}:{PG_PORT}")
        return
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    home = pg_home()
    data = home / "data"
    if home != PG_DIR:
        forget_orphaned_postgres(home)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for folder in (home, data):
                shutil.chown(folder, "postgres")
                folder.chmod(0o700)
        result = subprocess.run(
            as_pg_user([initdb, "-D", str(data), "-U", "meer", "--auth=trust", "-E", "UTF8", "--no-locale"]),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(
                f"initdb could not create the PostgreSQL data folder {data}: "
                f"{telling_line(result.stderr + result.stdout, first=True)}; "
                "remove that folder and run './meer up' again"
            )
    log_file = pg_log_file(home)
    log_file.touch()
    if os.geteuid() == 0:
        shutil.chown(log_file, "postgres")
    options = f"-c listen_addresses={HOST} -p {PG_PORT} -k {home} {postgres_options()}"
    result = subprocess.run(
        as_pg_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(log_file), "-w", "-t", "30", "start"]),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        last = telling_line(last_log_lines_of(log_file, 20) or result.stderr + result.stdout)
        raise StackError(
            f"PostgreSQL did not start on port {PG_PORT} ({last}); see {log_file}, "
            "or start afresh with './meer down --delete-data', and run './meer up' again"
        )
    log(f"postgres ready on {HOST}:{PG_PORT} (data in {data})")


def postgres_options() -> str:
    """Server settings of the local PostgreSQL: fsync only when asked (MEER_LOCAL_PG_FSYNC=on, the drills)."""
    return f"-c fsync={PG_FSYNC} -c max_connections=300"


def stop_postgres() -> None:
    data = pg_home() / "data"
    if os.environ.get("DATABASE_URL") or not (data / "postmaster.pid").exists():
        return
    subprocess.run(as_pg_user([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)
    log("stopped postgres")


def database_url(service: str) -> str:
    return f"{Urls.postgres_server().replace('postgresql://', 'postgresql+asyncpg://', 1)}/meer_{service}"


def create_databases() -> None:
    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(f"{Urls.postgres_server()}/postgres")
        try:
            existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
            for service in SERVICE_PORTS:
                if f"meer_{service}" not in existing:
                    await conn.execute(f'CREATE DATABASE "meer_{service}"')
        finally:
            await conn.close()

    asyncio.run(create())


# --- mail catcher and services ------------------------------------------------


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_mailcatcher() -> None:
    if running_pid("mailcatcher") is None:
        argv = [
            sys.executable,
            str(ROOT / "deploy" / "local" / "mailcatcher.py"),
            "--smtp-port",
            str(SMTP_PORT),
            "--http-port",
            str(MAILCATCHER_HTTP_PORT),
        ]
        start_process("mailcatcher", argv)
    elif port_open(SMTP_PORT):
        log(f"mail catcher already running: {Urls.mailcatcher}")
        return
    # Else the catcher an earlier start left is still reading its stored mails (after benchmarks,
    # more than the wait below allows): wait for it. A second one could not bind its ports and
    # would leave the first one running without its pid file.
    wait_until("the mail catcher", lambda: http_ok(f"{Urls.mailcatcher}/healthz"), 20, "mailcatcher")
    log(f"mail catcher ready: SMTP {HOST}:{SMTP_PORT}, web {Urls.mailcatcher}")


def ensure_staff_keys() -> tuple[Path, Path]:
    """The Ed25519 key pair for staff tokens: made once per local stack, never committed."""
    private, public = KEYS_DIR / "staff-token.pem", KEYS_DIR / "staff-token.pub"
    if not private.exists() or not public.exists():
        from shared.staff_tokens import generate_key_pair

        generate_key_pair(private, public)
    return private, public


def service_env(name: str) -> dict[str, str]:
    """The environment the local stack gives one service (see the README's table)."""
    private_key, public_key = ensure_staff_keys()
    keys = {"MEER_STAFF_TOKEN_PUBLIC_KEY_PATH": str(public_key)}
    if name == "enrolment":
        keys["MEER_STAFF_TOKEN_PRIVATE_KEY_PATH"] = str(private_key)
    base_urls = {f"MEER_{other.upper()}_BASE_URL": Urls.service(other) for other in SERVICE_PORTS}
    if name == "mailer":
        # Locally the coaches' morning mail may go at any hour (the demo and the tests see it at once).
        keys["MEER_DIGEST_LOCAL_TIME"] = "00:00"
    if name == "tracking":
        keys["MEER_PIXEL_JOURNAL_DIR"] = str(PIXEL_JOURNAL_DIR)
    if len(KAFKA_NODES) > 1:
        keys["MEER_KAFKA_REPLICATION_FACTOR"] = str(KAFKA_REPLICATION_FACTOR)
    return {
        **keys,
        **base_urls,
        "MEER_ENV": "development",
        "MEER_DATABASE_URL": database_url(name),
        "MEER_KAFKA_BOOTSTRAP": Urls.kafka,
        "MEER_HTTP_HOST": HOST,
        "MEER_HTTP_PORT": str(SERVICE_PORTS[name]),
        "MEER_SMTP_HOST": Urls.smtp_host,
        "MEER_SMTP_PORT": str(Urls.smtp_port),
    }


def process_env(process: ServiceProcess) -> dict[str, str]:
    """A replica runs with its service's settings, its own port and its own local files."""
    env = service_env(process.service)
    if process.port is not None:
        env["MEER_HTTP_PORT"] = str(process.port)
    if process.metrics_port is not None:
        env[WORKER_METRICS_PORTS[process.base][0]] = str(process.metrics_port)
    if process.replica > 1 and "MEER_PIXEL_JOURNAL_DIR" in env:
        # A journal is replayed by the process that wrote it; two replicas must not share one.
        env["MEER_PIXEL_JOURNAL_DIR"] = f"{PIXEL_JOURNAL_DIR}-{process.replica}"
    return env


def start_service_process(process: ServiceProcess) -> None:
    """Start one process of a service or worker unless it runs (the drills restart a killed one)."""
    if running_pid(process.name):
        log(f"{process.name} already running" + (f": {process.url}" if process.port else ""))
        return
    start_process(process.name, [sys.executable, "-m", process.module], env=process_env(process))
    if process.metrics_port is not None:
        # Its metrics port answers once it waited for PostgreSQL and Kafka and began its work.
        url = f"http://{HOST}:{process.metrics_port}/healthz"
        wait_until(f"the {process.name}", functools.partial(http_ok, url), 90, process.name)
    if process.port is None:
        log(f"{process.name} started")


def wait_ready(process: ServiceProcess) -> None:
    wait_until(f"the {process.name} service", functools.partial(http_ok, f"{process.url}/readyz"), 90, process.name)
    log(f"{process.name} ready: {process.url}")


def start_services(restart: bool) -> None:
    for process in SERVICE_PROCESSES:
        if restart:
            stop_process(process.name)
        start_service_process(process)
    for process in SERVICE_PROCESSES:
        wait_ready(process)
    # After the services: each worker needs the tables its service's migrations made.
    for process in WORKER_PROCESSES:
        if restart:
            stop_process(process.name)
        start_service_process(process)


def start_worker(name: str) -> None:
    """Start a worker process (see WORKERS) unless it runs."""
    start_service_process(ServiceProcess(name, 1))


# --- commands -----------------------------------------------------------------


PARTS = (
    "postgres",
    *(node.name for node in KAFKA_NODES),
    "mailcatcher",
    *(process.name for process in SERVICE_PROCESSES),
    *(process.name for process in WORKER_PROCESSES),
)


def part_ports(name: str) -> list[int]:
    fixed = {"postgres": [PG_PORT], "mailcatcher": [SMTP_PORT, MAILCATCHER_HTTP_PORT]}
    fixed |= {node.name: [node.port, node.controller_port, node.sasl_port] for node in KAFKA_NODES}
    fixed |= {process.name: [process.port] for process in SERVICE_PROCESSES if process.port is not None}
    fixed |= {process.name: [process.metrics_port] for process in WORKER_PROCESSES if process.metrics_port}
    return fixed.get(name, [])


def running_parts() -> list[str]:
    """The parts of this stack that run now: by the pid files this script keeps, and by their ports."""
    found = []
    for name in PARTS:
        if name == "postgres" and os.environ.get("DATABASE_URL"):
            continue
        if (name != "postgres" and running_pid(name)) or any(port_open(port) for port in part_ports(name)):
            found.append(name)
    return found


def stop_parts(names: Sequence[str]) -> None:
    """Stop some parts of the stack, services first and PostgreSQL last."""
    for name in reversed(PARTS):
        if name not in names:
            continue
        if name == "postgres":
            stop_postgres()
        else:
            stop_process(name, timeout=30 if name.startswith("kafka") else 15)


def up(demo: bool, restart_services: bool, infra_only: bool = False, postgres_only: bool = False) -> None:
    started = time.monotonic()
    again = "run './meer up' again"
    with step("starting PostgreSQL", f"see {pg_log_file(pg_home())} and {again}"):
        start_postgres()
    with step(f"creating the databases on port {PG_PORT}", f"is another program using that port? then {again}"):
        create_databases()
    if postgres_only:
        return
    with step("starting Kafka", f"see {LOG_DIR / 'kafka.log'} and {again}"):
        start_kafka()
    with step("starting the mail catcher", f"see {LOG_DIR / 'mailcatcher.log'} and {again}"):
        start_mailcatcher()
    if infra_only:
        log(f"infrastructure up in {time.monotonic() - started:.1f}s")
        return
    with step("starting the services", f"see the logs in {LOG_DIR} and {again}"):
        start_services(restart_services)
    log(f"stack up in {time.monotonic() - started:.1f}s")
    if demo:
        # A failed demo leaves the stack running; its one-line reason becomes ours.
        made = subprocess.run([sys.executable, "-m", "deploy.local.demo"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        if made.returncode != 0:
            reason = telling_line(made.stderr).removeprefix("[meer] error: ")
            raise StackError(f"the stack runs, but {reason}")
    print(
        "\nThe Meer contact platform runs on this machine:\n"
        f"  mail catcher (see the daily mail)  {Urls.mailcatcher}\n"
        f"  coach's dashboard                  {Urls.service('coaching')}/inloggen\n"
        f"  enrolment API                      {Urls.service('enrolment')}/docs\n"
        f"  mailer                             {Urls.service('mailer')}/docs\n"
        f"  tracking                           {Urls.service('tracking')}/docs\n"
        f"  coaching API                       {Urls.service('coaching')}/docs\n"
        f"  logs                               {LOG_DIR}\n"
        "Stop it with: ./meer down"
    )


def down(delete_data: bool = False) -> None:
    home = pg_home()
    # Kafka nodes and replicas started with other MEER_LOCAL_* settings than this call's: their pid files.
    others = sorted(
        (path.stem for path in RUN_DIR.glob("*.pid") if path.stem not in PARTS), key=lambda n: n.startswith("kafka")
    )
    for name in others:
        stop_process(name, timeout=30 if name.startswith("kafka") else 15)
    stop_parts(PARTS)
    if delete_data:
        for path in {home, PG_DIR, KAFKA_DIR, RUN_DIR, VAR / "mail", VAR / "demo.json"}:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        log(f"deleted the stack's data ({home}, {KAFKA_DIR}, the caught mail); the next './meer up' starts afresh")


def status() -> None:
    for name in [*PARTS[1 + len(KAFKA_NODES) + 1 :], "mailcatcher", *(node.name for node in KAFKA_NODES)]:
        pid = running_pid(name)
        print(f"{name:12} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    print(f"{'postgres':12} {'running' if port_open(PG_PORT) else 'stopped'} (data in {pg_home() / 'data'})")


def verify_stopped(keep: Sequence[str]) -> None:
    """Fail when a part of this stack still runs that is not in keep (it ran before a test run)."""
    left = [name for name in running_parts() if name not in keep]
    if left:
        ports = ", ".join(f"{name} (port {part_ports(name)[0]})" if part_ports(name) else name for name in left)
        raise StackError(f"still running after the tests: {ports}; stop it with './meer down'")
    log("nothing of the stack is left running" + (f" but what ran before ({', '.join(keep)})" if keep else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start everything that is not running yet")
    up_parser.add_argument("--no-demo", action="store_true", help="do not create the demo organisation")
    up_parser.add_argument("--restart-services", action="store_true", help="restart the four services")
    up_parser.add_argument("--infra-only", action="store_true", help="only PostgreSQL, Kafka and the mail catcher")
    up_parser.add_argument("--postgres-only", action="store_true", help="only PostgreSQL and the databases")
    down_parser = sub.add_parser("down", help="stop everything")
    down_parser.add_argument(
        "--delete-data", action="store_true", help="also delete the data (PostgreSQL, Kafka, the demo's ids)"
    )
    sub.add_parser("status", help="show what runs")
    sub.add_parser("running", help="print the parts that run now, comma-separated")
    verify_parser = sub.add_parser("verify-stopped", help="fail when a part runs that is not in --keep")
    verify_parser.add_argument("--keep", default="", help="comma-separated parts that may run (they ran before)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(
                demo=not args.no_demo,
                restart_services=args.restart_services,
                infra_only=args.infra_only,
                postgres_only=args.postgres_only,
            )
        elif args.command == "down":
            down(delete_data=args.delete_data)
        elif args.command == "running":
            print(",".join(running_parts()))
        elif args.command == "verify-stopped":
            verify_stopped([name for name in args.keep.split(",") if name])
        else:
            status()
    except StackError as error:
        print(f"[meer] error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[meer] interrupted; './meer status' shows what runs, './meer down' stops it", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - never a traceback for a newcomer: one line and where to look
        print(
            f"[meer] error: {args.command} failed ({type(error).__name__}: {telling_line(str(error))}); "
            f"see the logs in {LOG_DIR}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
