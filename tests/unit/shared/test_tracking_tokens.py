"""Tracking tokens: ids only, tamper-proof, and rotating keys."""

from __future__ import annotations

from uuid import uuid4

import pytest
from itsdangerous import URLSafeSerializer

from shared.tracking_tokens import InvalidTokenError, TokenSigner, TrackingToken, parse_keys


def token(**overrides: object) -> TrackingToken:
    values: dict[str, object] = {"k": "open", "d": uuid4(), "p": uuid4(), "o": uuid4(), "n": 4, "t": 1_790_000_000}
    values.update(overrides)
    return TrackingToken.model_validate(values)


def test_signed_token_verifies_to_the_same_claims() -> None:
    signer = TokenSigner(["key-a"])
    claims = token()
    assert signer.verify(signer.sign(claims)) == claims


def test_token_carries_only_ids() -> None:
    signed = TokenSigner(["key-a"]).sign(token())
    # Anyone can read a token's payload (it is signed, not encrypted): it must hold ids only.
    _, data = URLSafeSerializer("any key").loads_unsafe(signed)
    assert set(data) == {"k", "d", "p", "o", "n", "t"}


def test_tampered_token_is_refused() -> None:
    signer = TokenSigner(["key-a"])
    signed = signer.sign(token())
    forged = TokenSigner(["key-a"]).sign(token(n=5))
    tampered = forged.split(".")[0] + "." + signed.split(".")[1]
    with pytest.raises(InvalidTokenError):
        signer.verify(tampered)
    with pytest.raises(InvalidTokenError):
        signer.verify(signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"))
    with pytest.raises(InvalidTokenError):
        signer.verify("not-a-token")


def test_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        TokenSigner(["key-a"]).verify(TokenSigner(["someone-else"]).sign(token()))


def test_rotation_old_key_verifies_during_grace_and_not_after() -> None:
    old_signed = TokenSigner(["old"]).sign(token())
    rotating = TokenSigner(parse_keys("new, old"))
    assert rotating.verify(old_signed).kind == "open"
    new_signed = rotating.sign(token())
    assert TokenSigner(["new"]).verify(new_signed).kind == "open", "the newest key signs"
    with pytest.raises(InvalidTokenError):
        TokenSigner(["new"]).verify(old_signed)


def test_at_least_one_key_is_required() -> None:
    with pytest.raises(ValueError, match="at least one"):
        parse_keys(" , ")
