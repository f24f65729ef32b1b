"""Tracking tokens: ids only, tamper-proof, and rotating keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from datetime import UTC, datetime, timedelta
from hashlib import sha1
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_encode
from pydantic import ValidationError

from shared.tracking_tokens import InvalidTokenError, QuestionnaireToken, TokenSigner, TrackingToken, parse_keys


def token(**overrides: object) -> TrackingToken:
    values: dict[str, object] = {"k": "open", "d": uuid4(), "p": uuid4(), "o": uuid4(), "n": 4, "t": 1_790_000_000}
    values.update(overrides)
    return TrackingToken.model_validate(values)


def test_signed_token_verifies_to_the_same_claims() -> None:
    signer = TokenSigner(["key-a"])
    claims = token()
    assert signer.verify(signer.sign(claims)) == claims


def test_token_carries_only_ids() -> None:
    claims = token()
    signed = TokenSigner(["key-a"]).sign(claims)
    # Anyone can read a token's payload (it is signed, not encrypted): it must hold ids only.
    raw = base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4))
    ids = claims.delivery_id.bytes + claims.participant_id.bytes + claims.org_id.bytes
    assert len(raw) == 2 + len(ids) + 2 + 4 + 16, "version, kind, ids, day, sent_at and the tag: nothing else"
    assert raw[2 : 2 + len(ids)] == ids
    assert len(signed) <= 100 and "." not in signed


def legacy_sign(key: str, claims: TrackingToken) -> str:
    """A token as the mailer signed them before compact tokens (itsdangerous, uncompressed JSON)."""
    payload = json.dumps(claims.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()
    serializer = URLSafeSerializer(key, salt="meer.tracking.v1", signer_kwargs={"digest_method": sha1})
    return str(serializer.make_signer().sign(base64_encode(payload)).decode())


def test_tokens_signed_the_previous_way_keep_verifying() -> None:
    claims = token(k="click", u="https://example.org/les?dag=4")
    signed = legacy_sign("key-a", claims)
    assert "." in signed and not signed.startswith(".")
    assert TokenSigner(["key-a"]).verify(signed) == claims
    assert TokenSigner(parse_keys("new,key-a@2026-12-31")).verify(signed, now=NOW) == claims, "an old key's grace"
    with pytest.raises(InvalidTokenError) as refused:
        TokenSigner(parse_keys("new,key-a@2026-12-31")).verify(signed, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert refused.value.reason == "expired_key"


def test_a_compact_click_token_carries_its_url() -> None:
    signer = TokenSigner(["key-a"])
    claims = token(k="click", u="https://example.org/één?x=1&y=2")
    assert signer.verify_kind(signer.sign(claims), "click") == claims


def test_a_verified_compact_token_is_a_whole_token() -> None:
    signer = TokenSigner(["key-a"])
    claims = token()
    verified = signer.verify(signer.sign(claims))
    assert verified.model_dump() == claims.model_dump() and verified.url is None
    assert verified.model_fields_set == claims.model_fields_set
    assert hash(verified) == hash(claims)
    with pytest.raises(ValidationError):
        verified.day = 5  # type: ignore[misc]  # frozen like any other


def test_a_genuine_compact_tag_over_no_token_is_malformed() -> None:
    signer = TokenSigner(["key-a"])
    payload = struct.pack(">BB16s16s16sHI", 9, 0, b"\0" * 16, b"\0" * 16, b"\0" * 16, 1, 0)  # unknown version
    mac = hmac.new(b"key-a", b"meer.tracking.compact.v1|" + payload, hashlib.sha256).digest()[:16]
    signed = base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError) as refused:
        signer.verify(signed)
    assert refused.value.reason == "malformed"
    for garbage in ("", "A", "!!!!", "AAAA", "geen-token"):
        with pytest.raises(InvalidTokenError) as unsigned:
            signer.verify(garbage)
        assert unsigned.value.reason == "bad_signature", "no token at all carries no signature of ours"


def test_tokens_signed_compressed_before_still_verify() -> None:
    # Earlier tokens were zlib-compressed (itsdangerous' default); mails carrying them are out there.
    claims = token()
    compressed = URLSafeSerializer("key-a", salt="meer.tracking.v1", signer_kwargs={"digest_method": sha1}).dumps(
        claims.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    assert compressed.startswith(".")
    signer = TokenSigner(["key-a"])
    assert not signer.sign(claims).startswith(".")
    assert signer.verify(compressed) == claims


def test_tampered_token_is_refused() -> None:
    signer = TokenSigner(["key-a"])
    signed = signer.sign(token())
    raw = bytearray(base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4)))
    raw[20] ^= 1  # another participant
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError) as refused:
        signer.verify(tampered)
    assert refused.value.reason == "bad_signature"
    forged = signer.sign(token(n=5))
    with pytest.raises(InvalidTokenError):
        signer.verify(forged[:-22] + signed[-22:])  # one token's claims under another's tag
    legacy = legacy_sign("key-a", token())
    with pytest.raises(InvalidTokenError):
        signer.verify(legacy_sign("key-a", token(n=5)).split(".")[0] + "." + legacy.split(".")[1])
    with pytest.raises(InvalidTokenError):
        signer.verify("not-a-token")


@pytest.mark.parametrize("inserted", ["\x00", "\r\n", " ", "=", "%", "é"])
def test_a_genuine_token_with_a_character_put_in_is_refused(inserted: str) -> None:
    signer = TokenSigner(["key-a"])
    signed = signer.sign(token())
    with pytest.raises(InvalidTokenError) as refused:
        signer.verify(signed[:40] + inserted + signed[40:])
    assert refused.value.reason == "bad_signature"


_SIGNER = TokenSigner(["key-a"])
_GENUINE = _SIGNER.sign(token())
_BASE64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(
    position=st.integers(min_value=0, max_value=len(_GENUINE)),
    inserted=st.text(min_size=1, max_size=3).filter(lambda text: not set(text) <= _BASE64URL),
)
def test_any_character_outside_base64url_put_anywhere_in_a_genuine_token_is_refused(
    position: int, inserted: str
) -> None:
    with pytest.raises(InvalidTokenError):
        _SIGNER.verify(_GENUINE[:position] + inserted + _GENUINE[position:])


@pytest.mark.parametrize(("urlsafe", "standard"), [("-", "+"), ("_", "/")])
def test_a_genuine_token_in_the_standard_base64_alphabet_is_refused(urlsafe: str, standard: str) -> None:
    signer = TokenSigner(["key-a"])
    signed = next(s for s in (signer.sign(token()) for _ in range(200)) if urlsafe in s)
    assert signer.verify(signed)
    with pytest.raises(InvalidTokenError):
        signer.verify(signed.replace(urlsafe, standard))


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


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_key_with_a_date_verifies_until_the_end_of_that_day_utc() -> None:
    old_signed = TokenSigner(["old"]).sign(token())
    rotating = TokenSigner(parse_keys("new,old@2026-12-31"))
    assert rotating.verify(old_signed, now=datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)).day == 4
    with pytest.raises(InvalidTokenError) as refused:
        rotating.verify(old_signed, now=datetime(2027, 1, 1, 0, 0, tzinfo=UTC))
    assert refused.value.reason == "expired_key"


def test_key_end_may_be_an_exact_moment_with_an_offset() -> None:
    (_, old) = parse_keys("new, old@2026-12-01T13:00:00+01:00")
    assert old.verifies_until == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert old.expired(NOW) and not old.expired(NOW - timedelta(seconds=1))


def test_new_key_still_signs_and_verifies_when_an_old_one_expired() -> None:
    rotating = TokenSigner(parse_keys("new,old@2020-01-01"))
    assert rotating.verify(rotating.sign(token()), now=NOW).kind == "open"
    assert TokenSigner(["new"]).verify(rotating.sign(token())).kind == "open", "the first key signs"


def test_tampered_and_foreign_tokens_say_why_they_are_refused() -> None:
    signer = TokenSigner(parse_keys("key-a"))
    with pytest.raises(InvalidTokenError) as foreign:
        signer.verify(TokenSigner(["someone-else"]).sign(token()))
    assert foreign.value.reason == "bad_signature"
    with pytest.raises(InvalidTokenError) as wrong:
        signer.verify_kind(signer.sign(token()), "click")
    assert wrong.value.reason == "wrong_kind"


def test_genuine_signature_over_claims_that_are_no_token_is_malformed() -> None:
    signed = URLSafeSerializer("key-a", salt="meer.tracking.v1").dumps({"k": "open", "d": "not-a-uuid"})
    with pytest.raises(InvalidTokenError) as refused:
        TokenSigner(["key-a"]).verify(str(signed))
    assert refused.value.reason == "malformed"


def test_tokens_signed_before_the_grace_period_syntax_still_verify() -> None:
    # The mailer signed tokens with URLSafeSerializer([key]) before keys could expire.
    legacy = URLSafeSerializer(["key-a"], salt="meer.tracking.v1").dumps(
        token().model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    assert TokenSigner(parse_keys("key-a")).verify(str(legacy)).day == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("new@2026-12-31,old", "first tracking key"),
        ("new,old@31-12-2026", "not a date"),
        ("new,old@2026-12-31T10:00:00", "not a date"),
        ("new,new@2026-12-31", "twice"),
        ("new,@2026-12-31", "empty"),
    ],
)
def test_bad_key_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_keys(spec)


def test_questionnaire_token_carries_ids_and_moment_and_is_not_a_tracking_token() -> None:
    signer = TokenSigner(["key-a"])
    claims = QuestionnaireToken(p=uuid4(), o=uuid4(), m="end")
    signed = signer.sign_questionnaire(claims)
    assert signer.verify_questionnaire(signed) == claims
    _, data = URLSafeSerializer("any key").loads_unsafe(signed)
    assert set(data) == {"p", "o", "m"}
    # the salts differ: neither kind of token opens the other's door
    with pytest.raises(InvalidTokenError):
        signer.verify(signed)
    with pytest.raises(InvalidTokenError):
        signer.verify_questionnaire(signer.sign(token(k="report")))
    with pytest.raises(InvalidTokenError):
        TokenSigner(["key-b"]).verify_questionnaire(signed)
    with pytest.raises(InvalidTokenError):
        signer.verify_questionnaire(signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"))
