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


def content_security_policy(nonce: str | None) -> str:
    """Scripts only from our own files, no inline script at all; inline <style> blocks only
    with this answer's nonce (none at all when the answer has no nonce); no framing, no plugins,
    forms post only to ourselves. Images may come from elsewhere: organisation logos live on
    enrolment's address."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'" if nonce else "style-src 'self'",
            "img-src * data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


_nonce: ContextVar[list[str] | None] = ContextVar("csp_nonce", default=None)
"""The answer's nonce once a template asked for one: a list shared by reference, so that a nonce
made where the context was copied (a template rendered in a worker thread) reaches the header."""


def csp_nonce() -> str:
    """The CSP nonce of the answer being made (a Jinja global: `<style nonce="{{ csp_nonce() }}">`),
    made on the first call: most answers (JSON, the pixel) never need one, and each costs a read of
    the kernel's random source."""
    made = _nonce.get()
    if made is None:
        return ""
    if not made:
        made.append(secrets.token_urlsafe(16))
    return made[0]


STATIC_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP answer that does not set them itself.

    Each answer whose template carries an inline <style> block with an organisation's colours
    gets a fresh CSP nonce (csp_nonce()); other answers allow no inline style at all. Pure ASGI:
    no body buffering, so streamed answers (the live dashboard) pass through unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce: list[str] = []
        answer = _nonce.set(nonce)
        docs = str(scope.get("path", "")).startswith(DOCS_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in STATIC_HEADERS:
                    headers.setdefault(name, value)
                if not docs:
                    policy = content_security_policy(nonce[0] if nonce else None)
                    headers.setdefault("Content-Security-Policy", policy)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _nonce.reset(answer)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries exactly this bearer token (constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
