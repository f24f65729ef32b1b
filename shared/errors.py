"""Refusals: what a use case answers when its rules do not allow a request (no HTTP here).

Domain and use-case code raises a `Refusal` of a kind; each service app maps kinds to HTTP
statuses once (`shared.runtime.create_service_app` installs the handler), so no route needs
a try/except to turn a rule into an answer. Pages that show the refusal in Dutch read
`dutch`; the API answers `message` (English, for developers) and names the `field` at fault.
"""

from __future__ import annotations

from typing import Literal

RefusalKind = Literal["invalid", "not_found", "conflict", "forbidden", "gone", "too_large", "unsupported"]

HTTP_STATUS: dict[RefusalKind, int] = {
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "gone": 410,
    "too_large": 413,
    "unsupported": 415,
}


class Refusal(Exception):
    """A request the rules refuse: its kind, why (English), optionally why in Dutch and the field."""

    def __init__(self, kind: RefusalKind, message: str, *, field: str | None = None, dutch: str | None = None) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.message = message
        self.field = field
        self.dutch = dutch or message

    @property
    def http_status(self) -> int:
        """The HTTP status the API answers this refusal with."""
        return HTTP_STATUS[self.kind]

    def __repr__(self) -> str:
        return f"Refusal({self.kind!r}, {self.message!r}, field={self.field!r})"
