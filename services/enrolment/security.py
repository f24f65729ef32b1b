"""Secrets of the enrolment service: password hashes (argon2), one-time link tokens,
organisation API keys, the staff access tokens it signs and the device tokens of browsers
that logged in before."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import serialization

from shared.staff_tokens import ALGORITHM, ISSUER, StaffClaims, issue_staff_token, verify_staff_token

_hasher = PasswordHasher()
# Checked against when an address has no account, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
API_KEY_PREFIX = "meer_"
DEVICE_AUDIENCE = "meer-login-device"


def hash_password(password: str) -> str:
    """An argon2id hash with the library's current parameters."""
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; an account without a password never matches."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def new_link_token() -> str:
    """A random token for a one-time link (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (tokens, API keys): what the database keeps.

    A slow hash is not needed here: these secrets are random, not chosen by people.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def email_digest(email: str) -> str:
    """A stable key for an address that does not keep the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A new organisation API key and the prefix shown to recognise it later."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(API_KEY_PREFIX) + 6]


def secrets_equal(given: str, expected: str) -> bool:
    """Compare secrets in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


class KeysMissingError(RuntimeError):
    """The key file for signing or checking staff tokens is not configured."""


@dataclass(frozen=True)
class TokenKeys:
    """The key pair for staff tokens, read once at start."""

    private_pem: bytes | None
    public_pem: bytes | None

    @classmethod
    def load(cls, private_path: Path | None, public_path: Path | None) -> TokenKeys:
        """Read the PEM files named in the settings (either may be absent)."""
        return cls(
            private_pem=private_path.read_bytes() if private_path else None,
            public_pem=public_path.read_bytes() if public_path else None,
        )

    def issue(self, claims: StaffClaims, ttl: timedelta) -> str:
        """Sign a staff token."""
        if self.private_pem is None:
            raise KeysMissingError("MEER_STAFF_TOKEN_PRIVATE_KEY_PATH is not set: enrolment cannot sign staff tokens")
        return issue_staff_token(claims, self.private_pem, ttl=ttl)

    def verify(self, token: str) -> StaffClaims:
        """Check a staff token and return its claims."""
        if self.public_pem is None:
            raise KeysMissingError("MEER_STAFF_TOKEN_PUBLIC_KEY_PATH is not set: enrolment cannot check staff tokens")
        return verify_staff_token(token, self.public_pem)

    def issue_device(self, email_key: str, ttl: timedelta) -> str:
        """A device token for a browser that just logged in to this account (by its address
        hash): later failures of others do not lock that browser out."""
        if self.private_pem is None:
            raise KeysMissingError("MEER_STAFF_TOKEN_PRIVATE_KEY_PATH is not set: enrolment cannot sign device tokens")
        now = datetime.now(UTC)
        payload = {
            "iss": ISSUER,
            "aud": DEVICE_AUDIENCE,
            "iat": now,
            "exp": now + ttl,
            "sub": email_key,
            "jti": secrets.token_urlsafe(12),
        }
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        return jwt.encode(payload, key, algorithm=ALGORITHM)  # type: ignore[arg-type]

    def device_id(self, token: str | None, email_key: str) -> str | None:
        """The id of a valid device token for this account, else None."""
        if not token or self.public_pem is None or len(token) > 1000:
            return None
        try:
            data = jwt.decode(
                token,
                serialization.load_pem_public_key(self.public_pem),  # type: ignore[arg-type]
                algorithms=[ALGORITHM],
                audience=DEVICE_AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "jti"]},
            )
        except jwt.PyJWTError:
            return None
        jti = data.get("jti")
        return jti if data.get("sub") == email_key and isinstance(jti, str) and len(jti) <= 40 else None
