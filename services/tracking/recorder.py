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
from uuid import UUID

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from services.tracking import storage
from services.tracking.domain import (
    HitFacts,
    JudgeRules,
    first_open_flags,
    judge_hit,
    mail_facts,
    was_sent_as_claimed,
)
from services.tracking.tables import OpenRecord
from shared.db import POSTGRES_UNREACHABLE, Database, DedicatedConnection, utcnow
from shared.events import Envelope, MailOpened
from shared.logging import get_logger
from shared.outbox import add_to_outbox
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
    held: bool = False
    """The mail was not seen sent (yet): the hit is held, not published (see release_held_opens)."""


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
        transaction = connection.transaction()
        try:
            await transaction.start()
            known = await storage.claim_and_read_mails(
                connection=connection,
                tokens=[hit.token for hit in hits],
                opened_at=hits[0].received_at,
                since=self.clock() - self.burst_window,
            )
            sent = [
                was_sent_as_claimed(
                    known[hit.token.delivery_id].sent_to,
                    participant_id=hit.token.participant_id,
                    org_id=hit.token.org_id,
                )
                for hit in hits
            ]
            newly_opened = {delivery_id for delivery_id, mail in known.items() if mail.first_open}
            first_opens = iter(
                first_open_flags(
                    [hit.token.delivery_id for hit, ok in zip(hits, sent, strict=True) if ok], newly_opened
                )
            )
            opens, held, results = [], [], []
            for hit, was_sent in zip(hits, sent, strict=True):
                mail = known[hit.token.delivery_id]
                facts = mail_facts(
                    hit_at=hit.received_at,
                    sent_at=mail.sent_at,
                    token_sent_at=hit.token.sent_at,
                    recent_links=mail.recent_links,
                )
                verdict = judge_hit(hit.facts, facts, self.rules, kind="open")
                if not was_sent:
                    held.append(storage.HitToHold(token=hit.token, opened_at=hit.received_at, verdict=verdict))
                    results.append(RecordedOpen(first_open=False, likely_automated=verdict.likely_automated, held=True))
                    continue
                first_open = next(first_opens)
                results.append(RecordedOpen(first_open=first_open, likely_automated=verdict.likely_automated))
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
            await storage.hold_opens(connection=connection, hits=held)
        except Exception as error:
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise _NotCommitted() from error
        await transaction.commit()
        self.on_commit()
        return results


HELD_OPENS = Counter(
    "meer_tracking_held_opens_total",
    "Pixel hits on mails not seen sent: released once mail.sent came, or expired without it.",
    ["outcome"],
)
RELEASE_BATCH = 500


async def release_held_opens(database: Database, *, now: datetime, retention: timedelta) -> int:
    """Turn held hits whose mail is now seen sent into opens (with their mail.opened events),
    and delete those held longer than the retention; returns how many were released."""
    async with database.session() as session:
        held = await storage.take_releasable_held_opens(session=session, limit=RELEASE_BATCH)
        earliest: dict[UUID, datetime] = {}
        for item in held:
            earliest.setdefault(item.delivery_id, item.opened_at)
        newly_opened = await storage.claim_first_opens(session=session, opened_at=earliest)
        flags = first_open_flags([item.delivery_id for item in held], newly_opened)
        for item, first_open in zip(held, flags, strict=True):
            session.add(
                OpenRecord(
                    delivery_id=item.delivery_id,
                    participant_id=item.participant_id,
                    org_id=item.org_id,
                    day=item.day,
                    opened_at=item.opened_at,
                    first_open=first_open,
                    likely_automated=item.likely_automated,
                    signals=list(item.signals),
                )
            )
            add_to_outbox(
                session,
                Envelope.wrap(
                    MailOpened(
                        delivery_id=item.delivery_id,
                        day=item.day,
                        opened_at=item.opened_at,
                        first_open=first_open,
                        likely_automated=item.likely_automated,
                        signals=tuple(item.signals),
                    ),
                    org_id=item.org_id,
                    participant_id=item.participant_id,
                    occurred_at=item.opened_at,
                ),
            )
        expired = await storage.delete_expired_held_opens(session=session, opened_before=now - retention)
        await session.commit()
    if held:
        HELD_OPENS.labels("released").inc(len(held))
    if expired:
        HELD_OPENS.labels("expired").inc(expired)
        log.info("held opens expired without their mail being seen sent", count=expired)
    return len(held)
