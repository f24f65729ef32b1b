"""Benchmark: one day's programme mail to 10,000 participants through a local SMTP sink,
the mailer (scheduler + sender workers on real PostgreSQL) next to a bare aiosmtplib loop
sending the same messages to the same sink, in one run.

    ./meer bench -k mailer        (prints mails per second for both and their ratio)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import asyncpg
import pytest

from services.mailer.app import system_clock
from services.mailer.delivery import DeliveryWorker, RateLimits
from services.mailer.mail import MailContext, MailSettings, render_programme_mail, to_wire
from services.mailer.programme import load_pack
from services.mailer.smtp import SmtpClient
from services.mailer.use_cases import schedule_due_deliveries
from shared.db import Database, DedicatedConnection
from shared.mailer_links import link_keys
from shared.tracking_tokens import TokenSigner
from tests.e2e.test_mailer_replicas import seed
from tests.e2e.test_mailer_schedule import free_port
from tests.support.databases import fresh_database

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS = int(os.environ.get("MEER_BENCH_PARTICIPANTS", "10000"))
CONCURRENCY = 4


@pytest.fixture
def sink_port() -> AsyncIterator[int]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.support.smtp_sink", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    sink.stdout.readline()  # "listening"
    yield port  # type: ignore[misc]
    sink.terminate()
    sink.wait(timeout=10)


async def test_mailer_throughput_against_a_bare_smtp_loop(infrastructure: None, sink_port: int) -> None:
    pack = load_pack()
    settings = MailSettings("training@bench.example", "bench.example", "http://tracking.bench")
    signer = TokenSigner(["bench-key"])
    async with fresh_database("mailer") as url:
        await seed(url, PARTICIPANTS)
        database = Database(url, pool_size=CONCURRENCY + 2)

        # The same messages the mailer will send, rendered up front for the bare loop.
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        rows = await conn.fetch("SELECT participant_id, org_id, email FROM recipient")
        await conn.close()
        now = datetime.now(UTC)
        lesson = pack.lesson("standaard", 1)

        def wire(row: asyncpg.Record) -> bytes:
            context = MailContext(
                delivery_id=uuid.uuid4(),
                participant_id=row["participant_id"],
                org_id=row["org_id"],
                to_address=row["email"],
                first_name="Deelnemer",
                coach_name="Coach Rob",
                organisation_name="Replica Test",
                branding={"contact_phone": "030 000 0000"},
                lesson=lesson,
                day=1,
                programme_days=pack.days,
                sent_at=now,
            )
            return to_wire(render_programme_mail(context, settings, signer), settings)

        messages = [(row["email"], wire(row)) for row in rows]

        started = time.perf_counter()
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink_port) as smtp:
            for address, raw in messages:
                await smtp.sendmail(settings.from_address, [address], raw)
        bare_seconds = time.perf_counter() - started

        limits = RateLimits(1e9, 1e9)
        workers = [
            DeliveryWorker(
                database,
                DedicatedConnection(url),
                SmtpClient("127.0.0.1", sink_port),
                pack,
                signer,
                settings,
                system_clock,
                limits,
                link_keys("bench-link-key"),
            )
            for _ in range(CONCURRENCY)
        ]

        async def drain(worker: DeliveryWorker) -> None:
            while await worker.send_next():
                pass
            await worker.transport.close()
            await worker.connection.close()

        started = time.perf_counter()
        scheduled = await schedule_due_deliveries(DedicatedConnection(url), pack, datetime.now(UTC))
        await asyncio.gather(*(drain(worker) for worker in workers))
        mailer_seconds = time.perf_counter() - started

        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        sent = await conn.fetchval("SELECT count(*) FROM delivery WHERE status = 'sent'")
        await conn.close()
        await database.dispose()

    bare_rate, mailer_rate = len(messages) / bare_seconds, sent / mailer_seconds
    print(
        f"\n{PARTICIPANTS} participants, one day's mail, local SMTP sink in its own process\n"
        f"  bare aiosmtplib loop (pre-rendered, 1 connection): {bare_rate:8.0f} mails/s ({bare_seconds:.1f} s)\n"
        f"  mailer (schedule + {CONCURRENCY} workers, PostgreSQL): "
        f"{mailer_rate:8.0f} mails/s ({mailer_seconds:.1f} s)\n"
        f"  ratio mailer / bare: {mailer_rate / bare_rate:.0%}"
    )
    assert scheduled == PARTICIPANTS and sent == PARTICIPANTS
