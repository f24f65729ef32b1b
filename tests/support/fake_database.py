"""An in-memory stand-in for a service's Database in the consumer unit of work: it answers the
claim statement (shared.db.claim_events) and keeps what changes add, get and execute, so
the services' changes can be tested without PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from uuid import UUID

from shared.db import _CLAIM_EVENTS


@dataclass
class FakeSession:
    """What changes use of a session: get, add, execute (recorded), flush (nothing to send), info and commit."""

    database: FakeDatabase
    info: dict[str, Any] = field(default_factory=dict)
    claimed: set[UUID] = field(default_factory=set)
    added: list[Any] = field(default_factory=list)
    executed: list[Any] = field(default_factory=list)
    parameters: list[dict[str, Any] | None] = field(default_factory=list)

    async def execute(self, statement: Any, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if statement is _CLAIM_EVENTS:
            assert parameters is not None
            self.database.claim_statements += 1
            fresh = [i for i in parameters["ids"] if i not in self.database.handled and i not in self.claimed]
            self.claimed.update(fresh)
            return [(i,) for i in fresh]
        self.executed.append(statement)
        self.parameters.append(parameters)
        return []

    async def get(self, table: type[Any], key: Any, **_: Any) -> Any:
        if table in self.database.refused:
            raise RuntimeError(f"reading {table.__name__} refused")
        return self.database.rows.get((table, key))

    def add(self, row: Any) -> None:
        self.added.append(row)

    async def flush(self) -> None:
        return None

    async def commit(self) -> None:
        self.database.handled |= self.claimed
        self.database.commits += 1
        self.database.added += self.added
        self.database.executed += self.executed
        self.database.parameters += self.parameters

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None


@dataclass
class FakeDatabase:
    """Rows by (table, key) for session.get; what committed sessions added and executed."""

    rows: dict[tuple[type[Any], Any], Any] = field(default_factory=dict)
    handled: set[UUID] = field(default_factory=set)
    refused: set[type[Any]] = field(default_factory=set)
    """Tables whose reads fail (a change that fails in the middle of a batch)."""
    claim_statements: int = 0
    commits: int = 0
    added: list[Any] = field(default_factory=list)
    executed: list[Any] = field(default_factory=list)
    parameters: list[dict[str, Any] | None] = field(default_factory=list)

    def session(self) -> FakeSession:
        return FakeSession(self)
