"""Time-ordered ids (UUID version 7, RFC 9562) for rows that are only ever added.

A random (version 4) id lands anywhere in its primary-key index: once a table such as the
open records or a consumer's processed events outgrows memory, every insert and every
"seen before?" lookup reads a cold index page from disk (a morning burst measured waits of
up to 0.3 s per statement on a stack with five million opens). A version-7 id starts with
the millisecond it was made, so new ids go to the right-hand edge of the index, whose pages
stay in memory however large the table grows. The other 74 bits are random, so ids stay
unguessable and unique across processes.

Participant ids are version 7 too, although a participant is not a row that is only added:
every service indexes its opens, mails and dashboard rows by participant, and a morning's
opens come from participants enrolled in the last two months. With time-ordered participant
ids, those index entries sit together at the right-hand end instead of on a random page each
(a cold-cache morning burst measured the open inserts waiting on such page reads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from uuid import UUID


def _from_bytes(raw: bytes) -> UUID:
    return UUID(bytes=raw)


def time_ordered_ids(count: int, *, make: Callable[[bytes], UUID] = _from_bytes) -> list[UUID]:
    """`count` version-7 UUIDs of this millisecond, from one read of the system's random
    source. `make` builds each from its 16 bytes (an adapter may pass asyncpg's faster UUID)."""
    prefix = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    randomness = os.urandom(10 * count)
    ids: list[UUID] = []
    for start in range(0, 10 * count, 10):
        tail = bytearray(randomness[start : start + 10])
        tail[0] = 0x70 | (tail[0] & 0x0F)  # version 7
        tail[2] = 0x80 | (tail[2] & 0x3F)  # RFC 9562 variant
        ids.append(make(prefix + bytes(tail)))
    return ids


def uuid7() -> UUID:
    """One version-7 UUID (an event id, a row id)."""
    return time_ordered_ids(1)[0]
