"""Tracking tokens: the contract between the mailer, which signs them into every mail,
and tracking, which verifies them when a pixel or link is fetched. Questionnaire links are
signed with the same keys under a salt of their own (one participant, one moment).

A token carries ids only (never an address or a name), is bound to one delivery, and is
signed with HMAC (itsdangerous). Keys rotate: the first key signs, every other key that
is still configured verifies. An older key may carry a grace period,
`MEER_TRACKING_KEYS="newkey,oldkey@2026-12-31"`: the old key verifies until the end of
that day (UTC) and is refused after it, without a restart or a config change; a key
without a date verifies until it is removed from the list. Keys hold neither ',' nor '@'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

from itsdangerous import BadPayload, BadSignature, Serializer, URLSafeSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TokenKind = Literal["open", "click", "report", "unsubscribe"]
InvalidReason = Literal["malformed", "bad_signature", "expired_key", "wrong_kind"]


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


QuestionnaireMoment = Literal["intake", "end", "follow_up"]


class QuestionnaireToken(BaseModel):
    """A link to the loneliness questionnaire: one participant, one moment, ids only."""

    model_config = ConfigDict(frozen=True)

    participant_id: UUID = Field(alias="p")
    org_id: UUID = Field(alias="o")
    moment: QuestionnaireMoment = Field(alias="m")


class InvalidTokenError(ValueError):
    """The token was forged, tampered with, signed with a retired key, or malformed."""

    def __init__(self, reason: InvalidReason) -> None:
        super().__init__(reason)
        self.reason: InvalidReason = reason


@dataclass(frozen=True)
class TrackingKey:
    """One HMAC key, and the moment it stops verifying (None: while it is configured)."""

    secret: str
    verifies_until: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.verifies_until is not None and now >= self.verifies_until


def parse_keys(spec: str) -> list[TrackingKey]:
    """Keys from 'newest,older@YYYY-MM-DD,...' (comma separated); the first one signs.

    A date means the key verifies until the end of that day (UTC); an ISO date-time with
    an offset gives the exact moment instead. The signing key cannot have an end: the
    mails it signs today must keep working.
    """
    keys = [_parse_key(part.strip()) for part in spec.split(",") if part.strip()]
    if not keys:
        raise ValueError("at least one tracking key is needed")
    if keys[0].verifies_until is not None:
        raise ValueError("the first tracking key signs new mails and cannot have an end date")
    if len({key.secret for key in keys}) != len(keys):
        raise ValueError("a tracking key is listed twice")
    return keys


def _parse_key(part: str) -> TrackingKey:
    secret, _, until = part.rpartition("@") if "@" in part else (part, "", "")
    secret = secret.strip()
    if not secret:
        raise ValueError("a tracking key is empty")
    if not until:
        return TrackingKey(secret)
    try:
        if "T" in until:
            moment = datetime.fromisoformat(until)
            if moment.tzinfo is None:
                raise ValueError("no offset")
            return TrackingKey(secret, moment.astimezone(UTC))
        end_of_day = datetime.combine(date.fromisoformat(until), time(), tzinfo=UTC) + timedelta(days=1)
    except ValueError:
        raise ValueError(
            f"tracking key end {until!r} is not a date (YYYY-MM-DD) or a date-time with an offset"
        ) from None
    return TrackingKey(secret, end_of_day)


class _UncompressedSerializer(URLSafeSerializer):
    """Signs payloads without zlib: inflating a token on every pixel hit costs more time
    than the few characters compression saves in a mail. Tokens signed compressed (they
    start with '.') still verify."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class TokenSigner:
    """Signs with the first key and verifies with every key that has not expired."""

    _SALT = "meer.tracking.v1"
    # Its own salt: no tracking token opens the questionnaire, and no questionnaire token a pixel.
    _QUESTIONNAIRE_SALT = "meer.questionnaire.v1"

    def __init__(self, keys: Sequence[str | TrackingKey]) -> None:
        if not keys:
            raise ValueError("at least one tracking key is needed")
        self._keys = [key if isinstance(key, TrackingKey) else TrackingKey(key) for key in keys]
        # HMAC-SHA1 as itsdangerous signs by default, named so that hmac takes OpenSSL's fast
        # path instead of the pure-Python one: the same signatures, several times faster.
        fast_sha1 = {"algorithm": HMACAlgorithm("sha1")}
        self._serializers = [
            _UncompressedSerializer(key.secret, salt=self._SALT, signer_kwargs=fast_sha1) for key in self._keys
        ]
        # Made once: every open of every mail is verified, and a signer is not free to build.
        self._signers = [serializer.make_signer() for serializer in self._serializers]
        self._questionnaire_serializers = [
            _UncompressedSerializer(key.secret, salt=self._QUESTIONNAIRE_SALT, signer_kwargs=fast_sha1)
            for key in self._keys
        ]
        self._questionnaire_signers = [serializer.make_signer() for serializer in self._questionnaire_serializers]

    def sign(self, token: TrackingToken) -> str:
        return str(self._serializers[0].dumps(token.model_dump(mode="json", by_alias=True, exclude_none=True)))

    def verify(self, signed: str, *, now: datetime | None = None) -> TrackingToken:
        """The token's claims; InvalidTokenError (with a reason) when it must not count."""
        data = self._load(signed, self._serializers, self._signers, now)
        try:
            return TrackingToken.model_validate(data)
        except ValidationError:
            raise InvalidTokenError("malformed") from None

    def sign_questionnaire(self, token: QuestionnaireToken) -> str:
        return str(self._questionnaire_serializers[0].dumps(token.model_dump(mode="json", by_alias=True)))

    def verify_questionnaire(self, signed: str, *, now: datetime | None = None) -> QuestionnaireToken:
        """A questionnaire link's claims; InvalidTokenError when it is forged, retired or malformed."""
        data = self._load(signed, self._questionnaire_serializers, self._questionnaire_signers, now)
        try:
            return QuestionnaireToken.model_validate(data)
        except ValidationError:
            raise InvalidTokenError("malformed") from None

    def _load(
        self, signed: str, serializers: Sequence[URLSafeSerializer], signers: Sequence[Any], now: datetime | None
    ) -> Any:
        moment = now or datetime.now(UTC)
        for key, serializer, signer in zip(self._keys, serializers, signers, strict=True):
            try:
                payload = signer.unsign(signed)
            except BadSignature:
                continue
            except (TypeError, ValueError):
                raise InvalidTokenError("malformed") from None
            try:
                data = serializer.load_payload(payload)
            except (BadPayload, TypeError, ValueError):
                raise InvalidTokenError("malformed") from None
            # The signature is genuine; a key past its grace period still counts as refused.
            if key.expired(moment):
                raise InvalidTokenError("expired_key")
            return data
        raise InvalidTokenError("bad_signature")

    def verify_kind(self, signed: str, kind: TokenKind, *, now: datetime | None = None) -> TrackingToken:
        """Like verify, and the token must be of this kind (a pixel token opens no link)."""
        token = self.verify(signed, now=now)
        if token.kind != kind:
            raise InvalidTokenError("wrong_kind")
        return token
