"""The local stack from a checkout in a private folder (a clone in root's home is 0700):
its PostgreSQL starts there, and a start step that fails says so in one line, never a traceback."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
PG_BASE_PORT = 55432


@pytest.fixture(scope="module")
def private_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository, with this working tree's files, inside a folder only its owner may enter."""
    private = tmp_path_factory.mktemp("home") / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    clone = private / "meer"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def free_pg_port() -> int:
    """A free port for the clone's PostgreSQL, with an offset that keeps every port of its stack valid."""
    while True:
        port = PG_BASE_PORT + random.randint(6000, 9500)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port


def stack_env(pg_port: int, var: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MEER_VAR_DIR", "DATABASE_URL"}}
    env["MEER_LOCAL_PORT_OFFSET"] = str(pg_port - PG_BASE_PORT)
    if var is not None:
        env["MEER_VAR_DIR"] = str(var)
    return env


def run_stack(clone: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", *args], cwd=clone, env=env, capture_output=True, text=True
    )


@pytest.fixture
def pg_port() -> int:
    return free_pg_port()


@pytest.fixture
def clone_stack(private_clone: Path, pg_port: int) -> Iterator[dict[str, str]]:
    """The clone's own stack (its var folder inside the private folder); stopped and deleted afterwards."""
    env = stack_env(pg_port)
    yield env
    result = run_stack(private_clone, env, "down", "--delete-data")
    assert result.returncode == 0, result.stderr


async def test_postgres_starts_from_a_checkout_in_a_private_folder(
    private_clone: Path, clone_stack: dict[str, str], pg_port: int
) -> None:
    assert (private_clone.parent.stat().st_mode & 0o777) == 0o700

    result = run_stack(private_clone, clone_stack, "up", "--postgres-only")

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    conn = await asyncpg.connect(f"postgresql://meer@127.0.0.1:{pg_port}/meer_enrolment")
    try:
        assert await conn.fetchval("SELECT current_database()") == "meer_enrolment"
    finally:
        await conn.close()
    # A second start finds it running; down stops it.
    assert run_stack(private_clone, clone_stack, "up", "--postgres-only").returncode == 0
    assert run_stack(private_clone, clone_stack, "down").returncode == 0
    assert run_stack(private_clone, clone_stack, "running").stdout.strip() == ""


def test_a_failed_start_step_is_one_line_saying_what_to_do(private_clone: Path, pg_port: int) -> None:
    var = private_clone / "var-broken"
    # A data folder that is not one: PostgreSQL cannot start from it.
    (var / "pg" / "data").mkdir(parents=True)
    (var / "pg" / "data" / "PG_VERSION").write_text("not a version\n")
    env = stack_env(pg_port, var)

    result = run_stack(private_clone, env, "up", "--postgres-only")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("[meer] error: ") and "PostgreSQL" in lines[0] and "again" in lines[0], lines[0]


STARTS_POSTGRES = """
from deploy.local import stack


def test_needs_postgres():
    stack.start_postgres()
    assert stack.running_parts() == ["postgres"]
"""


def test_a_test_run_stops_what_it_started_and_keeps_what_ran_before(
    private_clone: Path, clone_stack: dict[str, str]
) -> None:
    (private_clone / "tests" / "e2e" / "test_starts_postgres.py").write_text(STARTS_POSTGRES)
    pytest_argv = [sys.executable, "-m", "pytest", "-q", "tests/e2e/test_starts_postgres.py"]

    run = subprocess.run(pytest_argv, cwd=private_clone, env=clone_stack, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run_stack(private_clone, clone_stack, "running").stdout.strip() == "", "the run stopped its PostgreSQL"
    assert run_stack(private_clone, clone_stack, "verify-stopped").returncode == 0

    assert run_stack(private_clone, clone_stack, "up", "--postgres-only").returncode == 0
    run = subprocess.run(pytest_argv, cwd=private_clone, env=clone_stack, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run_stack(private_clone, clone_stack, "running").stdout.strip() == "postgres", "what ran before stays"
    left = run_stack(private_clone, clone_stack, "verify-stopped")
    assert left.returncode == 1 and "postgres" in left.stderr
    assert run_stack(private_clone, clone_stack, "verify-stopped", "--keep", "postgres").returncode == 0
