"""Structured logging: one JSON object per line on stdout, ids only, never personal data."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import structlog
from structlog.types import EventDict, WrappedLogger


def describe_exception(error: BaseException) -> str:
    """A traceback with every exception's type and frames but not its message: messages quote
    values (SQL parameters, pydantic's input_value, a refused address), which may be personal data."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    lines: list[str] = []
    for link in reversed(chain):
        if lines:
            lines.append("\nwhich led to:\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(
            f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
            for frame in traceback.extract_tb(link.__traceback__)
        )
        lines.append(f"{type(link).__module__}.{type(link).__qualname__} (message not logged)\n")
    return "".join(lines)


def _exception_without_values(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Instead of structlog's format_exc_info: the exception as describe_exception renders it."""
    exc_info: Any = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info if isinstance(exc_info, BaseException) else (exc_info[1] if exc_info else None)
    if error is not None:
        event_dict["exception"] = describe_exception(error)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route stdlib and structlog logs through one JSON renderer tagged with the service."""
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _exception_without_values,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Kafka client logs every reconnect attempt at INFO/ERROR; readiness already reports it.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
