"""Failure drills on the real stack (./meer drills): a three-node Kafka cluster, two replicas of
every service and of the hit processor, PostgreSQL with fsync on. Each drill runs a scripted
stream of enrolments, day-1 mails and their opens, injects its fault mid-stream, waits for quiet
by condition and prints its counts; after each, coaching's projection must equal a rebuild
from the topics.

The plumbing is the end-to-end tests' (tests/e2e/conftest.py, the rebuild comparison of
test_coaching_journey.py); what is here is the stream, the counting and the faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local import stack as local_stack
from shared.events import MailOpened, ParticipantEnrolled, Topic
from tests.e2e.conftest import (
    KAFKA,
    LICENSOR,
    MAIL_CLIENT,
    MAILCATCHER,
    add_coach,
    create_organisation,
    db_fetch,
    raw_mail,
    read_topic,
    tracking_links,
    unique_email,
)
from tests.e2e.test_coaching_journey import (
    AUTHORED,
    PROJECTION,
    coaching_caught_up,
    differences,
    run_rebuild,
    snapshot,
    topic_ends,
)

SERVICES = ("enrolment", "mailer", "tracking", "coaching")
# Mails one mailer process may have handed to SMTP without marking them sent (MEER_SENDER_CONCURRENCY).
MAILS_IN_FLIGHT_PER_MAILER = 4
QUIET_TIMEOUT = 240.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session", autouse=True)
def drill_stack_is_a_cluster() -> None:
    """The drills mean nothing on a single broker, one replica each, or without fsync."""
    wanted = {"MEER_LOCAL_KAFKA_BROKERS": "3", "MEER_LOCAL_PG_FSYNC": "on"}
    wanted |= {local_stack.replica_setting(base): "2" for base in (*local_stack.SERVICE_PORTS, *local_stack.WORKERS)}
    wrong = {name: os.environ.get(name) for name, value in wanted.items() if os.environ.get(name) != value}
    if wrong:
        pytest.fail(f"run the drills with ./meer drills (it sets {wanted}); these differ: {wrong}")


@pytest.fixture
async def http(stack: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


def replicas(base: str) -> list[local_stack.ServiceProcess]:
    return local_stack.replicas_of(base)


async def settle(check: Callable[[], Awaitable[bool]], *, timeout: float = QUIET_TIMEOUT) -> bool:
    """Poll check() until it holds or the timeout passes; the caller reports what it counted either way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    return False


# --- faults -------------------------------------------------------------------------------------


def sigkill(name: str) -> None:
    """SIGKILL one process of this stack (and its process group) and wait until it is gone."""
    pid = local_stack.running_pid(name)
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while local_stack.running_pid(name) is not None:
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.1)


def kafka_controller_leader() -> local_stack.KafkaNode:
    """The node the controller quorum elected most recently, as the nodes' quorum-state files say."""
    best: tuple[int, int] | None = None
    for node in local_stack.KAFKA_NODES:
        path = node.data / "__cluster_metadata-0" / "quorum-state"
        if path.exists():
            state = json.loads(path.read_text())
            if state.get("leaderId", -1) > 0 and (best is None or state["leaderEpoch"] > best[0]):
                best = (state["leaderEpoch"], state["leaderId"])
    assert best is not None, "no node knows the controller leader"
    return local_stack.KAFKA_NODES[best[1] - 1]


async def every_partition_fully_replicated() -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=5000)
    try:
        await admin.start()
        described = await admin.describe_topics([*Topic.ALL, *map(Topic.dead_letter, Topic.ALL)])
        return all(len(p["isr"]) == len(local_stack.KAFKA_NODES) for t in described for p in t["partitions"])
    except Exception:  # noqa: BLE001 - a node that is still starting: not yet
        return False
    finally:
        await admin.close()


def postgres_processes() -> list[int]:
    """The postmaster and its children (backends, checkpointer, WAL writer...)."""
    pid_file = local_stack.pg_home() / "data" / "postmaster.pid"
    postmaster = int(pid_file.read_text().splitlines()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def sigkill_postgres() -> None:
    """A crash of the database server: every one of its processes SIGKILLed at once."""
    pids = postgres_processes()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    # Gone for good, not only closed: a restart refuses a data folder whose postmaster still exists.
    while local_stack.port_open(local_stack.PG_PORT) or any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "PostgreSQL survived SIGKILL"
        time.sleep(0.1)


async def readiness(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, bool]]:
    try:
        response = await http.get(f"{url}/readyz")
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json().get("checks", {})


# --- the scripted stream ------------------------------------------------------------------------


@dataclass
class Stream:
    """Enrolments through enrolment's API (spread over its live replicas), each participant's
    day-1 mail as the mail catcher received it, and one pixel fetch per mail (spread over
    tracking's live replicas), as a load balancer would spread them."""

    http: httpx.AsyncClient
    org_id: str = ""
    enrolment_urls: list[str] = field(default_factory=lambda: [p.url for p in replicas("enrolment")])
    tracking_urls: list[str] = field(default_factory=lambda: [p.url for p in replicas("tracking")])
    accepted: dict[str, uuid.UUID] = field(default_factory=dict)  # address -> participant id
    refused: Counter[int] = field(default_factory=Counter)  # answers other than 201, by status (0: no answer)
    mail_ids: dict[str, set[int]] = field(default_factory=dict)
    message_ids: dict[str, list[str]] = field(default_factory=dict)
    pixels_answered: dict[uuid.UUID, str] = field(default_factory=dict)  # delivery id -> address
    pixels_refused: Counter[int] = field(default_factory=Counter)
    inbox_unread: Counter[str] = field(default_factory=Counter)  # looks at the catcher that failed, by error
    _turn: int = 0

    async def start(self) -> None:
        organisation = await create_organisation(self.http, max_active_participants=10_000)
        self.org_id = organisation["id"]
        await add_coach(self.http, self.org_id)

    def _next(self, urls: list[str]) -> str:
        self._turn += 1
        return urls[self._turn % len(urls)]

    async def enrol(self, first_name: str) -> None:
        email = unique_email("drill")
        body = {
            "first_name": first_name,
            "email": email,
            "start_date": time.strftime("%Y-%m-%d", time.gmtime()),
            "send_time": "00:00",
            "timezone": "UTC",
        }
        url = f"{self._next(self.enrolment_urls)}/api/organisations/{self.org_id}/participants"
        try:
            response = await self.http.post(url, json=body, headers=LICENSOR)
        except httpx.HTTPError:
            self.refused[0] += 1
            return
        if response.status_code == 201:
            self.accepted[email] = uuid.UUID(response.json()["id"])
        else:
            self.refused[response.status_code] += 1

    async def enrol_many(self, count: int, *, concurrency: int = 3, pace_s: float = 0.1) -> None:
        for start in range(0, count, concurrency):
            await asyncio.gather(*(self.enrol(f"Deelnemer{start + n}") for n in range(min(concurrency, count - start))))
            await asyncio.sleep(pace_s)

    async def open_new_mails(self) -> None:
        """Fetch the pixel of every mail of ours that arrived since the last look (once per mail)."""
        try:
            summaries = (await self.http.get(f"{MAILCATCHER}/api/messages")).json()
        except httpx.HTTPError as error:
            self.inbox_unread[type(error).__name__] += 1
            return
        for summary in summaries:
            to = next((address for address in summary["to"] if address in self.accepted), None)
            if to is None or summary["id"] in self.mail_ids.setdefault(to, set()):
                continue
            self.mail_ids[to].add(summary["id"])
            self.message_ids.setdefault(to, []).append(summary["message_id"])
            if len(self.mail_ids[to]) > 1:
                continue  # a repeat of a mail already opened: counted, not opened again
            await self.fetch_pixel(to, tracking_links(await raw_mail(self.http, summary["id"]))["o"])

    async def fetch_pixel(self, address: str, link: str) -> None:
        from shared.tracking_tokens import TokenSigner

        path = "/" + link.split("/", 3)[3]
        token = path.rsplit("/", 1)[1].removesuffix(".gif")
        delivery_id = TokenSigner(["dev-only-tracking-key"]).verify(token).delivery_id
        for _attempt in range(20):  # a client retries a pixel that got no answer, as mail clients do
            try:
                response = await self.http.get(f"{self._next(self.tracking_urls)}{path}", headers=MAIL_CLIENT)
            except httpx.HTTPError:
                self.pixels_refused[0] += 1
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 200:
                self.pixels_answered[delivery_id] = address
                return
            self.pixels_refused[response.status_code] += 1
            await asyncio.sleep(0.5)

    async def open_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.open_new_mails()
            await asyncio.sleep(0.5)
        await self.open_new_mails()

    async def run(self, count: int, fault: Callable[[], Awaitable[None]], *, fault_after: int | None = None) -> None:
        """Enrol `count` participants while opening what arrives; run `fault` once a third are in."""
        done = asyncio.Event()
        opener = asyncio.create_task(self.open_until(done))
        try:
            await self.enrol_many(fault_after if fault_after is not None else count // 3)
            faulting = asyncio.create_task(fault())
            await self.enrol_many(count - len(self.accepted) - sum(self.refused.values()))
            await faulting
            await self.wait_for_quiet()
        finally:
            done.set()
            await opener

    async def wait_for_quiet(self) -> None:
        """Until every accepted participant got a mail, every mail was opened and coaching shows each
        open (or QUIET_TIMEOUT passed: then the counts show what is missing)."""

        async def all_mailed_and_opened() -> bool:
            await self.open_new_mails()
            return set(self.mail_ids) >= set(self.accepted) and len(self.pixels_answered) >= len(self.accepted)

        await settle(all_mailed_and_opened)

        async def opens_projected() -> bool:
            return len(await self.opens_in_coaching()) >= len(self.pixels_answered)

        await settle(opens_projected)

    async def opens_in_coaching(self) -> Counter[uuid.UUID]:
        rows = await db_fetch(
            "coaching",
            "SELECT delivery_id FROM open_seen WHERE delivery_id = ANY($1::uuid[])",
            list(self.pixels_answered),
        )
        return Counter(row["delivery_id"] for row in rows)


@dataclass
class Counts:
    """One drill's figures, per flow: produced (acknowledged), delivered, lost, duplicated."""

    drill: str
    flows: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    dead_lettered: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, flow: str, produced: int, delivered: int, duplicated: int) -> None:
        self.flows[flow] = (produced, delivered, produced - delivered, duplicated)

    def lost(self, flow: str) -> int:
        return self.flows[flow][2]

    def duplicated(self, flow: str) -> int:
        return self.flows[flow][3]

    def print(self) -> None:
        lines = [f"\n=== drill: {self.drill}"]
        lines += [f"  {'flow':<22}{'produced':>9}{'delivered':>10}{'lost':>6}{'duplicated':>11}"]
        for flow, (produced, delivered, lost, duplicated) in self.flows.items():
            lines.append(f"  {flow:<22}{produced:>9}{delivered:>10}{lost:>6}{duplicated:>11}")
        lines.append(f"  dead-lettered: {self.dead_lettered}")
        lines += [f"  {note}" for note in self.notes]
        print("\n".join(lines), flush=True)


async def dead_letter_total() -> int:
    return sum([len(await read_topic(Topic.dead_letter(topic))) for topic in Topic.ALL])


def envelope_dict(value: bytes | None) -> dict[str, Any]:
    """A record's envelope as a dict; {} for a tombstone or a poison record that is no JSON object."""
    try:
        envelope = json.loads(value or b"{}")
    except ValueError:
        return {}
    return envelope if isinstance(envelope, dict) else {}


async def count_stream(drill: str, stream: Stream, dead_letters_before: int) -> Counts:
    """Counts of the three flows: enrolments (acknowledged by the API → participant.enrolled on
    Kafka), day-1 mails (owed to each accepted participant → received), opens (pixel answered →
    in coaching's projection)."""
    counts = Counts(drill)
    ours = {str(participant) for participant in stream.accepted.values()}
    enrolled = [
        envelope
        for record in await read_topic(Topic.PARTICIPANT)
        if (envelope := envelope_dict(record.value)).get("type") == ParticipantEnrolled.TYPE
        and envelope.get("participant_id") in ours
    ]
    on_kafka = Counter(envelope["participant_id"] for envelope in enrolled)
    copies = Counter(envelope["event_id"] for envelope in enrolled)
    counts.add("enrolment → kafka", len(ours), len(on_kafka), sum(n - 1 for n in copies.values()))
    mailed = {address: ids for address, ids in stream.mail_ids.items() if ids}
    counts.add(
        "day-1 mail → inbox",
        len(stream.accepted),
        len(mailed),
        sum(len(ids) - 1 for ids in mailed.values()),
    )
    repeats = {a: ids for a, ids in stream.message_ids.items() if len(ids) > 1}
    if repeats:
        same = all(len(set(ids)) == 1 for ids in repeats.values())
        counts.notes.append(f"repeated mails: {len(repeats)}, each with the same Message-ID: {same}")
    in_coaching = await stream.opens_in_coaching()
    answered = {str(delivery) for delivery in stream.pixels_answered}
    opened = [
        envelope
        for record in await read_topic(Topic.ENGAGEMENT)
        if (envelope := envelope_dict(record.value)).get("type") == MailOpened.TYPE
        and envelope.get("payload", {}).get("delivery_id") in answered
    ]
    # Distinct events per mail: a copy of the same event (the relay republishes what it could not see
    # acknowledged before a crash) is claimed once by every consumer, and printed below.
    opened_events = Counter(
        delivery for delivery in {e["event_id"]: e["payload"]["delivery_id"] for e in opened}.values()
    )
    counts.add(
        "pixel → coaching",
        len(stream.pixels_answered),
        len(in_coaching),
        sum(n - 1 for n in in_coaching.values()) + sum(n - 1 for n in opened_events.values()),
    )
    copies = len(opened) - len({envelope["event_id"] for envelope in opened})
    if copies:
        counts.notes.append(f"copies of mail.opened events on Kafka (same event id, claimed once): {copies}")
    counts.dead_lettered = await dead_letter_total() - dead_letters_before
    if stream.refused:
        counts.notes.append(f"enrolments refused (not acknowledged, by status): {dict(stream.refused)}")
    if stream.pixels_refused:
        counts.notes.append(f"pixel fetches retried (by status, 0 = no answer): {dict(stream.pixels_refused)}")
    if stream.inbox_unread:
        counts.notes.append(f"looks at the mail catcher that failed (by error): {dict(stream.inbox_unread)}")
    unmailed = [participant for address, participant in stream.accepted.items() if not stream.mail_ids.get(address)]
    if unmailed:
        counts.notes.append(f"where the mails not received stand in the mailer: {await mailer_state(unmailed)}")
    return counts


async def mailer_state(participants: list[uuid.UUID]) -> dict[str, int]:
    """What the mailer holds for these participants: recipient status / delivery status (and the
    error or a lease), counted; "no recipient" when it never took in the enrolment."""
    rows = await db_fetch(
        "mailer",
        "SELECT coalesce(r.status, 'no recipient') AS recipient, r.email IS NULL AS no_address,"
        " coalesce(d.status, 'no delivery') AS delivery, d.error, d.sending_until > now() AS leased"
        " FROM unnest($1::uuid[]) AS p(id) LEFT JOIN recipient r ON r.participant_id = p.id"
        " LEFT JOIN delivery d ON d.participant_id = p.id AND d.day = 1",
        participants,
    )

    def state(row: asyncpg.Record) -> str:
        recipient = row["recipient"] + (" without address" if row["no_address"] else "")
        delivery = row["delivery"] + (f" ({row['error']})" if row["error"] else "")
        delivery += " leased" if row["leased"] else ""
        return f"{recipient} / {delivery}"

    return dict(Counter(state(row) for row in rows))


async def projection_equals_rebuild(counts: Counts) -> None:
    """Coaching's live projection against a rebuild from the topics, on a quiet moment."""
    for _ in range(5):
        events_before = await topic_ends()
        await coaching_caught_up()
        live = await snapshot(PROJECTION)
        authored = await snapshot(AUTHORED)
        result = await asyncio.to_thread(run_rebuild)
        assert result.returncode == 0, result.stdout + result.stderr
        await coaching_caught_up()
        if await topic_ends() != events_before:
            continue
        rebuilt = await snapshot(PROJECTION)
        differing = differences(rebuilt, live)
        rows = sum(len(rows) for rows in live.values())
        detail = [await differing_columns(table, rebuilt[table], live[table]) for table in differing]
        counts.notes.append(
            f"projection vs rebuild: {len(differing)} of {len(live)} tables differ ({rows} rows)"
            + "".join(f"; {line}" for line in detail)
        )
        counts.print()
        assert differing == {}, counts.notes[-1]
        assert await snapshot(AUTHORED) == authored
        return
    counts.print()
    pytest.fail("the topics never stayed quiet during a rebuild")


async def differing_columns(table: str, rebuilt: list[tuple[Any, ...]], live: list[tuple[Any, ...]]) -> str:
    """Which columns differ in how many rows of a table (rows matched by their first column), and
    one example: enough for a reader to tell a race from a rule."""
    names = [
        row["column_name"]
        for row in await db_fetch(
            "coaching",
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            table,
        )
    ]
    by_key = {row[0]: row for row in rebuilt}
    columns: Counter[str] = Counter()
    example = ""
    only_live = 0
    for row in live:
        other = by_key.get(row[0])
        if other is None:
            only_live += 1
            continue
        for name, mine, theirs in zip(names, row, other, strict=True):
            if mine != theirs:
                columns[name] += 1
                example = example or f"{name}: live {mine!r}, rebuild {theirs!r}"
    return f"{table}: {dict(columns)} rows differ by column, {only_live} only live (e.g. {example})"
