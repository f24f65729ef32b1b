"""Every operation of the enrolment API is reached at its own path: the routers are included in
the order of how often they are used (enrolment first), and no earlier route may take over a
later one's requests. In process, without credentials (each request is refused before any I/O)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from services.enrolment.app import create_app

SAMPLE_ID = "3f2b7c1e-8a4d-4e6f-9b0a-1c2d3e4f5a6b"


async def test_each_operation_is_routed_to_itself() -> None:
    app = create_app()
    reached: list[str | None] = []

    async def recording_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        route = scope.get("route")
        reached.append(getattr(route, "path_format", None))

    operations = [
        (template, method.upper())
        for template, methods in app.openapi()["paths"].items()
        for method in methods
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) > 40
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=recording_app), base_url="http://meer.test"
    ) as client:
        for template, method in operations:
            path = re.sub(r"\{[^}]+\}", SAMPLE_ID, template)
            reached.clear()
            await client.request(method, path)
            assert reached == [template], f"{method} {path} reached {reached}, not {template}"
