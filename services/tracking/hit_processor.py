"""The hit processor: turns the pixel's hit log into opens, in a process of its own.

    python -m services.tracking.hit_processor

It claims a batch of `pixel_hit` rows with `FOR UPDATE SKIP LOCKED` (several processors may
run at once, each takes other hits), and in one transaction judges them (a person or
probably a machine), claims each mail's first open, writes the open records and their
`mail.opened` outbox rows, and deletes the hits. A processor killed mid-batch leaves its
hits in the log for the next. Hits on mails tracking has not seen sent are held
(`held_open`) and released here once their `mail.sent` is in. It publishes its own outbox
rows (woken by its own commits; the relay lock keeps one relay publishing per database
at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import uvicorn
import uvloop
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking import storage
from services.tracking.domain import (
    JudgeRules,
    first_open_flags,
    judge_signals,
    mail_facts,
    signals_from_bits,
    was_sent_as_claimed,
)
from services.tracking.recorder import NOTIFY_CHANNEL
from services.tracking.settings import TrackingSettings
from services.tracking.tables import HeldOpen
from shared.db import Database, asyncpg_dsn, column_arrays, utcnow
from shared.events import Envelope, MailOpened
from shared.kafka import kafka_security
from shared.logging import configure_logging, get_logger
from shared.metrics import metrics_app
from shared.outbox import OutboxRelay, add_many_to_outbox
from shared.runtime import settle_startup_objects, wait_for_dependencies
from shared.settings import read_settings

log = get_logger(__name__)

OPENS = Counter("meer_tracking_opens_total", "Pixel hits judged by the hit processor, by outcome.", ["outcome"])
HELD_OPENS = Counter(
    "meer_tracking_held_opens_total",
    "Pixel hits on mails not seen sent: released once mail.sent came, or expired without it.",
    ["outcome"],
)
HIT_BATCH_SECONDS = Histogram(
    "meer_tracking_hit_batch_seconds",
    "One batch of the hit log, from its claim to its commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HIT_AGE_SECONDS = Histogram(
    "meer_tracking_hit_age_at_commit_seconds",
    "Per batch, how long its oldest hit had waited in the hit log when the batch committed: "
    "the processor's share of a pixel fetch's way to the coach's dashboard.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
RELEASE_BATCH = 500

# In id order: a hit's id is a version-7 UUID made in the millisecond of the hit, so the
# primary key serves the claim and the log needs no second index to append to.
_CLAIM_HITS = text("""
    SELECT id, delivery_id, participant_id, org_id, day, token_sent_at, received_at, signal_bits
      FROM pixel_hit
     ORDER BY id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
""")
# A hit already turned into an open or held (its journal copy, replayed after the commit
# did happen) is deleted without a second open.
_ALREADY_RECORDED = text("""
    SELECT id FROM open_record WHERE id = ANY(CAST(:ids AS uuid[]))
    UNION ALL
    SELECT id FROM held_open WHERE id = ANY(CAST(:ids AS uuid[]))
""")
_DELETE_HITS = text("DELETE FROM pixel_hit WHERE id = ANY(CAST(:ids AS uuid[]))")


@dataclass(frozen=True)
class LoggedHit:
    """One row of the hit log."""

    id: UUID
    delivery_id: UUID
    participant_id: UUID
    org_id: UUID
    day: int
    token_sent_at: int
    received_at: datetime
    signal_bits: int


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did."""

    claimed: int
    opened: int
    held: int
    duplicates: int
    oldest_received_at: datetime | None = None


async def process_hits(
    session: AsyncSession, *, rules: JudgeRules, burst_window: timedelta, limit: int
) -> BatchOutcome:
    """Judge and record one batch of logged hits in the session's transaction (the caller commits)."""
    rows = (await session.execute(_CLAIM_HITS, {"limit": limit})).mappings().all()
    if not rows:
        return BatchOutcome(0, 0, 0, 0)
    hits = [LoggedHit(**dict(row)) for row in rows]
    ids = [hit.id for hit in hits]
    done = set((await session.execute(_ALREADY_RECORDED, {"ids": ids})).scalars().all())
    fresh = [hit for hit in hits if hit.id not in done]
    opened = held = 0
    if fresh:
        known = await storage.claim_and_read_mails_in_session(
            session=session,
            hits=[(hit.delivery_id, hit.participant_id, hit.org_id) for hit in fresh],
            opened_at=fresh[0].received_at,
            since=fresh[0].received_at - burst_window,
        )
        sent = [
            was_sent_as_claimed(known[hit.delivery_id].sent_to, participant_id=hit.participant_id, org_id=hit.org_id)
            for hit in fresh
        ]
        newly_opened = {delivery_id for delivery_id, mail in known.items() if mail.first_open}
        first_opens = iter(
            first_open_flags([hit.delivery_id for hit, ok in zip(fresh, sent, strict=True) if ok], newly_opened)
        )
        opens: list[RecordedOpen] = []
        for hit, was_sent in zip(fresh, sent, strict=True):
            mail = known[hit.delivery_id]
            facts = mail_facts(
                hit_at=hit.received_at,
                sent_at=mail.sent_at,
                token_sent_at=hit.token_sent_at,
                recent_links=mail.recent_links,
            )
            verdict = judge_signals(signals_from_bits(hit.signal_bits), facts, rules, kind="open")
            judged = RecordedOpen(
                id=hit.id,
                delivery_id=hit.delivery_id,
                participant_id=hit.participant_id,
                org_id=hit.org_id,
                day=hit.day,
                opened_at=hit.received_at,
                first_open=False,
                likely_automated=verdict.likely_automated,
                signals=tuple(verdict.signals),
            )
            if was_sent:
                opens.append(replace(judged, first_open=next(first_opens)))
            else:
                session.add(judged.held())
                held += 1
        await session.flush()
        await record_opens(session, opens)
        opened = len(opens)
    await session.execute(_DELETE_HITS, {"ids": ids})
    return BatchOutcome(len(hits), opened, held, len(hits) - len(fresh), hits[0].received_at)


@dataclass(frozen=True)
class RecordedOpen:
    """An open to record: its row in open_record and its mail.opened event."""

    id: UUID
    delivery_id: UUID
    participant_id: UUID
    org_id: UUID
    day: int
    opened_at: datetime
    first_open: bool
    likely_automated: bool
    signals: tuple[str, ...]

    @classmethod
    def released(cls, held: HeldOpen, first_open: bool) -> RecordedOpen:
        """A held hit whose mail.sent has come."""
        return cls(
            id=held.id,
            delivery_id=held.delivery_id,
            participant_id=held.participant_id,
            org_id=held.org_id,
            day=held.day,
            opened_at=held.opened_at,
            first_open=first_open,
            likely_automated=held.likely_automated,
            signals=tuple(held.signals),
        )

    def held(self) -> HeldOpen:
        """The hit held until its mail is seen sent (its first-open flag is decided on release)."""
        return HeldOpen(
            id=self.id,
            delivery_id=self.delivery_id,
            participant_id=self.participant_id,
            org_id=self.org_id,
            day=self.day,
            opened_at=self.opened_at,
            likely_automated=self.likely_automated,
            signals=list(self.signals),
        )

    def event(self) -> Envelope:
        return Envelope.wrap(
            MailOpened(
                delivery_id=self.delivery_id,
                day=self.day,
                opened_at=self.opened_at,
                first_open=self.first_open,
                likely_automated=self.likely_automated,
                signals=self.signals,
            ),
            org_id=self.org_id,
            participant_id=self.participant_id,
            occurred_at=self.opened_at,
        )


# Arrays of text[] cannot be unnested into one row per open, so the signals travel as one
# comma-joined string each (signal codes are fixed words without commas).
_INSERT_OPENS = text("""
INSERT INTO open_record (id, delivery_id, participant_id, org_id, day, opened_at, first_open, likely_automated,
                         signals)
SELECT o.id, o.delivery_id, o.participant_id, o.org_id, o.day, o.opened_at, o.first_open, o.likely_automated,
       CASE WHEN o.signals = '' THEN ARRAY[]::varchar[] ELSE string_to_array(o.signals, ',')::varchar[] END
  FROM unnest(CAST(:id AS uuid[]), CAST(:delivery_id AS uuid[]), CAST(:participant_id AS uuid[]),
              CAST(:org_id AS uuid[]), CAST(:day AS integer[]), CAST(:opened_at AS timestamptz[]),
              CAST(:first_open AS boolean[]), CAST(:likely_automated AS boolean[]), CAST(:signals AS text[]))
    AS o(id, delivery_id, participant_id, org_id, day, opened_at, first_open, likely_automated, signals)
""")


async def record_opens(session: AsyncSession, opens: Sequence[RecordedOpen]) -> None:
    """Open records and their mail.opened events, one statement each for the whole batch, in
    the session's transaction."""
    if not opens:
        return
    assert all("," not in signal for o in opens for signal in o.signals), "signal codes have no commas"
    columns = column_arrays(opens)
    columns["signals"] = [",".join(signals) for signals in columns["signals"]]
    await session.execute(_INSERT_OPENS, columns)
    await add_many_to_outbox(session, [o.event() for o in opens])


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
        await record_opens(
            session,
            [RecordedOpen.released(item, first_open) for item, first_open in zip(held, flags, strict=True)],
        )
        expired = await storage.delete_expired_held_opens(session=session, opened_before=now - retention)
        await session.commit()
    if held:
        HELD_OPENS.labels("released").inc(len(held))
    if expired:
        HELD_OPENS.labels("expired").inc(expired)
        log.info("held opens expired without their mail being seen sent", count=expired)
    return len(held)


def pause_before_next_batch(*, started: float, now: float, interval_s: float) -> float:
    """Seconds to wait after a batch that was not full: the next starts no sooner than
    `interval_s` after this one began (after a full one, the caller goes on at once).

    Why: in a burst of a thousand opens a second, the pixel commits a handful of hits at a time
    and each commit notifies; judging every handful in a transaction of its own cost the
    processor 287 µs and tracking's PostgreSQL 257 µs per hit, against 110 and 64 µs when the
    same hits came four times as fast (and so in bigger batches). Waiting up to `interval_s`
    costs an open that much latency, once, and lets the batch gather what came meanwhile."""
    return max(0.0, started + interval_s - now)


class HitProcessor:
    """Processes the hit log until cancelled: a batch whenever hits were committed (NOTIFY),
    and at least every poll interval; a failed batch is rolled back and tried again."""

    def __init__(self, database: Database, settings: TrackingSettings) -> None:
        self.database = database
        self.settings = settings
        self.rules = JudgeRules(
            fast_hit_s=settings.fast_hit_s,
            instant_click_s=settings.instant_click_s,
            burst_min_links=settings.burst_min_links,
        )
        self.burst_window = timedelta(seconds=settings.burst_window_s)
        self._hits_logged = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(), name="pixel-hit-listener")
        failures = 0
        try:
            while True:
                started = time.perf_counter()
                # Cleared before the batch, not after: hits committed while it runs are not missed.
                self._hits_logged.clear()
                try:
                    async with self.database.session() as session:
                        outcome = await process_hits(
                            session, rules=self.rules, burst_window=self.burst_window, limit=self.settings.hit_batch_max
                        )
                        await session.commit()
                except Exception as error:  # noqa: BLE001 - the hits stay in the log; try again
                    failures += 1
                    if failures in (1, 10) or failures % 100 == 0:
                        log.warning("pixel hits not processed yet", error=type(error).__name__, attempts=failures)
                    await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                    continue
                if failures:
                    log.info("pixel hits are processed again", attempts=failures)
                    failures = 0
                if outcome.claimed:
                    HIT_BATCH_SECONDS.observe(time.perf_counter() - started)
                    if outcome.oldest_received_at is not None:
                        HIT_AGE_SECONDS.observe(max(0.0, (utcnow() - outcome.oldest_received_at).total_seconds()))
                    OPENS.labels("opened").inc(outcome.opened)
                    OPENS.labels("held").inc(outcome.held)
                    OPENS.labels("duplicate").inc(outcome.duplicates)
                    if outcome.claimed == self.settings.hit_batch_max:
                        continue  # a backlog goes as fast as it can
                # Hits committed meanwhile have set the event: the wait below then ends at once.
                await asyncio.sleep(
                    pause_before_next_batch(
                        started=started, now=time.perf_counter(), interval_s=self.settings.hit_batch_interval_s
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hits_logged.wait(), timeout=self.settings.hit_poll_interval_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """LISTEN for committed hits on a connection of its own; without it, polling still works."""
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(asyncpg_dsn(self.database.url))
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._hits_logged.set())
                self._hits_logged.set()  # hits committed while nobody listened
                await lost.wait()
            except Exception:  # noqa: BLE001 - PostgreSQL away: poll until it is back
                await asyncio.sleep(1.0)
            finally:
                if connection is not None and not connection.is_closed():
                    connection.terminate()

    async def run_releases(self) -> None:
        """Opens held for a mail not yet seen sent become opens once its mail.sent is in."""
        retention = timedelta(hours=self.settings.held_open_retention_hours)
        while True:
            try:
                while await release_held_opens(self.database, now=utcnow(), retention=retention) == RELEASE_BATCH:
                    pass
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("could not release held opens", error=type(error).__name__)
            await asyncio.sleep(self.settings.held_open_release_s)


class _MetricsServer(uvicorn.Server):
    """uvicorn for /metrics, leaving SIGTERM and SIGINT to the processor's own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_metrics(server: uvicorn.Server, port: int) -> None:
    """Serve /metrics; a port that cannot be bound costs the metrics (MeerHitProcessorDown says
    so), never the processing of hits (uvicorn exits the process when it cannot bind)."""
    try:
        await server.serve()
    except (SystemExit, OSError):
        log.error("metrics port not served; processing hits without /metrics", metrics_port=port)


async def serve(settings: TrackingSettings) -> None:
    """Run the processor, the held-open releases and an outbox relay until SIGTERM or SIGINT."""
    await wait_for_dependencies(settings, "tracking-hit-processor")
    database = Database(settings.database_url, pool_size=2)
    relay = OutboxRelay(
        database,
        settings.kafka_bootstrap,
        service="tracking",
        poll_interval_s=settings.outbox_poll_interval_s,
        security=kafka_security(settings),
    )
    processor = HitProcessor(database, settings)
    settle_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # No API, but its counters (opens judged, held opens, its relay's outbox) are scraped like a service's.
    metrics_server = _MetricsServer(
        uvicorn.Config(
            metrics_app("tracking-hit-processor", settings.metrics_token),
            host=settings.http_host,
            port=settings.hit_metrics_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    tasks = [
        asyncio.create_task(processor.run(), name="hit-processor"),
        asyncio.create_task(processor.run_releases(), name="held-open-releases"),
        asyncio.create_task(relay.run(), name="outbox-relay"),
        asyncio.create_task(serve_metrics(metrics_server, settings.hit_metrics_port), name="metrics"),
    ]
    log.info("hit processor started", metrics_port=settings.hit_metrics_port)
    await stop.wait()
    metrics_server.should_exit = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await database.dispose()
    log.info("hit processor stopped")


def main() -> None:
    settings = read_settings(TrackingSettings)
    configure_logging("tracking-hit-processor", settings.log_level)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


if __name__ == "__main__":
    main()
