"""Tracking tokens: the contract between the mailer, which signs them into every mail,
and tracking, which verifies them when a pixel or link is fetched. Questionnaire links are
signed with the same keys under a salt of their own (one participant, one moment).

A token carries ids only (never an address or a name), is bound to one delivery, and is
signed with HMAC. New tracking tokens are compact: the ids packed with `struct`, an
HMAC-SHA256 tag cut to 16 bytes, base64url (about 100 characters for a pixel, checked in a
few microseconds on every hit). Tokens signed before as itsdangerous JSON (they hold a '.',
which base64url never does) keep verifying, in mails already sent. Questionnaire links stay
itsdangerous JSON. Keys rotate: the first key signs, every other key that
is still configured verifies. An older key may carry a grace period,
`MEER_TRACKING_KEYS="newkey,oldkey@2026-12-31"`: the old key verifies until the end of
that day (UTC) and is refused after it, without a restart or a config change; a key
without a date verifies until it is removed from the list. Keys hold neither ',' nor '@'.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

from asyncpg.pgproto import pgproto
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

    def expired(self, now: datetime | None = None) -> bool:
        """Past its grace date at `now` (the clock when None; read only for a key that has a
        date, since every open of every mail is verified)."""
        return self.verifies_until is not None and (now or datetime.now(UTC)) >= self.verifies_until


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


_KINDS: tuple[TokenKind, ...] = ("open", "click", "report", "unsubscribe")
_KIND_CODES: dict[str, int] = {kind: code for code, kind in enumerate(_KINDS)}
# version, kind, delivery, participant, organisation, day, sent_at; then a click's URL (UTF-8).
_COMPACT = struct.Struct(">BB16s16s16sHI")
_COMPACT_VERSION = 1
_TAG_BYTES = 16  # HMAC-SHA256 cut to 128 bits: forging one still takes 2^128 tries


def _compact_mac(key: str) -> hmac.HMAC:
    """A keyed HMAC, copied per token (cheaper than keying it each time); its own salt, so a
    compact tag is never an itsdangerous signature or the other way round."""
    return hmac.new(key.encode(), b"meer.tracking.compact.v1|", hashlib.sha256)


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
        self._macs = [_compact_mac(key.secret) for key in self._keys]

    def sign(self, token: TrackingToken) -> str:
        """A compact token: packed ids (and a click's URL), a 16-byte HMAC tag, base64url."""
        if token.sent_at < 0 or token.sent_at > 0xFFFFFFFF or token.day > 0xFFFF:
            raise ValueError("sent_at or day out of range for a compact token")
        payload = (
            _COMPACT.pack(
                _COMPACT_VERSION,
                _KIND_CODES[token.kind],
                token.delivery_id.bytes,
                token.participant_id.bytes,
                token.org_id.bytes,
                token.day,
                token.sent_at,
            )
            + (token.url or "").encode()
        )
        mac = self._macs[0].copy()
        mac.update(payload)
        return base64.urlsafe_b64encode(payload + mac.digest()[:_TAG_BYTES]).rstrip(b"=").decode()

    def verify(self, signed: str, *, now: datetime | None = None) -> TrackingToken:
        """The token's claims; InvalidTokenError (with a reason) when it must not count."""
        if "." not in signed:
            return self._verify_compact(signed, now)
        data = self._load(signed, self._serializers, self._signers, now)
        try:
            return TrackingToken.model_validate(data)
        except ValidationError:
            raise InvalidTokenError("malformed") from None

    def _verify_compact(self, signed: str, now: datetime | None) -> TrackingToken:
        # Text that is no token at all carries no signature of ours, as itsdangerous said of
        # it too; "malformed" is kept for a genuine tag over claims that make no token.
        try:
            raw = base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4))
        except (binascii.Error, ValueError):
            raise InvalidTokenError("bad_signature") from None
        # Exactly base64url: the decoder skips characters outside its alphabet and takes "+"
        # and "/" too, so a genuine token with a NUL or a line break put in, or spelled in the
        # standard alphabet, would verify as another spelling. Unpadded base64 of n bytes is
        # ceil(4n / 3) characters: fewer bytes than the text's length gives means some were
        # skipped. (The decoder's strict mode costs 2.3 µs more per pixel hit.)
        if len(signed) != -(-4 * len(raw) // 3) or "+" in signed or "/" in signed:
            raise InvalidTokenError("bad_signature")
        if len(raw) < _COMPACT.size + _TAG_BYTES:
            raise InvalidTokenError("bad_signature")
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        for key, keyed in zip(self._keys, self._macs, strict=True):
            mac = keyed.copy()
            mac.update(payload)
            if not hmac.compare_digest(mac.digest()[:_TAG_BYTES], tag):
                continue
            if key.expired(now):
                raise InvalidTokenError("expired_key")
            return _unpack(payload)
        raise InvalidTokenError("bad_signature")

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
            if key.expired(now):
                raise InvalidTokenError("expired_key")
            return data
        raise InvalidTokenError("bad_signature")

    def verify_kind(self, signed: str, kind: TokenKind, *, now: datetime | None = None) -> TrackingToken:
        """Like verify, and the token must be of this kind (a pixel token opens no link)."""
        token = self.verify(signed, now=now)
        if token.kind != kind:
            raise InvalidTokenError("wrong_kind")
        return token


def _unpack(payload: bytes) -> TrackingToken:
    """The claims of a genuine compact payload (its tag checked)."""
    version, kind, delivery, participant, org, day, sent_at = _COMPACT.unpack_from(payload)
    if version != _COMPACT_VERSION or kind >= len(_KINDS) or day < 1:
        raise InvalidTokenError("malformed")
    # asyncpg's UUID is a uuid.UUID (equal, same hash) made ten times faster from bytes, and
    # encoded without a conversion when the pixel appends the hit.
    fields: dict[str, Any] = {
        "kind": _KINDS[kind],
        "delivery_id": pgproto.UUID(delivery),
        "participant_id": pgproto.UUID(participant),
        "org_id": pgproto.UUID(org),
        "day": day,
        "sent_at": sent_at,
    }
    given = set(fields)
    fields["url"] = None
    if len(payload) > _COMPACT.size:
        try:
            fields["url"] = payload[_COMPACT.size :].decode()
        except UnicodeDecodeError:
            raise InvalidTokenError("malformed") from None
        given.add("url")
    return _trusted_token(fields, given)


def _trusted_token(fields: dict[str, Any], given: set[str]) -> TrackingToken:
    """A TrackingToken from fields already of their types (unpacked from checked bytes), made
    as pydantic's model_construct makes one, without its per-field work: every pixel hit
    passes here, and validating or constructing the usual way costs more than the HMAC."""
    token = TrackingToken.__new__(TrackingToken)
    object.__setattr__(token, "__dict__", fields)
    object.__setattr__(token, "__pydantic_fields_set__", given)
    object.__setattr__(token, "__pydantic_extra__", None)
    object.__setattr__(token, "__pydantic_private__", None)
    return token
