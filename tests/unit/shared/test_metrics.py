"""HTTP metrics are labelled by route template, and a crash counts as a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from shared.metrics import HTTP_REQUESTS, HttpMetricsMiddleware


def count(route: str, status: str) -> float:
    return HTTP_REQUESTS.labels("unit", route, "GET", status)._value.get()


async def test_route_template_not_path_and_crash_counts_as_500() -> None:
    app = FastAPI()
    app.add_middleware(HttpMetricsMiddleware, service="unit")

    @app.get("/o/{token}.gif")
    async def pixel(token: str) -> dict[str, str]:
        return {"ok": token}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("crash")

    before_ok, before_crash = count("/o/{token}.gif", "200"), count("/boom", "500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/o/secret-token.gif")).status_code == 200
        assert (await client.get("/boom")).status_code == 500
    assert count("/o/{token}.gif", "200") == before_ok + 1
    assert count("/boom", "500") == before_crash + 1
    labels = {sample.labels.get("route") for metric in HTTP_REQUESTS.collect() for sample in metric.samples}
    assert not any("secret-token" in (label or "") for label in labels)


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
async def test_non_http_scopes_pass_through(scope_type: str) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    await HttpMetricsMiddleware(app, service="unit")({"type": scope_type}, None, None)  # type: ignore[arg-type]
    assert seen == [scope_type]
