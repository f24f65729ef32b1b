"""Real mailer processes sharing one database: two replicas send each due mail exactly
once, and a replica killed with SIGKILL in the middle of 1,000 mails loses none and repeats
no more than the mails it had in flight, each repeat with the same Message-ID (sent again
once the killed sender's lease on it ended)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path

import asyncpg
import pytest

from deploy.local.stack import Urls
from tests.e2e.conftest import eventually
from tests.e2e.test_mailer_schedule import free_port
from tests.support.databases import fresh_database
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 4
LEASE = {"MEER_SENDING_LEASE_S": "10", "MEER_SMTP_TIMEOUT_S": "5"}
"""Short leases, so the mails the killed replica had in flight go again within the test."""


async def seed(database_url: str, count: int) -> list[str]:
    """An organisation, a coach and `count` participants whose day-1 mail is due now."""
    org, coach = uuid.uuid4(), uuid.uuid4()
    today = datetime.now(UTC).date()
    addresses = [f"r{i:04d}-{uuid.uuid4().hex[:6]}@replica.test" for i in range(count)]
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await conn.execute(
            "INSERT INTO organisation_copy (org_id, name, branding) VALUES ($1, 'Replica Test', $2)",
            org,
            '{"display_name": "Replica Test", "contact_phone": "030 000 0000"}',
        )
        await conn.execute("INSERT INTO coach_copy (coach_id, org_id, name) VALUES ($1, $2, 'Coach Rob')", coach, org)
        await conn.copy_records_to_table(
            "recipient",
            columns=[
                "participant_id",
                "org_id",
                "coach_id",
                "first_name",
                "email",
                "start_date",
                "send_time",
                "timezone",
                "variant",
                "status",
                "last_day",
                "updated_at",
            ],
            records=[
                (
                    uuid.uuid4(),
                    org,
                    coach,
                    "Deelnemer",
                    a,
                    today,
                    time(0, 0),
                    "UTC",
                    "standaard",
                    "active",
                    0,
                    datetime.now(UTC),
                )
                for a in addresses
            ],
        )
    finally:
        await conn.close()
    return addresses


def start_mailer(
    database_url: str, smtp_port: int, sender: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEER_DATABASE_URL": database_url,
        "MEER_KAFKA_BOOTSTRAP": Urls.kafka,
        "MEER_CONSUMER_GROUP": f"mailer-test-{uuid.uuid4().hex[:8]}",
        "MEER_KAFKA_OFFSET_RESET": "latest",
        "MEER_HTTP_PORT": str(free_port()),
        "MEER_SMTP_HOST": "127.0.0.1",
        "MEER_SMTP_PORT": str(smtp_port),
        "MEER_MAIL_FROM_ADDRESS": sender,
        "MEER_SCHEDULE_INTERVAL_S": "0.5",
        "MEER_SENDER_CONCURRENCY": str(CONCURRENCY),
        "MEER_RATE_LIMIT_PER_SECOND": "100000",
        "MEER_RATE_LIMIT_PER_ORG_PER_SECOND": "100000",
        "MEER_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.mailer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def database_url(infrastructure: None) -> AsyncIterator[str]:
    async with fresh_database("mailer") as url:
        yield url


async def nothing_left_in_flight(database_url: str) -> None:
    """Wait until no programme mail is due and every transaction begun before has ended. A sender
    commits its lease before the SMTP call and records the mail as sent after it; a leased mail
    is still due, and a sent one is never claimed again, so after this nothing more can arrive,
    however slow the machine (a send outlasting its lease aside, which needs an SMTP server
    slower than twice its timeout). The claims-ended wait covers a sender inside its claim."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:

        async def nothing_due() -> datetime | None:
            due = await conn.fetchval("SELECT count(*) FROM delivery WHERE status = 'due' AND due_at <= now()")
            return None if due else await conn.fetchval("SELECT clock_timestamp()")

        since = await eventually(nothing_due, timeout=120, what="no programme mail due any more")

        async def claims_ended() -> bool:
            older = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND xact_start < $1",
                since,
            )
            return older == 0

        await eventually(claims_ended, timeout=120, what="every claim begun before that moment to end")
    finally:
        await conn.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_two_mailer_processes_send_each_due_mail_exactly_once(database_url: str) -> None:
    addresses = await seed(database_url, 400)
    port = free_port()
    with SmtpSink(port, keep_raw=False) as sink:
        replicas = [start_mailer(database_url, port, f"replica-{n}@test.example") for n in (1, 2)]
        try:

            async def all_sent() -> bool:
                return len({m.to for m in sink.handler.accepted}) >= len(addresses)

            await eventually(all_sent, timeout=120, what="every participant's day-1 mail")
            await nothing_left_in_flight(database_url)  # a mail sent twice would have arrived by now
        finally:
            for replica in replicas:
                stop(replica)
        per_address = Counter(m.to for m in sink.handler.accepted)
        senders = Counter(m.mail_from for m in sink.handler.accepted)
    assert set(per_address) == set(addresses)
    assert max(per_address.values()) == 1, "a mail was sent twice"
    assert len(senders) == 2 and min(senders.values()) > 0, f"both replicas shared the work: {senders}"
    print(f"\ntwo replicas: {len(addresses)} mails, split {dict(senders)}, duplicates 0")


async def test_mailer_killed_mid_batch_loses_nothing_and_repeats_only_mails_in_flight(database_url: str) -> None:
    addresses = await seed(database_url, 1000)
    port = free_port()
    with SmtpSink(port, keep_raw=False) as sink:
        first = start_mailer(database_url, port, "first@test.example", LEASE)
        try:

            async def halfway() -> bool:
                return len(sink.handler.accepted) >= 300

            await eventually(halfway, timeout=120, what="300 mails before the kill")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            accepted_at_kill = len(sink.handler.accepted)
        finally:
            stop(first)
        second = start_mailer(database_url, port, "second@test.example", LEASE)
        try:

            async def everyone() -> bool:
                return len({m.to for m in sink.handler.accepted}) >= len(addresses)

            await eventually(everyone, timeout=180, what="every participant's mail after the restart")
            await nothing_left_in_flight(database_url)
        finally:
            stop(second)
        per_address: dict[str, list[str]] = defaultdict(list)
        for mail in sink.handler.accepted:
            per_address[mail.to].append(mail.message_id)

    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM delivery GROUP BY status"))
    finally:
        await conn.close()

    repeats = {address: ids for address, ids in per_address.items() if len(ids) > 1}
    print(
        f"\nkill test: {len(addresses)} participants, {accepted_at_kill} accepted before SIGKILL, "
        f"{sum(len(ids) for ids in per_address.values())} accepted in all, {len(repeats)} repeated "
        f"(in flight at most {CONCURRENCY}), deliveries {statuses}"
    )
    assert set(per_address) == set(addresses), "every participant got the day's mail"
    assert statuses == {"sent": len(addresses)}
    assert len(repeats) <= CONCURRENCY, f"more repeats than mails in flight: {len(repeats)}"
    for ids in repeats.values():
        assert len(ids) == 2 and ids[0] == ids[1], "a repeat carries the same Message-ID"
