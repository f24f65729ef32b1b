"""Staff tokens: Ed25519-signed, verified with the public key only, short-lived."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from shared.staff_tokens import (
    InvalidStaffTokenError,
    StaffClaims,
    generate_key_pair,
    issue_staff_token,
    verify_staff_token,
)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    generate_key_pair(tmp_path / "key.pem", tmp_path / "key.pub")
    return (tmp_path / "key.pem").read_bytes(), (tmp_path / "key.pub").read_bytes()


def test_token_verifies_with_the_public_key(keys: tuple[bytes, bytes]) -> None:
    claims = StaffClaims(staff_id=uuid4(), role="coach", org_id=uuid4(), coach_id=uuid4())
    token = issue_staff_token(claims, keys[0], ttl=timedelta(minutes=15))
    assert verify_staff_token(token, keys[1]) == claims


def test_expired_token_is_refused(keys: tuple[bytes, bytes]) -> None:
    claims = StaffClaims(staff_id=uuid4(), role="org_admin", org_id=uuid4())
    token = issue_staff_token(claims, keys[0], ttl=timedelta(minutes=15), now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidStaffTokenError):
        verify_staff_token(token, keys[1])


def test_token_from_another_key_or_tampered_is_refused(keys: tuple[bytes, bytes], tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "other.pem", tmp_path / "other.pub")
    claims = StaffClaims(staff_id=uuid4(), role="coach", org_id=uuid4(), coach_id=uuid4())
    foreign = issue_staff_token(claims, (tmp_path / "other.pem").read_bytes(), ttl=timedelta(minutes=5))
    with pytest.raises(InvalidStaffTokenError):
        verify_staff_token(foreign, keys[1])
    genuine = issue_staff_token(claims, keys[0], ttl=timedelta(minutes=5))
    header, payload, signature = genuine.split(".")
    with pytest.raises(InvalidStaffTokenError):
        verify_staff_token(f"{header}.{payload[:-3]}abc.{signature}", keys[1])
