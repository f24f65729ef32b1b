"""A refusal raised anywhere under a route becomes the one error shape with its kind's status."""

from __future__ import annotations

import httpx
import pytest

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
