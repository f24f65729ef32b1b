"""The sign-up limits: which source and mailbox a sign-up counts against, and its windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.enrolment.signup_limits import (
    SignupLimits,
    counter_key,
    normalised_mailbox,
    over_limit,
    retry_after_s,
    sliding_count,
    source_of,
    window_start,
)


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("Ans@Example.NL", "ans@example.nl"),
        ("ans+zuid@example.nl", "ans@example.nl"),
        ("ANS+a+b@example.nl", "ans@example.nl"),
        ("  ans@example.nl ", "ans@example.nl"),
        ("+tag@example.nl", "+tag@example.nl"),
    ],
)
def test_plus_tags_and_case_lead_to_one_mailbox(address: str, mailbox: str) -> None:
    assert normalised_mailbox(address) == mailbox


def test_a_source_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert source_of("203.0.113.7") == "203.0.113.7"
    assert source_of("203.0.113.8") != source_of("203.0.113.7")
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:203.0.113.7") == "203.0.113.7"
    assert source_of(None) == "unknown" and source_of("testclient") == "testclient"


def test_counter_keys_keep_neither_address_nor_ip() -> None:
    key = counter_key("mailbox", "ans@example.nl")
    assert len(key) == 64 and "ans" not in key
    assert key != counter_key("source", "ans@example.nl")


def test_windows_are_fixed_and_a_later_sign_up_counts_in_a_new_one() -> None:
    hour = timedelta(hours=1)
    now = datetime(2026, 11, 30, 10, 59, 30, tzinfo=UTC)
    assert window_start(now, hour) == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert window_start(now + timedelta(minutes=1), hour) == datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert window_start(now, timedelta(days=1)) == datetime(2026, 11, 30, tzinfo=UTC)
    assert retry_after_s(now, hour) == 30
    assert retry_after_s(datetime(2026, 11, 30, 10, tzinfo=UTC), hour) == 3600


def test_the_limit_refuses_only_what_is_over_it() -> None:
    limits = SignupLimits(per_source=10, per_mailbox=3)
    assert not over_limit(3, "mailbox", limits) and over_limit(4, "mailbox", limits)
    assert not over_limit(10, "source", limits) and over_limit(11, "source", limits)
    assert limits.window("mailbox") == timedelta(days=1) and limits.window("source") == timedelta(hours=1)


def test_a_burst_across_a_window_boundary_gets_no_more_than_the_limit() -> None:
    hour = timedelta(hours=1)
    limits = SignupLimits(per_source=10)
    just_after = datetime(2026, 11, 30, 11, 0, 1, tzinfo=UTC)
    # Ten sign-ups counted just before 11:00; the next one, a second later, is over the limit.
    assert over_limit(sliding_count(current=1, previous=10, now=just_after, window=hour), "source", limits)
    # Half an hour on, half of the previous hour still counts.
    half_past = datetime(2026, 11, 30, 11, 30, tzinfo=UTC)
    assert sliding_count(current=1, previous=10, now=half_past, window=hour) == 6
    assert not over_limit(sliding_count(current=5, previous=10, now=half_past, window=hour), "source", limits)
    assert over_limit(sliding_count(current=6, previous=10, now=half_past, window=hour), "source", limits)
    # A quiet previous hour changes nothing.
    assert sliding_count(current=4, previous=0, now=just_after, window=hour) == 4
