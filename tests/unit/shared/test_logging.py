"""Logged exceptions keep their type and frames but never their message (it may quote personal data)."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logging import configure_logging, describe_exception, get_logger


def failing_query() -> None:
    try:
        raise ValueError("invalid input for query argument $2: 'ans@example.org'")
    except ValueError as error:
        raise RuntimeError("while saving Ans van Dijk") from error


def test_an_exception_is_described_by_types_and_frames_only() -> None:
    with pytest.raises(RuntimeError) as raised:
        failing_query()
    text = describe_exception(raised.value)
    assert "builtins.ValueError" in text and "builtins.RuntimeError" in text and "failing_query" in text
    assert "ans@example.org" not in text and "Ans van Dijk" not in text


def test_log_lines_from_structlog_and_stdlib_carry_no_exception_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test")
    try:
        try:
            failing_query()
        except RuntimeError:
            get_logger("test").exception("saving failed")
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert [line["event"] for line in lines] == ["saving failed", "Exception in ASGI application"]
    for line in lines:
        assert "builtins.RuntimeError" in line["exception"]
        assert "ans@example.org" not in json.dumps(line) and "Ans van Dijk" not in json.dumps(line)


def test_sql_parameters_never_appear_in_database_errors() -> None:
    from shared.db import Database

    database = Database("postgresql+asyncpg://meer@127.0.0.1:1/none")
    assert database.engine.sync_engine.hide_parameters
