"""A wrong setting stops a process with a line that names the variable: no traceback, and
never the value (it may be a password)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.tracking.settings import TrackingSettings
from shared.settings import read_settings

ROOT = Path(__file__).resolve().parents[3]


def test_each_wrong_value_is_named_by_its_variable_and_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEER_HTTP_PORT", "achtduizend-en-drie")
    monkeypatch.setenv("MEER_KAFKA_PARTITIONS", "0")
    monkeypatch.setenv("MEER_DATABASE_POOL_SIZE", "hunter2-secret")  # a password pasted in the wrong variable
    with pytest.raises(SystemExit) as stopped:
        read_settings(TrackingSettings)
    message = str(stopped.value.code)
    assert "MEER_HTTP_PORT: Input should be a valid integer" in message
    assert "MEER_KAFKA_PARTITIONS: Input should be greater than or equal to 1" in message
    assert "MEER_DATABASE_POOL_SIZE: Input should be a valid integer" in message
    assert "achtduizend" not in message and "hunter2" not in message


def test_a_model_check_that_fails_is_reported_as_a_settings_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SystemExit) as stopped:
        read_settings(TrackingSettings)
    assert "MEER_KAFKA_SASL_USERNAME and MEER_KAFKA_SASL_PASSWORD are needed with SASL" in str(stopped.value.code)


def test_a_service_started_with_a_wrong_value_says_so_without_a_traceback() -> None:
    env = {**os.environ, "MEER_HTTP_PORT": "not-a-port"}
    started = subprocess.run(
        [sys.executable, "-m", "services.mailer"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert started.returncode == 1
    assert "MEER_HTTP_PORT: Input should be a valid integer" in started.stderr
    assert "Traceback" not in started.stderr and "not-a-port" not in started.stderr
