"""HTTP hardening every service shares: security headers on every answer, and the
bearer check of `/metrics` (plain ASGI and plain functions, no business rules)."""

from __future__ import annotations

import hmac
import secrets
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The interactive API docs load Swagger UI with an inline script; they are off in production.
DOCS_PATHS = ("/docs", "/redoc")


def content_security_policy(nonce: str) -> str:
    """Scripts only from our own files, no inline script at all; inline <style> blocks only
    with this answer's nonce; no framing, no plugins, forms post only to ourselves.
    Images may come from elsewhere: organisation logos live on enrolment's address."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src * data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


_nonce: ContextVar[str] = ContextVar("csp_nonce", default="")


def csp_nonce() -> str:
    """The CSP nonce of the answer being made (a Jinja global: `<style nonce="{{ csp_nonce() }}">`)."""
    return _nonce.get()


STATIC_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP answer that does not set them itself.

    Each request gets a fresh CSP nonce (csp_nonce()), for templates that carry an inline
    <style> block with an organisation's colours. Pure ASGI: no body buffering, so streamed
    answers (the live dashboard) pass through unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        _nonce.set(nonce)
        docs = str(scope.get("path", "")).startswith(DOCS_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in STATIC_HEADERS:
                    headers.setdefault(name, value)
                if not docs:
                    headers.setdefault("Content-Security-Policy", content_security_policy(nonce))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries exactly this bearer token (constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
