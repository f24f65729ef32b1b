"""The pixel's promise to mail clients: a hit is answered only once it is durable, and when
PostgreSQL does not take it, the local journal does (fsync'd, read back after a crash)."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from uuid import UUID, uuid4

from services.tracking.domain import (
    REMEMBERED_USER_AGENT_MAX,
    HitFacts,
    _remembered_signal_bits,
    read_hit_facts,
    request_signal_bits,
    request_signals,
    signal_bits,
    signals_from_bits,
)
from services.tracking.recorder import Hit, HitJournal, HitLog, hit_rows, new_hit_ids
from shared.db import utcnow
from shared.tracking_tokens import TrackingToken

# Nothing listens on port 1: every connection is refused, as when PostgreSQL is stopped.
UNREACHABLE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


def hit() -> Hit:
    token = TrackingToken.model_validate({"k": "open", "d": uuid4(), "p": uuid4(), "o": uuid4(), "n": 3, "t": 17})
    return (token, 5, utcnow())


async def test_hits_postgres_refuses_are_journaled_before_they_are_answered(tmp_path: Path) -> None:
    journal = HitJournal(tmp_path)
    log = HitLog(UNREACHABLE, journal, batch_max=10, record_timeout_s=5)
    writer = asyncio.create_task(log.run_writer())
    try:
        hits = [hit() for _ in range(3)]
        outcomes = await asyncio.gather(*[log.submit(one) for one in hits])
    finally:
        writer.cancel()
    assert outcomes == ["journaled"] * 3
    await journal.seal()
    (path,) = journal.sealed_files()
    rows = HitJournal.read(path)
    assert [row[1:] for row in rows] == [row[1:] for row in hit_rows(hits)], "every hit, exactly as it would be logged"
    assert len({row[0] for row in rows}) == 3, "each with an id of its own"
    assert journal.count == 3


async def test_a_torn_last_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    journal = HitJournal(tmp_path)
    first, second = hit_rows([hit(), hit()])
    await journal.append([first, second])
    await journal.seal()
    (path,) = journal.sealed_files()
    with path.open("ab") as file:
        file.write(b'["not-finished",')  # a crash in the middle of a write, before its fsync returned
    assert HitJournal.read(path) == [first, second]


async def test_a_file_another_process_still_writes_is_not_replayed(tmp_path: Path) -> None:
    busy = tmp_path / "hits-1-1.journal"
    busy.write_bytes(b"")
    with busy.open("ab") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        # flock is per open file: this probe is refused as another process's would be.
        assert HitJournal(tmp_path).sealed_files() == []
    assert HitJournal(tmp_path).sealed_files() == [busy]


async def test_leftovers_of_a_crashed_process_are_counted_at_start(tmp_path: Path) -> None:
    crashed = HitJournal(tmp_path)
    await crashed.append(hit_rows([hit() for _ in range(4)]))
    restarted = HitJournal(tmp_path)
    await crashed.seal()  # what the kernel does to a dead process's lock
    restarted.count_leftovers()
    assert restarted.count == 4


def test_signal_bits_keep_the_request_signals_and_nothing_else() -> None:
    facts = HitFacts(method="GET", user_agent="Mozilla/5.0", prefetch=True)
    signals = request_signals(facts)
    assert signals == {"privacy_proxy_user_agent", "prefetch"}
    assert signals_from_bits(signal_bits(signals)) == signals
    assert signals_from_bits(0) == set()
    assert signal_bits(signals) < 2**15, "fits the smallint column"


def test_a_group_of_hits_gets_distinct_time_ordered_uuids() -> None:
    ids = new_hit_ids(500)
    assert len(set(ids)) == 500
    assert all(isinstance(one, UUID) and one.version == 7 and one.variant == "specified in RFC 4122" for one in ids)
    assert new_hit_ids(0) == []


def test_the_remembered_signal_bits_are_the_request_signals() -> None:
    thunderbird = b"Mozilla/5.0 (Windows NT 10.0) Thunderbird/128.0"
    for headers in (
        [(b"User-Agent", b"Mozilla/5.0"), (b"Sec-Purpose", b"prefetch;prerender")],
        [(b"host", b"example.org")],
        [(b"user-agent", b"  ")],
        [(b"user-agent", thunderbird)],
        [(b"user-agent", b"curl/8.5"), (b"x-moz", b"prefetch")],
    ):
        expected = signal_bits(request_signals(read_hit_facts("GET", headers)))
        assert request_signal_bits(headers) == expected
        assert request_signal_bits(headers) == expected, "and again, from the cache"


def test_a_huge_user_agent_is_judged_but_not_remembered() -> None:
    headers = [(b"user-agent", b"Mozilla/5.0 " + b"x\r\n\x00" * 25_000)]
    assert len(headers[0][1]) > REMEMBERED_USER_AGENT_MAX
    kept = _remembered_signal_bits.cache_info().currsize
    assert request_signal_bits(headers) == signal_bits(request_signals(read_hit_facts("GET", headers)))
    assert _remembered_signal_bits.cache_info().currsize == kept
