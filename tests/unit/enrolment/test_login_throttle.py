"""Login limits: per source, subnet, account+source and account, with doubling delays; a
browser that logged in before (device token) is held only to its own limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.enrolment.domain import check_new_password
from services.enrolment.login_limits import (
    LimitScope,
    LimitState,
    LoginPolicy,
    after_login_failure,
    after_login_success,
    login_blocked,
    login_limit_keys,
    source_network,
)
from shared.errors import Refusal

POLICY = LoginPolicy(
    failures_per_source=4,
    failures_per_subnet=8,
    failures_per_account_source=3,
    failures_per_account=6,
    failures_per_device=3,
    window=timedelta(hours=1),
    first_delay=timedelta(seconds=1),
    longest_delay=timedelta(minutes=15),
)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def fail(state: LimitState, scope: LimitScope, times: int, now: datetime = T0) -> LimitState:
    for _ in range(times):
        state = after_login_failure(state, now, scope, POLICY)
    return state


def test_free_failures_bring_no_delay_then_each_further_one_doubles_it() -> None:
    state = fail(LimitState(), "account_source", 3)
    assert state.failures == 3 and login_blocked([state], T0) is None
    delays = []
    for _ in range(4):
        state = after_login_failure(state, T0, "account_source", POLICY)
        assert state.blocked_until is not None
        delays.append(state.blocked_until - T0)
    assert delays == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8)]
    assert login_blocked([state], T0 + timedelta(seconds=7)) == T0 + timedelta(seconds=8)
    assert login_blocked([state], T0 + timedelta(seconds=8)) is None


def test_the_delay_stops_growing_at_the_longest_delay() -> None:
    state = fail(LimitState(), "source", 500)
    assert state.blocked_until == T0 + POLICY.longest_delay


def test_failures_older_than_the_window_are_forgotten() -> None:
    state = fail(LimitState(), "account_source", 3)
    later = T0 + POLICY.window
    state = after_login_failure(state, later, "account_source", POLICY)
    assert state.failures == 1 and state.window_started_at == later
    assert login_blocked([state], later) is None


def test_each_scope_has_its_own_number_of_free_failures() -> None:
    assert [POLICY.free_failures(s) for s in ("source", "subnet", "account_source", "account", "device")] == [
        4,
        8,
        3,
        6,
        3,
    ]
    assert login_blocked([fail(LimitState(), "source", 4), fail(LimitState(), "subnet", 8)], T0) is None
    assert login_blocked([fail(LimitState(), "source", 5)], T0) is not None


def test_the_latest_block_of_all_limits_counts() -> None:
    short = LimitState(blocked_until=T0 + timedelta(seconds=2))
    long = LimitState(blocked_until=T0 + timedelta(minutes=3))
    over = LimitState(blocked_until=T0 - timedelta(seconds=1))
    assert login_blocked([short, long, over, LimitState()], T0) == T0 + timedelta(minutes=3)
    assert login_blocked([over, LimitState()], T0) is None


def test_a_success_forgives_the_account_but_never_the_source() -> None:
    """Else an attacker would log in to their own account now and then to reset the count
    of the address they spray other accounts from."""
    for scope in ("account_source", "account", "device"):
        assert after_login_success(fail(LimitState(), scope, 9), scope) == LimitState()
    for scope in ("source", "subnet"):
        state = fail(LimitState(), scope, 9)
        assert after_login_success(state, scope) == state


def test_an_attempt_counts_against_source_subnet_account_source_and_account() -> None:
    keys = login_limit_keys(email_key="abc", source="203.0.113.7", device_id=None)
    assert keys == {
        "source": "source:203.0.113.7",
        "subnet": "subnet:203.0.113.0/24",
        "account_source": "account-source:abc:203.0.113.7",
        "account": "account:abc",
    }


def test_a_known_browser_counts_only_against_its_own_device_limit() -> None:
    """Others' failures (same address, same network, same account) cannot lock it out."""
    assert login_limit_keys(email_key="abc", source="203.0.113.7", device_id="d1") == {"device": "device:d1"}


def test_thirty_accounts_sprayed_from_one_source_are_delayed_after_the_free_failures() -> None:
    source = LimitState()
    answered = []
    for _account in range(30):
        if login_blocked([source, LimitState()], T0) is not None:
            answered.append(429)
            continue
        source = after_login_failure(source, T0, "source", POLICY)
        answered.append(401)
    assert answered == [401] * 5 + [429] * 25


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("198.51.100.23", "198.51.100.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.23", "198.51.100.0/24"),
        ("testclient", "testclient"),
    ],
)
def test_the_subnet_is_a_slash_24_or_a_slash_64(address: str, network: str) -> None:
    assert source_network(address) == network


@pytest.mark.parametrize("password", ["kort", " " * 12, "x" * 201])
def test_weak_or_odd_passwords_are_refused(password: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_new_password(password)
    assert refused.value.field == "password"


def test_a_long_passphrase_is_fine() -> None:
    assert check_new_password("drie kopjes thee") == "drie kopjes thee"
