"""Production defaults of every service app, in process (no broker or database is started):
security headers on every answer, /metrics behind a bearer token, API docs only when enabled,
and the coaching login cookie Secure behind a TLS proxy."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from services.coaching.app import create_app as create_coaching_app
from services.coaching.settings import CoachingSettings
from shared.http_security import bearer_matches, content_security_policy, csp_nonce
from shared.runtime import Runtime, create_service_app
from shared.settings import ServiceSettings

TOKEN = "metrics-token-for-the-test"


def app_for(**settings: object) -> FastAPI:
    return create_service_app(Runtime.create("test", ServiceSettings(**settings)), title="t", description="d")  # type: ignore[arg-type]


async def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://meer.test") as client:
        return await client.get(path, headers=headers)


async def test_every_answer_carries_the_security_headers() -> None:
    app = app_for()
    for path in ("/healthz", "/bestaat-niet"):
        response = await get(app, path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert "'nonce-" not in csp and "style-src 'self';" in csp, "no inline style where no template asked for it"


async def test_a_page_with_an_inline_style_gets_a_fresh_nonce_in_its_header_and_its_body() -> None:
    app = app_for()

    @app.get("/pagina")
    def page() -> HTMLResponse:  # a sync route: rendered in a worker thread, as templates are
        return HTMLResponse(f'<style nonce="{csp_nonce()}">p {{ color: red }}</style><p>Hallo</p>')

    answers = [await get(app, "/pagina") for _ in range(2)]
    nonces = []
    for answer in answers:
        nonce = re.search(r'nonce="([^"]+)"', answer.text)
        assert nonce and len(nonce.group(1)) >= 16
        assert f"style-src 'self' 'nonce-{nonce.group(1)}'" in answer.headers["content-security-policy"]
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1], "a nonce per answer"
    assert csp_nonce() == "", "outside an answer there is no nonce"


async def test_production_serves_metrics_only_with_the_token_and_no_api_docs() -> None:
    app = app_for(env="production", metrics_token=TOKEN)
    refused = await get(app, "/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert (await get(app, "/metrics", {"Authorization": "Bearer wrong"})).status_code == 401
    allowed = await get(app, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and "meer_" in allowed.text
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await get(app, path)).status_code == 404, path


async def test_development_keeps_docs_and_open_metrics_unless_told_otherwise() -> None:
    app = app_for()
    assert (await get(app, "/metrics")).status_code == 200
    assert (await get(app, "/openapi.json")).status_code == 200
    docs = await get(app, "/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers  # Swagger UI's inline script
    assert (await get(app_for(api_docs=False), "/openapi.json")).status_code == 404
    assert (
        await get(app_for(env="production", metrics_token=TOKEN, api_docs=True), "/openapi.json")
    ).status_code == 200


def test_production_refuses_to_start_without_a_metrics_token() -> None:
    with pytest.raises(ValidationError, match="MEER_METRICS_TOKEN"):
        ServiceSettings(env="production")


def test_bearer_check() -> None:
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN) and bearer_matches(f"bearer {TOKEN}", TOKEN)
    assert not bearer_matches(None, TOKEN) and not bearer_matches(TOKEN, TOKEN)
    assert not bearer_matches(f"Basic {TOKEN}", TOKEN) and not bearer_matches("Bearer ", TOKEN)
    assert "'nonce-abc'" in content_security_policy("abc")
    assert "nonce" not in content_security_policy(None)


async def test_in_production_the_coaching_login_cookies_are_secure_behind_a_plain_http_proxy_hop() -> None:
    production = create_coaching_app(
        CoachingSettings(env="production", metrics_token=TOKEN, licensor_secret="l" * 32, research_export_key="r" * 32)
    )
    page = await get(production, "/inloggen")
    assert page.status_code == 200 and "secure" in page.headers["set-cookie"].lower()
    development = await get(create_coaching_app(CoachingSettings()), "/inloggen")
    assert "secure" not in development.headers["set-cookie"].lower()
