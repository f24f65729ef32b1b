"""Test tiers: tests/unit (no I/O, fast) and tests/e2e (the real local stack: Kafka,
PostgreSQL, the SMTP catcher and the four services, started here when not running)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stack() -> None:
    """Bring the local stack up (restarting the services, so they run this code)."""
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", "up", "--no-demo", "--restart-services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"the local stack did not come up:\n{result.stdout}\n{result.stderr}")
