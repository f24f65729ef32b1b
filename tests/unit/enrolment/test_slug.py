"""An organisation's short sign-up address word: readable, unambiguous, not the platform's own."""

from __future__ import annotations

import uuid

import pytest

from services.enrolment.domain import check_slug
from shared.errors import Refusal


@pytest.mark.parametrize("slug", ["welzijn-aan-zee", "wmo3", "abc", "a" * 40, "buurtteam-2-noord"])
def test_readable_slugs_are_taken_as_they_are(slug: str) -> None:
    assert check_slug(slug) == slug


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("ab", "3 to 40"),
        ("a" * 41, "3 to 40"),
        ("Welzijn", "lowercase"),
        ("welzijn aan zee", "lowercase"),
        ("-welzijn", "hyphens"),
        ("welzijn-", "hyphens"),
        ("welzijn--zee", "hyphens"),
        ("wélzijn", "lowercase"),
        ("admin", "reserved"),
        ("aanmelden", "reserved"),
        ("meer-contact", "reserved"),
        (uuid.uuid4().hex, "organisation id"),
        (str(uuid.UUID(int=7)), "organisation id"),
    ],
)
def test_unreadable_reserved_or_id_like_slugs_are_refused_with_a_reason(slug: str, reason: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_slug(slug)
    assert refused.value.kind == "invalid"
    assert refused.value.field == "slug"
    assert reason in refused.value.message
