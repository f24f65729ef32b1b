"""Test tiers: tests/unit (no I/O, fast) and tests/e2e (the real local stack: Kafka,
PostgreSQL, the SMTP catcher and the four services, started here when not running).

What a test run starts of the stack it stops again at the end; what ran before stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local import stack as local_stack

ROOT = Path(__file__).resolve().parents[1]
_RAN_BEFORE = pytest.StashKey[list[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_RAN_BEFORE] = local_stack.running_parts()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the parts of the stack this run started (by a fixture, a test or a benchmark)."""
    before = session.config.stash.get(_RAN_BEFORE, None)
    if before is None or os.environ.get("MEER_TEST_LEAVE_STACK") == "1":
        return
    started = [name for name in local_stack.running_parts() if name not in before]
    if started:
        local_stack.stop_parts(started)


def _stack_up(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", "up", "--no-demo", *args], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"the local stack did not come up:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def infrastructure() -> None:
    """PostgreSQL, Kafka and the mail catcher, for tests that run a service's parts in-process."""
    _stack_up("--infra-only")


@pytest.fixture(scope="session")
def stack() -> None:
    """Bring the local stack up, restarting the services so they run this code
    (MEER_TEST_KEEP_SERVICES=1 keeps services that already run, e.g. while debugging one)."""
    _stack_up(*([] if os.environ.get("MEER_TEST_KEEP_SERVICES") == "1" else ["--restart-services"]))
