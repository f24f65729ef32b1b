"""How often the public sign-up form may be used, per source and per mailbox (pure rules).

The form sends a branded confirmation mail to whatever address is typed in, so without a
limit it is a mail cannon: one client can send thousands, and plus-addressing and the forms
of other organisations multiply what one mailbox receives. Two fixed-window counters, both
kept in PostgreSQL (they hold across restarts and replicas), bound that:

- per source: the client's IPv4 address, or its IPv6 /64 (one household or server);
- per mailbox: the address normalised (lower case, no `+tag`), across all organisations.

Counter keys are SHA-256 digests: neither the address nor the IP is stored.

A counter is stored per fixed window, but the limit is applied to a sliding window: the
previous window's count, weighted by how much of it still overlaps the last window length,
plus the current one. With fixed windows alone, a burst that straddles a window boundary
would get twice the limit through.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

LimitKind = Literal["source", "mailbox"]
IPV6_SOURCE_PREFIX = 64


@dataclass(frozen=True)
class SignupLimits:
    """How many sign-ups one source and one mailbox may make in their windows."""

    per_source: int = 10
    source_window: timedelta = timedelta(hours=1)
    per_mailbox: int = 3
    mailbox_window: timedelta = timedelta(days=1)

    def limit(self, kind: LimitKind) -> int:
        """The number of sign-ups allowed per window of this kind."""
        return self.per_source if kind == "source" else self.per_mailbox

    def window(self, kind: LimitKind) -> timedelta:
        """The length of the window of this kind."""
        return self.source_window if kind == "source" else self.mailbox_window


def normalised_mailbox(email: str) -> str:
    """The mailbox behind an address: lower case, without a `+tag` in the local part."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local.split('+', 1)[0] or local}@{domain}"


def source_of(client_host: str | None) -> str:
    """The source a request counts against: the IPv4 address, or the IPv6 /64 network.

    An IPv4-mapped IPv6 address counts as its IPv4 address; a host that is not an IP
    address (a test client, a Unix socket) counts as itself.
    """
    if not client_host:
        return "unknown"
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return client_host.lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX), strict=False))
    return str(address)


def counter_key(kind: LimitKind, value: str) -> str:
    """The stored key of a counter: a digest, so the address or IP itself is not kept."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the fixed window that `now` falls in (windows are aligned to the epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    size = window.total_seconds()
    elapsed = (now - epoch).total_seconds()
    return epoch + timedelta(seconds=elapsed - elapsed % size)


def retry_after_s(now: datetime, window: timedelta) -> int:
    """Seconds until the current window ends (for Retry-After), at least one."""
    end = window_start(now, window) + window
    return max(1, int((end - now).total_seconds() + 0.999))


def sliding_count(*, current: int, previous: int, now: datetime, window: timedelta) -> float:
    """The number of sign-ups in the last window length ending at `now`.

    The previous fixed window is assumed to have been used evenly, so the part of it that
    still lies within the last window length counts proportionally.
    """
    elapsed = (now - window_start(now, window)) / window
    return current + previous * (1 - elapsed)


def over_limit(count: float, kind: LimitKind, limits: SignupLimits) -> bool:
    """Whether a sign-up that makes the (sliding) count `count` exceeds the limit."""
    return count > limits.limit(kind)
