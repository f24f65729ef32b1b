"""Structured logging: one JSON object per line on stdout, ids only, never personal data."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
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
    # While Kafka is away its client logs every reconnect attempt (~100 lines/s per service).
    handler.addFilter(DependencyOutageFilter(KAFKA_OUTAGE, "aiokafka", time.monotonic))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Kafka client logs every reconnect attempt at INFO; its warnings go through the outage filter.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


class DependencyOutageLog:
    """Turns a client library's flood of error lines during a dependency outage into three
    kinds of line: one when the outage starts (with the first error), a summary at most
    every `summary_interval_s` while it lasts (how many lines were held back), and one when
    it ends. For `settle_s` after the end, the client's lines about settling down again
    (a consumer group rejoining) are dropped instead of announcing a new outage. The clock
    is passed in, so the rules are plain and testable."""

    # settle_s: coaching's consumer (the most topics) was seen logging heartbeat failures more than
    # 15 s after the broker answered again; a minute covers a rejoin on a loaded machine.
    def __init__(self, dependency: str, *, summary_interval_s: float = 60.0, settle_s: float = 60.0) -> None:
        self.dependency = dependency
        self.summary_interval_s = summary_interval_s
        self.settle_s = settle_s
        self.started_at: float | None = None
        self._ended_at: float | None = None
        self._summary_at = 0.0
        self._held_back = 0
        self._held_back_total = 0
        self._last_error = ""

    @property
    def in_outage(self) -> bool:
        return self.started_at is not None

    def failed(self, error: str, now: float) -> tuple[str, dict[str, Any]] | None:
        """One error line from the client: the line to log instead of it, or None to drop it."""
        self._last_error = error[:300]
        if self.started_at is None and self._ended_at is not None and now - self._ended_at < self.settle_s:
            return None
        if self.started_at is None:
            self.started_at = self._summary_at = now
            self._held_back = self._held_back_total = 0
            return "dependency outage started", {"dependency": self.dependency, "first_error": self._last_error}
        self._held_back += 1
        self._held_back_total += 1
        if now - self._summary_at < self.summary_interval_s:
            return None
        line = (
            "dependency outage continues",
            {
                "dependency": self.dependency,
                "outage_s": round(now - self.started_at, 1),
                "lines_held_back": self._held_back,
                "last_error": self._last_error,
            },
        )
        self._summary_at, self._held_back = now, 0
        return line

    def recovered(self, now: float) -> tuple[str, dict[str, Any]] | None:
        """The dependency answers again: the line that ends the outage, or None if there was none."""
        if self.started_at is None:
            return None
        line = (
            "dependency outage ended",
            {
                "dependency": self.dependency,
                "outage_s": round(now - self.started_at, 1),
                "lines_held_back": self._held_back_total,
            },
        )
        self.started_at, self._ended_at = None, now
        return line


class DependencyOutageFilter(logging.Filter):
    """A handler filter: WARNING and ERROR lines of the dependency's client loggers (for Kafka:
    `aiokafka.*`) go through `outage`, which keeps one line at the start, a summary at most
    once a minute (logged by `shared.outage`), and the runtime logs the end; lines of every
    other logger pass unchanged."""

    def __init__(
        self,
        outage: DependencyOutageLog,
        logger_prefix: str,
        clock: Callable[[], float],
        emit: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.outage = outage
        self.logger_prefix = logger_prefix
        self.clock = clock
        self.emit = emit or _log_outage_line

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not (
            record.name == self.logger_prefix or record.name.startswith(self.logger_prefix + ".")
        ):
            return True
        line = self.outage.failed(record.getMessage(), self.clock())
        if line is not None:
            self.emit(*line)
        return False


def _log_outage_line(message: str, fields: dict[str, Any]) -> None:
    get_logger("shared.outage").warning(message, **fields)


KAFKA_OUTAGE = DependencyOutageLog("kafka")
"""This process's Kafka outage log: fed by the aiokafka loggers, ended by the runtime's Kafka check."""


def log_recovery(outage: DependencyOutageLog, now: float) -> None:
    """Log the end of an outage, if one was going on."""
    line = outage.recovered(now)
    if line is not None:
        message, fields = line
        get_logger("shared.outage").info(message, **fields)
