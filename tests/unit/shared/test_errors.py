"""A refusal raised anywhere under a route becomes the one error shape with its kind's status."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.errors import HTTP_STATUS, Refusal, RefusalKind
from shared.runtime import Runtime, create_service_app
from shared.settings import ServiceSettings


def test_each_kind_has_its_own_status() -> None:
    assert len(set(HTTP_STATUS.values())) == len(HTTP_STATUS)
    assert Refusal("conflict", "taken").http_status == 409
    assert Refusal("invalid", "bad", dutch="Klopt niet").dutch == "Klopt niet"
    assert Refusal("invalid", "bad").dutch == "bad"


@pytest.mark.parametrize(("kind", "status"), sorted(HTTP_STATUS.items()))
async def test_a_route_that_refuses_answers_the_error_shape(kind: RefusalKind, status: int) -> None:
    app = create_service_app(Runtime.create("test", ServiceSettings()), title="t", description="d")

    @app.get("/refuse")
    async def refuse() -> None:
        raise Refusal(kind, "Not like this.", field="email")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://meer.test") as client:
        answer = await client.get("/refuse")
    assert answer.status_code == status
    assert answer.json() == {
        "error": {
            "status": status,
            "message": "Not like this.",
            "fields": [{"field": "email", "reason": "Not like this."}],
        }
    }


class _RecoveryMode(Exception):
    sqlstate = "57P03"  # what PostgreSQL answers while it recovers after a crash


class _UniqueViolation(Exception):
    sqlstate = "23505"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (OperationalError("SELECT 1", {}, ConnectionRefusedError("refused")), 503),
        (DBAPIError("SELECT 1", {}, _RecoveryMode("in recovery mode")), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), 503),
        (ConnectionRefusedError("refused"), 503),  # what SQLAlchemy's asyncpg dialect lets through on connect
        (DBAPIError("INSERT", {}, _UniqueViolation("duplicate key")), 500),
    ],
)
async def test_a_database_that_is_away_answers_503_and_other_database_errors_stay_server_errors(
    error: Exception, status: int
) -> None:
    app = create_service_app(Runtime.create("test", ServiceSettings()), title="t", description="d")

    @app.get("/query")
    async def query() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://meer.test") as client:
        answer = await client.get("/query")
    assert answer.status_code == status
    if status == 503:
        assert answer.headers["Retry-After"] == "5"
        assert "database" in answer.json()["error"]["message"]
