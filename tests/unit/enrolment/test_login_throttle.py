"""Login throttling: a rate per address, and a lock after failures in a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.enrolment.domain import (
    EnrolmentRefused,
    LoginPolicy,
    LoginThrottleState,
    after_login_failure,
    after_login_success,
    check_new_password,
    count_attempt,
    login_blocked,
)

POLICY = LoginPolicy(
    attempts_per_window=3, window=timedelta(minutes=1), failures_before_lock=3, lock_for=timedelta(minutes=15)
)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_failures_in_a_row_lock_the_address_until_a_stated_time() -> None:
    state = LoginThrottleState()
    for minute in range(3):
        now = T0 + timedelta(minutes=minute * 2)
        assert login_blocked(state, now, POLICY) is None
        state = after_login_failure(count_attempt(state, now, POLICY), now, POLICY)
    locked_at = T0 + timedelta(minutes=4)
    blocked = login_blocked(state, locked_at + timedelta(minutes=1), POLICY)
    assert blocked is not None and blocked.locked and blocked.until == locked_at + timedelta(minutes=15)
    assert login_blocked(state, locked_at + timedelta(minutes=15), POLICY) is None


def test_a_success_resets_the_failures() -> None:
    state = LoginThrottleState()
    for _ in range(2):
        state = after_login_failure(count_attempt(state, T0, POLICY), T0, POLICY)
    state = after_login_success(state)
    later = T0 + timedelta(minutes=5)
    state = after_login_failure(count_attempt(state, later, POLICY), later, POLICY)
    assert state.locked_until is None and state.consecutive_failures == 1


def test_too_many_attempts_in_one_window_wait_for_the_next_window() -> None:
    state = LoginThrottleState()
    for second in range(3):
        now = T0 + timedelta(seconds=second)
        state = after_login_success(count_attempt(state, now, POLICY))
    blocked = login_blocked(state, T0 + timedelta(seconds=10), POLICY)
    assert blocked is not None and not blocked.locked and blocked.until == T0 + timedelta(minutes=1)
    assert login_blocked(state, T0 + timedelta(minutes=1), POLICY) is None
    assert count_attempt(state, T0 + timedelta(minutes=1), POLICY).attempts == 1


@pytest.mark.parametrize("password", ["kort", " " * 12, "x" * 201])
def test_weak_or_odd_passwords_are_refused(password: str) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        check_new_password(password)
    assert refused.value.field == "password"


def test_a_long_passphrase_is_fine() -> None:
    assert check_new_password("drie kopjes thee") == "drie kopjes thee"
