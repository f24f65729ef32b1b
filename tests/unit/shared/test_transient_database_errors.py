"""A database error that is the server's (down, crashed, still starting after a crash) makes an
event wait for redelivery; an error that is the event's own may dead-letter it."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from shared.kafka import _is_transient


class ServerSaid(Exception):
    """What the asyncpg adapter raises: the server's SQLSTATE on the exception."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("message not looked at")
        self.sqlstate = sqlstate


def wrapped(sqlstate: str | None) -> DBAPIError:
    return DBAPIError("INSERT ...", {}, ServerSaid(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "57P03",  # cannot_connect_now: starting up, or in recovery after a crash
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown: another backend crashed
        "08006",  # connection_failure
        "08003",  # connection_does_not_exist
        "53300",  # too_many_connections
    ],
)
def test_the_servers_own_failures_are_transient(sqlstate: str) -> None:
    assert _is_transient(wrapped(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "22P02", "42703", None])
def test_an_error_about_the_statement_or_data_is_not(sqlstate: str | None) -> None:
    assert not _is_transient(wrapped(sqlstate))
