"""Tracking tokens: the contract between the mailer, which signs them into every mail,
and tracking, which verifies them when a pixel or link is fetched.

A token carries ids only (never an address or a name), is bound to one delivery, and is
signed with HMAC (itsdangerous). Keys rotate: the newest key signs, every key that is
still configured verifies, so an old key keeps working for its grace period and stops
the moment it is removed from MEER_TRACKING_KEYS.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TokenKind = Literal["open", "click", "report", "unsubscribe"]


class TrackingToken(BaseModel):
    """What a token says: which delivery, of whom, and for clicks where to go."""

    model_config = ConfigDict(frozen=True)

    kind: TokenKind = Field(alias="k")
    delivery_id: UUID = Field(alias="d")
    participant_id: UUID = Field(alias="p")
    org_id: UUID = Field(alias="o")
    day: int = Field(alias="n", ge=1)
    sent_at: int = Field(alias="t", description="Unix time the mail was rendered for sending.")
    url: str | None = Field(default=None, alias="u", description="Redirect target, click tokens only.")


class InvalidTokenError(ValueError):
    """The token was forged, tampered with, signed with a retired key, or malformed."""


def parse_keys(spec: str) -> list[str]:
    """Keys from 'newest,older,...' (comma separated); the first one signs."""
    keys = [key.strip() for key in spec.split(",") if key.strip()]
    if not keys:
        raise ValueError("at least one tracking key is needed")
    return keys


class TokenSigner:
    """Signs and verifies tracking tokens with a rotating set of keys."""

    _SALT = "meer.tracking.v1"

    def __init__(self, keys: list[str]) -> None:
        # itsdangerous signs with the last key in the list and verifies with all of them.
        self._serializer = URLSafeSerializer(list(reversed(keys)), salt=self._SALT)

    def sign(self, token: TrackingToken) -> str:
        return str(self._serializer.dumps(token.model_dump(mode="json", by_alias=True, exclude_none=True)))

    def verify(self, signed: str) -> TrackingToken:
        try:
            data = self._serializer.loads(signed)
            return TrackingToken.model_validate(data)
        except (BadSignature, ValidationError, TypeError) as error:
            raise InvalidTokenError(type(error).__name__) from None
