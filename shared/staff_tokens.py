"""Staff access tokens: the contract between enrolment, which issues them after a login,
and the services that trust them (coaching) with the public key only.

Tokens are short-lived JWTs signed with Ed25519 (EdDSA, PyJWT). They carry the staff
member's id, role, organisation and token version; never a name or an e-mail address.
A signature alone is not enough: enrolment bumps a member's token version on logout,
password reset, deactivation and removal and publishes `staff.access_changed`; every
service keeps that (version, active) per staff member and refuses older tokens
(`token_allowed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, ValidationError

ISSUER = "meer-enrolment"
AUDIENCE = "meer-staff"
ALGORITHM = "EdDSA"

StaffRole = Literal["org_admin", "coach", "partner"]
"""A partner is a signaller outside the organisation (housing, GP practice, volunteer): the
least rights of all, only what a service explicitly lets a partner do."""


class StaffClaims(BaseModel):
    """Who the bearer is: a coach (coach_id set), an organisation admin or a partner, of one organisation."""

    model_config = ConfigDict(frozen=True)

    staff_id: UUID
    role: StaffRole
    org_id: UUID
    coach_id: UUID | None = None
    token_version: int = 0


@dataclass(frozen=True)
class StaffAccess:
    """What a service knows of a staff member's access: the lowest token version still
    valid, and whether the member may log in at all."""

    token_version: int
    active: bool


def token_allowed(claims: StaffClaims, access: StaffAccess | None) -> bool:
    """A verified token still counts: its member is active and it is not older than the
    last revocation. None (no change ever heard of) leaves it to the signature."""
    return access is None or (access.active and claims.token_version >= access.token_version)


class InvalidStaffTokenError(ValueError):
    """Expired, forged, for another audience, or malformed."""


def issue_staff_token(
    claims: StaffClaims, private_key_pem: bytes, *, ttl: timedelta, now: datetime | None = None
) -> str:
    """Sign a token (enrolment only: it alone holds the private key)."""
    issued = now or datetime.now(UTC)
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + ttl,
        "sub": str(claims.staff_id),
        "role": claims.role,
        "org": str(claims.org_id),
        "coach": str(claims.coach_id) if claims.coach_id else None,
        "ver": claims.token_version,
    }
    return jwt.encode(payload, serialization.load_pem_private_key(private_key_pem, password=None), algorithm=ALGORITHM)  # type: ignore[arg-type]


def verify_staff_token(token: str, public_key_pem: bytes) -> StaffClaims:
    """Check signature, issuer, audience and expiry; return the claims."""
    try:
        data = jwt.decode(
            token,
            serialization.load_pem_public_key(public_key_pem),  # type: ignore[arg-type]
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        return StaffClaims(
            staff_id=data["sub"],
            role=data["role"],
            org_id=data["org"],
            coach_id=data.get("coach"),
            token_version=data.get("ver", 0),
        )
    except (jwt.PyJWTError, ValidationError, KeyError, ValueError) as error:
        raise InvalidStaffTokenError(type(error).__name__) from None


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM files (for the local stack; production brings its own)."""
    private_key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
