"""The rebuild writes a long history in bounded statements: a year's millions of opens in one
COPY outlasted the pool's 30 s command timeout (found on a stack with 7.5 million opens)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from services.coaching import rebuild
from services.coaching.rebuild import chunked, copy_in_chunks


class RecordingConnection:
    """Stands in for asyncpg's connection: keeps what each COPY statement would have sent."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, list[str], list[Any]]] = []

    async def copy_records_to_table(self, table_name: str, *, records: Iterable[Any], columns: list[str]) -> str:
        self.statements.append((table_name, columns, list(records)))
        return "COPY"


def test_chunked_keeps_order_and_bounds_every_chunk() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked(iter([]), 3)) == []
    assert list(chunked({"a"}, 3)) == [["a"]]


async def test_a_table_longer_than_one_statement_is_written_whole_in_bounded_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rebuild, "ROWS_PER_STATEMENT", 4)
    connection = RecordingConnection()
    rows = ((number, f"row {number}") for number in range(10))  # a generator: the history is not listed twice

    written = await copy_in_chunks(connection, "open_seen", ["id", "note"], rows)

    assert written == 10
    assert [len(records) for _, _, records in connection.statements] == [4, 4, 2]
    assert {(table, tuple(columns)) for table, columns, _ in connection.statements} == {("open_seen", ("id", "note"))}
    assert [row for _, _, records in connection.statements for row in records] == [
        (number, f"row {number}") for number in range(10)
    ]


async def test_an_empty_table_sends_no_statement() -> None:
    connection = RecordingConnection()
    assert await copy_in_chunks(connection, "open_seen", ["id"], []) == 0
    assert connection.statements == []
