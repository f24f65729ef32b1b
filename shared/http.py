"""HTTP input bounds every service applies: the size of a request body (before anything parses
it) and the paging parameters of list endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated

from fastapi import Query
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Every JSON body and form of the platform fits easily; uploads name their own limit."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""What a multipart upload adds around its file (boundaries, part headers, other fields)."""

MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000
"""Far beyond any organisation's list, far below what PostgreSQL's OFFSET accepts (2^63 - 1)."""

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class BodySizeLimit:
    """Refuses request bodies over a limit with 413, before the application reads them.

    A Content-Length over the limit is answered at once; a chunked (or understated) body is
    counted as it arrives and the read that crosses the limit fails with 413. `limits` maps a
    path pattern (re.fullmatch) to a larger limit, e.g. for an upload route.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES, limits: Mapping[str, int] = {}):
        self.app = app
        self.max_bytes = max_bytes
        self.limits = [(re.compile(pattern), limit) for pattern, limit in limits.items()]

    def limit_for(self, path: str) -> int:
        return next((limit for pattern, limit in self.limits if pattern.fullmatch(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into whatever reads the body; the app's error handler answers 413.
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted_receive, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        # The platform's one error shape (shared.runtime.error_body), without importing the runtime.
        body = json.dumps({"error": {"status": 413, "message": _too_large(limit), "fields": []}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
