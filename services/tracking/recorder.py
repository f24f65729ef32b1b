"""Group commit for pixel hits: hits that arrive while one transaction is being written
wait for the next, so a single commit carries many opens and their outbox rows.

Every hit still has its open record and its outbox row in the same transaction, and the
pixel is normally answered after that transaction committed. A mail client never waits
longer than the confirm timeout, though: when PostgreSQL is slow or away the GIF goes out
first and the hit stays queued in memory (bounded) until it can be written, so an outage
delays opens instead of losing them; only a process that stops during the outage loses
what it still holds. Under light load a group holds one hit. The writers are background
loops of the service, each with a PostgreSQL connection of its own, so a group costs four
round trips (begin, claim-and-read, write, commit) and no pool checkout, ping or ORM work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Gauge, Histogram

from services.tracking import storage
from services.tracking.domain import HitFacts, JudgeRules, first_open_flags, judge_hit, mail_facts
from shared.db import POSTGRES_UNREACHABLE, DedicatedConnection, utcnow
from shared.events import Envelope, MailOpened
from shared.logging import get_logger
from shared.tracking_tokens import TrackingToken

log = get_logger(__name__)

PIXEL_HITS_WAITING = Gauge(
    "meer_tracking_pixel_hits_waiting", "Pixel hits in memory, not yet committed (grows while PostgreSQL is away)."
)
PIXEL_BATCH_SIZE = Histogram(
    "meer_tracking_pixel_batch_size",
    "Pixel hits written per transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


@dataclass(frozen=True)
class PixelHit:
    """A pixel fetch with a valid open token, waiting to be judged and written."""

    token: TrackingToken
    facts: HitFacts
    received_at: datetime


@dataclass(frozen=True)
class RecordedOpen:
    """What was recorded for one hit."""

    first_open: bool
    likely_automated: bool


class PixelBufferFull(Exception):
    """So many hits wait for PostgreSQL that this one is not kept."""


class PixelHitUnconfirmed(Exception):
    """The hit's transaction did not confirm in time; it may still commit."""


class _DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached; the group was not committed and can be written later."""


class _NotCommitted(Exception):
    """The group failed before its commit was sent: it can be written again safely."""


class OpenRecorder:
    """Writes pixel hits in groups, one transaction per group, in arrival order."""

    def __init__(
        self,
        database_url: str,
        rules: JudgeRules,
        *,
        burst_window_s: float,
        batch_max: int,
        confirm_timeout_s: float,
        buffer_max: int = 50_000,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.database_url = database_url
        self.rules = rules
        self.burst_window = timedelta(seconds=burst_window_s)
        self.batch_max = batch_max
        self.clock = clock
        # These commits bypass the service's sessions, so the outbox relay is told directly.
        self.on_commit = on_commit
        self.confirm_timeout_s = confirm_timeout_s
        self.buffer_max = buffer_max
        self._waiting: list[tuple[PixelHit, asyncio.Future[RecordedOpen]]] = []
        self._wake = asyncio.Event()
        # Every unanswered hit with its deadline, in submit order (so deadlines ascend).
        self._unanswered: deque[tuple[float, asyncio.Future[RecordedOpen]]] = deque()
        PIXEL_HITS_WAITING.set_function(lambda: len(self._waiting))

    def submit(self, hit: PixelHit) -> asyncio.Future[RecordedOpen]:
        """Queue one hit; the future resolves once its transaction committed (or fails).

        A future that fails with PixelHitUnconfirmed when its transaction has not confirmed
        within confirm_timeout_s (see `run_watchdog`: one timer for all hits, not one per hit);
        the write of the hit goes on regardless.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RecordedOpen] = loop.create_future()
        if len(self._waiting) >= self.buffer_max:
            future.set_exception(PixelBufferFull())
            return future
        self._waiting.append((hit, future))
        self._unanswered.append((loop.time() + self.confirm_timeout_s, future))
        self._wake.set()
        return future

    async def run_watchdog(self) -> None:
        """Fails the futures of hits waiting longer than confirm_timeout_s, so a slow or stuck
        database never keeps a mail client waiting."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.25, self.confirm_timeout_s / 4))
            now = loop.time()
            while self._unanswered and (self._unanswered[0][1].done() or self._unanswered[0][0] <= now):
                _, future = self._unanswered.popleft()
                if not future.done():
                    future.set_exception(PixelHitUnconfirmed())

    async def run_writer(self) -> None:
        """One writer: takes whatever hits wait, writes them as one group, repeats.

        While PostgreSQL is away the group goes back to the front of the queue and is
        written when it returns: the mail clients got their GIF from the watchdog, and
        their opens are recorded late instead of never (unless the process stops first).
        """
        connection = DedicatedConnection(self.database_url)
        outage_attempts = 0
        try:
            while True:
                if not self._waiting:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._waiting = self._waiting[: self.batch_max], self._waiting[self.batch_max :]
                hits = [hit for hit, _ in batch]
                try:
                    results = await self._write_with_one_retry(connection, hits)
                except _DatabaseUnavailable as unavailable:
                    self._waiting[:0] = batch
                    outage_attempts += 1
                    if outage_attempts in (1, 10) or outage_attempts % 100 == 0:
                        log.warning(
                            "pixel hits wait for PostgreSQL",
                            waiting=len(self._waiting),
                            error=type(unavailable.__cause__).__name__,
                            attempts=outage_attempts,
                        )
                    await asyncio.sleep(min(0.1 * 2**outage_attempts, 2.0))
                    continue
                except Exception as error:  # noqa: BLE001 - every waiting hit learns of it
                    log.warning("pixel hits not recorded", hits=len(hits), error=type(error).__name__)
                    await connection.close()
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                if outage_attempts:
                    log.info("PostgreSQL is back; waiting pixel hits are recorded", waiting=len(self._waiting))
                    outage_attempts = 0
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            await connection.close()
            if self._waiting:
                log.warning("pixel hits not recorded at shutdown", hits=len(self._waiting))

    async def _write_with_one_retry(self, connection: DedicatedConnection, hits: list[PixelHit]) -> list[RecordedOpen]:
        # A connection that PostgreSQL closed (a restart) shows only when used: the group
        # was not committed then, so it is written once more on a new connection.
        for attempt in (1, 2):
            try:
                open_connection = await connection.get()
            except POSTGRES_UNREACHABLE as error:
                raise _DatabaseUnavailable() from error
            try:
                return await self._write(open_connection, hits)
            except _NotCommitted as error:
                await connection.close()
                cause = error.__cause__
                if not isinstance(cause, POSTGRES_UNREACHABLE):
                    raise cause or error from None
                if attempt == 2:
                    raise _DatabaseUnavailable() from cause
        raise AssertionError("unreachable")

    async def _write(self, connection: asyncpg.Connection, hits: list[PixelHit]) -> list[RecordedOpen]:
        PIXEL_BATCH_SIZE.observe(len(hits))
        delivery_ids = [hit.token.delivery_id for hit in hits]
        transaction = connection.transaction()
        try:
            await transaction.start()
            known = await storage.claim_and_read_mails(
                connection=connection,
                delivery_ids=delivery_ids,
                opened_at=hits[0].received_at,
                since=self.clock() - self.burst_window,
            )
            newly_opened = {delivery_id for delivery_id, mail in known.items() if mail.first_open}
            opens = []
            for hit, first_open in zip(hits, first_open_flags(delivery_ids, newly_opened), strict=True):
                mail = known[hit.token.delivery_id]
                facts = mail_facts(
                    hit_at=hit.received_at,
                    sent_at=mail.sent_at,
                    token_sent_at=hit.token.sent_at,
                    recent_links=mail.recent_links,
                )
                verdict = judge_hit(hit.facts, facts, self.rules, kind="open")
                event = Envelope.wrap(
                    MailOpened(
                        delivery_id=hit.token.delivery_id,
                        day=hit.token.day,
                        opened_at=hit.received_at,
                        first_open=first_open,
                        likely_automated=verdict.likely_automated,
                        signals=verdict.signals,
                    ),
                    org_id=hit.token.org_id,
                    participant_id=hit.token.participant_id,
                    occurred_at=hit.received_at,
                )
                opens.append(
                    storage.OpenToStore(
                        token=hit.token, opened_at=hit.received_at, first_open=first_open, verdict=verdict, event=event
                    )
                )
            await storage.add_opens_with_events(connection=connection, opens=opens)
        except Exception as error:
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise _NotCommitted() from error
        await transaction.commit()
        self.on_commit()
        return [RecordedOpen(item.first_open, item.verdict.likely_automated) for item in opens]
