"""Sealed one-time links: only the keys open them, only until they expire, and rotation works."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.mailer_links import SealedLinkError, link_keys, open_link, seal_link
from shared.settings import ServiceSettings

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
URL = "https://enrolment.example/set-password/geheim-eenmalig-token"


def test_a_sealed_link_shows_nothing_of_the_link_and_opens_with_the_keys() -> None:
    keys = link_keys("key-one")
    sealed = seal_link(URL, keys=keys, expires_at=NOW + timedelta(hours=72), now=NOW)
    assert "geheim" not in sealed and "set-password" not in sealed and "enrolment" not in sealed
    assert open_link(sealed, keys=keys, now=NOW + timedelta(hours=71)) == URL


def test_a_sealed_link_cannot_be_opened_after_it_expired() -> None:
    keys = link_keys("key-one")
    sealed = seal_link(URL, keys=keys, expires_at=NOW + timedelta(hours=72), now=NOW)
    with pytest.raises(SealedLinkError, match="expired"):
        open_link(sealed, keys=keys, now=NOW + timedelta(hours=72))


@pytest.mark.parametrize("sealed", ["", "not-a-token", "gAAAAA" + "x" * 80, "é"])
def test_garbage_and_other_keys_are_refused(sealed: str) -> None:
    other = seal_link(URL, keys=link_keys("someone-else"), expires_at=NOW + timedelta(hours=1), now=NOW)
    for attempt in (sealed, other, other[:-4] + "AAAA"):
        with pytest.raises(SealedLinkError):
            open_link(attempt, keys=link_keys("key-one"), now=NOW)


def test_keys_rotate_newest_first() -> None:
    old = seal_link(URL, keys=link_keys("old-key"), expires_at=NOW + timedelta(hours=1), now=NOW)
    rotated = link_keys("new-key,old-key")
    assert open_link(old, keys=rotated, now=NOW) == URL
    new = seal_link(URL, keys=rotated, expires_at=NOW + timedelta(hours=1), now=NOW)
    assert open_link(new, keys=link_keys("new-key"), now=NOW) == URL
    with pytest.raises(SealedLinkError):
        open_link(new, keys=link_keys("old-key"), now=NOW)


@pytest.mark.parametrize("spec", ["", " , ", "same,same"])
def test_a_key_list_must_be_sound(spec: str) -> None:
    with pytest.raises(ValueError, match="mailer link key"):
        link_keys(spec)


def test_production_refuses_the_development_keys() -> None:
    class WithLinkKeys(ServiceSettings):
        mailer_link_keys: str = "dev-only-mailer-link-key"

    with pytest.raises(ValueError, match="MEER_MAILER_LINK_KEYS"):
        WithLinkKeys(env="production", metrics_token="t")
    assert WithLinkKeys(env="production", metrics_token="t", mailer_link_keys="a-real-secret").mailer_link_keys
