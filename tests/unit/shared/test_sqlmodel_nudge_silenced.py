"""SQLModel's session warns on every session.execute() (use exec() instead). Python shows such
DeprecationWarnings for code run as __main__, so the hit processor (`python -m
services.tracking.hit_processor`) printed one into its log for each of its statements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_CALL_EXECUTE = """
import shared.db  # the service code's database module: it silences the nudge
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

pending = AsyncSession().execute(text("SELECT 1"))  # the warning comes with the call
pending.close()
print("no warning")
"""


def call_execute(code: str) -> subprocess.CompletedProcess[str]:
    """Run the code in a fresh interpreter where any DeprecationWarning is an error (-W error),
    as __main__ code would show it."""
    return subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_session_execute_gives_no_deprecation_warning_even_as_main() -> None:
    run = call_execute(_CALL_EXECUTE)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "no warning"


def test_without_the_filter_the_nudge_is_there() -> None:
    # The check above can fail: the same call without shared.db's filter raises the warning.
    run = call_execute(_CALL_EXECUTE.replace("import shared.db", "pass"))
    assert run.returncode != 0 and "You probably want to use" in run.stderr
