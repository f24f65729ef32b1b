"""The pixel's hit log: every pixel hit with a valid token is appended to the `pixel_hit`
table by group commit (hits that arrive while one COPY is under way go together in the
next one), and the GIF goes out after that commit. Judging the hit, the first open, the open
record and its event are the hit processor's (services/tracking/hit_processor.py).

No answered hit lives only in memory. When PostgreSQL does not take a group (away, slow past
the record timeout, or any other failure), the group is appended to a local journal and
fsync'd before the GIF goes out; the journal is written to `pixel_hit` when PostgreSQL is
back, and at the next start after a crash. Each hit gets an id here, in its group, which
becomes its open record's id: a hit both committed and journaled (a commit whose answer was
lost) is still one open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import asyncpg
from asyncpg.pgproto import pgproto
from prometheus_client import Gauge, Histogram

from shared.db import DedicatedConnection
from shared.ids import time_ordered_ids
from shared.logging import get_logger
from shared.tracking_tokens import TrackingToken

log = get_logger(__name__)

PIXEL_HITS_WAITING = Gauge(
    "meer_tracking_pixel_hits_waiting", "Pixel hits in memory, neither committed nor journaled yet (not answered)."
)
PIXEL_HITS_JOURNALED = Gauge(
    "meer_tracking_pixel_hits_journaled",
    "Answered pixel hits kept in the local journal until PostgreSQL takes them (grows while it is away).",
)
PIXEL_BATCH_SIZE = Histogram(
    "meer_tracking_pixel_batch_size",
    "Pixel hits written per transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

NOTIFY_CHANNEL = "pixel_hit"
"""Committing hits notifies the hit processors on this channel (a statement trigger on
pixel_hit, so a COPY notifies too); they poll as well."""

_COLUMNS = ("id", "delivery_id", "participant_id", "org_id", "day", "token_sent_at", "received_at", "signal_bits")

# A replayed journal may hold hits whose commit did happen (an answer lost to the timeout):
# those are skipped by id. New hits have new ids and go by COPY, which takes no ON CONFLICT.
_INSERT_HITS = f"""
    INSERT INTO pixel_hit ({", ".join(_COLUMNS)})
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::integer[], $6::bigint[],
                         $7::timestamptz[], $8::smallint[])
    ON CONFLICT (id) DO NOTHING
"""  # noqa: S608 - constant column names, no input

Hit = tuple[TrackingToken, int, datetime]
"""A pixel fetch with a valid open token, as the pixel hands it over: the token's claims, the
request's signal bits (no IP, no user agent) and when it came."""

HitRow = tuple[UUID, UUID, UUID, UUID, int, int, datetime, int]
"""A hit as a pixel_hit row (and a journal line): its id first, then the columns of _COLUMNS."""


def new_hit_ids(count: int) -> list[UUID]:
    """Ids for a group of hits: time-ordered (an open record keeps its hit's id, and
    open_record only grows), made together (a uuid4() per hit costs a system call and a
    slower constructor, on every open)."""
    return time_ordered_ids(count, make=pgproto.UUID)


def hit_rows(hits: Sequence[Hit]) -> list[HitRow]:
    """The rows of a group of hits, each with a new id."""
    return [
        (hit_id, token.delivery_id, token.participant_id, token.org_id, token.day, token.sent_at, received_at, bits)
        for hit_id, (token, bits, received_at) in zip(new_hit_ids(len(hits)), hits, strict=True)
    ]


class HitNotKept(Exception):
    """Neither PostgreSQL nor the journal took the hit (the disk failed too)."""


async def append_hits(connection: asyncpg.Connection, rows: Sequence[HitRow]) -> None:
    """Append new hits to pixel_hit with one COPY (its own transaction): the cheapest way
    in, as every open of every mail passes here."""
    await connection.copy_records_to_table("pixel_hit", records=rows, columns=_COLUMNS)


async def insert_hits(connection: asyncpg.Connection, rows: Sequence[HitRow]) -> None:
    """Write hits that may be there already (a replayed journal) in one statement."""
    columns = list(zip(*rows, strict=True))
    await connection.execute(_INSERT_HITS, *[list(column) for column in columns])


class HitJournal:
    """Append-only files of answered hits PostgreSQL did not take, fsync'd before the GIF
    goes out. One file per outage and process, locked (flock) while it is written, so a
    replay (in this process or, after a crash, the next) takes only files nobody writes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None
        self._lock = asyncio.Lock()
        self._count = 0
        PIXEL_HITS_JOURNALED.set_function(lambda: self._count)

    @property
    def writing(self) -> bool:
        """A journal file is open for appends (an outage is, or was lately, under way)."""
        return self._file is not None

    @property
    def count(self) -> int:
        """Hits in the journal, not yet replayed (this process's view)."""
        return self._count

    async def append(self, rows: Sequence[HitRow]) -> None:
        """Append and fsync; the hits are durable when this returns."""
        lines = b"".join(_encode(row) for row in rows)
        async with self._lock:
            await asyncio.to_thread(self._append, lines)
            self._count += len(rows)

    def _append(self, lines: bytes) -> None:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"hits-{time.time_ns()}-{os.getpid()}.journal"
            file = path.open("ab")
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            self._file = file
            _fsync_directory(self.directory)
        self._file.write(lines)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def seal(self) -> None:
        """Close the file being written: from now on it is for replay."""
        async with self._lock:
            file, self._file = self._file, None
            if file is not None:
                file.close()

    def sealed_files(self) -> list[Path]:
        """Journal files nobody writes, oldest first."""
        if not self.directory.exists():
            return []
        found = []
        for path in sorted(self.directory.glob("hits-*.journal")):
            if self._file is not None and Path(self._file.name) == path:
                continue
            with path.open("rb") as probe:
                try:
                    fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process still writes it
                fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
            found.append(path)
        return found

    @staticmethod
    def read(path: Path) -> list[HitRow]:
        """The hits of a journal file; a torn last line (a crash mid-write, before its fsync
        returned and so before its GIF went out) is skipped."""
        rows = []
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError, TypeError, IndexError):
                rows.append(_decode(line))
        return rows

    def remove(self, path: Path, replayed: int) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        self._count = max(0, self._count - replayed)

    def count_leftovers(self) -> None:
        """Count the hits of files a previous process left (at start)."""
        self._count = sum(len(self.read(path)) for path in self.sealed_files())


def _encode(row: HitRow) -> bytes:
    hit_id, delivery, participant, org, day, sent_at, received_at, bits = row
    values = [str(hit_id), str(delivery), str(participant), str(org), day, sent_at, received_at.isoformat(), bits]
    return json.dumps(values, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes) -> HitRow:
    values: list[Any] = json.loads(line)
    return (
        UUID(values[0]),
        UUID(values[1]),
        UUID(values[2]),
        UUID(values[3]),
        int(values[4]),
        int(values[5]),
        datetime.fromisoformat(values[6]),
        int(values[7]),
    )


def _fsync_directory(directory: Path) -> None:
    """A new or removed file name is durable only once its directory is fsync'd."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class HitLog:
    """Appends pixel hits in groups; a hit's future resolves once it is durable: "logged"
    (committed to pixel_hit) or "journaled" (fsync'd locally while PostgreSQL is away)."""

    def __init__(
        self,
        database_url: str,
        journal: HitJournal,
        *,
        batch_max: int,
        record_timeout_s: float,
        replay_interval_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self.journal = journal
        self.batch_max = batch_max
        self.record_timeout_s = record_timeout_s
        self.replay_interval_s = replay_interval_s
        self.monotonic = monotonic
        self._waiting: list[tuple[Hit, asyncio.Future[str]]] = []
        self._wake = asyncio.Event()
        self._replay_wake = asyncio.Event()
        # While PostgreSQL failed lately, groups go to the journal without trying it first,
        # so mail clients do not each wait for a refused or hanging connection.
        self._journal_until = 0.0
        self._outage_attempts = 0
        PIXEL_HITS_WAITING.set_function(lambda: len(self._waiting))

    def submit(self, hit: Hit) -> asyncio.Future[str]:
        """Queue one hit; the future resolves when it is durable ("logged" or "journaled")
        and fails with HitNotKept when neither PostgreSQL nor the journal took it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((hit, future))
        self._wake.set()
        return future

    async def run_writer(self) -> None:
        """One writer: takes whatever hits wait, makes them durable as one group, repeats."""
        connection = DedicatedConnection(self.database_url)
        try:
            while True:
                if not self._waiting:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._waiting = self._waiting[: self.batch_max], self._waiting[self.batch_max :]
                outcome = await self._make_durable(connection, hit_rows([hit for hit, _ in batch]))
                for _, future in batch:
                    if future.done():
                        continue
                    if outcome is None:
                        future.set_exception(HitNotKept())
                    else:
                        future.set_result(outcome)
        finally:
            await connection.close()

    async def _make_durable(self, connection: DedicatedConnection, rows: list[HitRow]) -> str | None:
        if self.monotonic() >= self._journal_until:
            try:
                async with asyncio.timeout(self.record_timeout_s):
                    await self._append(connection, rows)
            except Exception as error:  # noqa: BLE001 - whatever PostgreSQL did, the journal keeps the hits
                # A statement cut off by the timeout may still commit: the journal's copy then
                # is a duplicate by id, which the processor records once.
                await connection.close()
                self._outage_attempts += 1
                self._journal_until = self.monotonic() + min(0.25 * 2**self._outage_attempts, 5.0)
                if self._outage_attempts in (1, 10) or self._outage_attempts % 100 == 0:
                    log.warning(
                        "pixel hits go to the local journal: PostgreSQL does not take them",
                        error=type(error).__name__,
                        attempts=self._outage_attempts,
                    )
            else:
                if self._outage_attempts:
                    self._outage_attempts = 0
                    log.info("PostgreSQL takes pixel hits again; the journal is replayed")
                    await self.journal.seal()
                    self._replay_wake.set()
                return "logged"
        try:
            await self.journal.append(rows)
        except OSError as error:
            log.error("pixel hits not kept: the journal cannot be written", hits=len(rows), error=type(error).__name__)
            return None
        return "journaled"

    async def _append(self, connection: DedicatedConnection, rows: list[HitRow]) -> None:
        PIXEL_BATCH_SIZE.observe(len(rows))
        await append_hits(await connection.get(), rows)

    async def run_replay(self) -> None:
        """Writes sealed journal files to pixel_hit: at start (what a crashed process left)
        and whenever PostgreSQL came back; deletes each file once its hits committed."""
        await asyncio.to_thread(self.journal.count_leftovers)
        connection = DedicatedConnection(self.database_url)
        try:
            while True:
                try:
                    await self.replay_sealed(connection)
                except Exception as error:  # noqa: BLE001 - the files stay; try again later
                    await connection.close()
                    log.info("journal not replayed yet", error=type(error).__name__)
                self._replay_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._replay_wake.wait(), timeout=self.replay_interval_s)
        finally:
            await connection.close()

    async def replay_sealed(self, connection: DedicatedConnection) -> int:
        """Replay every sealed journal file; returns how many hits were written."""
        if self.monotonic() < self._journal_until:
            return 0  # PostgreSQL failed a moment ago: do not add to its troubles
        if self.journal.writing:
            # No hit may have come since PostgreSQL returned: the file being written is
            # closed here, once PostgreSQL answers, instead of by the next group's commit.
            await (await connection.get()).fetchval("SELECT 1")
            await self.journal.seal()
        replayed = 0
        for path in await asyncio.to_thread(self.journal.sealed_files):
            rows = await asyncio.to_thread(self.journal.read, path)
            for start in range(0, len(rows), self.batch_max):
                await insert_hits(await connection.get(), rows[start : start + self.batch_max])
            await asyncio.to_thread(self.journal.remove, path, len(rows))
            replayed += len(rows)
            log.info("journaled pixel hits written to PostgreSQL", hits=len(rows))
        return replayed
