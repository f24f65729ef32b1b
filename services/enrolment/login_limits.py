"""Login throttling rules, free of I/O: which limits an attempt counts against (source, subnet,
account and source, account, or a known device), whether it must wait, and how failures and a
success change a limit."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

LimitScope = Literal["source", "subnet", "account_source", "account", "device"]
"""What a login limit counts failures of: one client address, its /24 (IPv4) or /64 (IPv6)
network, one account from one address, one account from every browser it does not know,
or one browser that logged in to that account before (its device cookie)."""


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed logins each scope gets in a window before delays start, and how the
    delays grow: first_delay, doubled with every further failure, at most longest_delay."""

    failures_per_source: int = 10
    failures_per_subnet: int = 30
    failures_per_account_source: int = 5
    failures_per_account: int = 50
    failures_per_device: int = 5
    window: timedelta = timedelta(hours=1)
    first_delay: timedelta = timedelta(seconds=1)
    longest_delay: timedelta = timedelta(minutes=15)

    def free_failures(self, scope: LimitScope) -> int:
        """Failures allowed in this scope before each further one brings a delay."""
        return {
            "source": self.failures_per_source,
            "subnet": self.failures_per_subnet,
            "account_source": self.failures_per_account_source,
            "account": self.failures_per_account,
            "device": self.failures_per_device,
        }[scope]


@dataclass(frozen=True)
class LimitState:
    """Failed logins of one scope in the current window, and until when it must wait."""

    window_started_at: datetime | None = None
    failures: int = 0
    blocked_until: datetime | None = None


def source_network(address: str) -> str:
    """The network an address belongs to for the subnet limit: /24 for IPv4, /64 for IPv6
    (an IPv4-mapped IPv6 address counts as IPv4); anything else stands for itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def login_limit_keys(*, email_key: str, source: str, device_id: str | None) -> dict[LimitScope, str]:
    """The limits one attempt counts against. A browser with a valid device cookie for this
    account is held only to its own limit: failures of others cannot lock it out."""
    if device_id is not None:
        return {"device": f"device:{device_id}"}
    return {
        "source": f"source:{source}",
        "subnet": f"subnet:{source_network(source)}",
        "account_source": f"account-source:{email_key}:{source}",
        "account": f"account:{email_key}",
    }


def login_blocked(states: Iterable[LimitState], now: datetime) -> datetime | None:
    """None when this attempt may go ahead; else until when it must wait (the latest block)."""
    waits = [s.blocked_until for s in states if s.blocked_until is not None and now < s.blocked_until]
    return max(waits) if waits else None


def after_login_failure(state: LimitState, now: datetime, scope: LimitScope, policy: LoginPolicy) -> LimitState:
    """One more failure in this scope; past the free ones each brings a doubled delay."""
    if state.window_started_at is None or now >= state.window_started_at + policy.window:
        state = LimitState(window_started_at=now, failures=0, blocked_until=state.blocked_until)
    failures = state.failures + 1
    over = failures - policy.free_failures(scope)
    if over <= 0:
        return replace(state, failures=failures)
    # min() first on the exponent, so a long run of failures cannot overflow the timedelta.
    delay = min(policy.first_delay * 2 ** min(over - 1, 40), policy.longest_delay)
    return replace(state, failures=failures, blocked_until=now + delay)


def after_login_success(state: LimitState, scope: LimitScope) -> LimitState:
    """A success forgives the account's (and the device's) failures, never a source's: an
    attacker's own account must not reset the count of the address they spray from."""
    return LimitState() if scope in ("account_source", "account", "device") else state
