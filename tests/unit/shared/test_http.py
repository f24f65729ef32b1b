"""Request body caps (shared.http.BodySizeLimit) on an in-process app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.http import BodySizeLimit

LIMIT = 1000


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=LIMIT, limits={r"/upload/[^/]+": 5 * LIMIT})

    @app.post("/echo")
    @app.post("/upload/{name}")
    async def echo(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    return app


async def post(app: FastAPI, path: str, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.post(path, content=content)


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


async def test_a_body_within_the_limit_is_read(app: FastAPI) -> None:
    response = await post(app, "/echo", b"x" * LIMIT)
    assert response.status_code == 200 and response.json() == {"read": LIMIT}


async def test_a_declared_length_over_the_limit_is_refused_before_reading(app: FastAPI) -> None:
    response = await post(app, "/echo", b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"]["message"] == f"The request body is larger than {LIMIT} bytes."


async def test_a_chunked_body_is_counted_and_refused_once_over_the_limit(app: FastAPI) -> None:
    response = await post(app, "/echo", chunks(LIMIT * 3))
    assert response.status_code == 413
    assert str(LIMIT) in response.text
    assert (await post(app, "/echo", chunks(LIMIT))).status_code == 200


async def test_an_upload_route_has_its_own_larger_limit(app: FastAPI) -> None:
    assert (await post(app, "/upload/logo", b"x" * (3 * LIMIT))).status_code == 200
    assert (await post(app, "/upload/logo", chunks(3 * LIMIT))).status_code == 200
    assert (await post(app, "/upload/logo", b"x" * (5 * LIMIT + 1))).status_code == 413
    assert (await post(app, "/upload/logo/more", b"x" * (3 * LIMIT))).status_code == 413
