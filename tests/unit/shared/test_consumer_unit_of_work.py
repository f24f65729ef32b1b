"""The consumer unit of work and the batch path of shared.kafka, on FastStream's in-memory
broker and an in-memory stand-in for the database: one claim per batch, changes in order in
one transaction, work left for the end of the batch, the fallback to one event at a time
that dead-letters a poison event alone, and skipping types nobody handles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, TestKafkaBroker
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.events import Envelope, MailOpened, MailSent
from shared.kafka import (
    FETCH_MAX_WAIT_MS,
    FETCH_MIN_BYTES,
    UNIT_MIN_EVENTS,
    Subscription,
    _Item,
    apply_events,
    create_broker,
    split_by_key,
    subscribe_events,
    unit_of_work,
)
from tests.support.fake_database import FakeDatabase

ORG = uuid4()


def an_open() -> Envelope:
    payload = MailOpened(
        delivery_id=uuid4(), day=1, opened_at=datetime(2026, 3, 2, tzinfo=UTC), first_open=True, likely_automated=False
    )
    return Envelope.wrap(payload, org_id=ORG, participant_id=uuid4())


@dataclass
class Recorder:
    """Changes that write down what they saw; `poison` events raise."""

    applied: list[UUID] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    prepared: list[list[UUID]] = field(default_factory=list)
    poison: set[UUID] = field(default_factory=set)

    async def change(self, session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        assert isinstance(payload, MailOpened)
        if envelope.event_id in self.poison:
            raise ValueError("poison")
        self.applied.append(envelope.event_id)
        self.sessions.add(id(session))
        work = unit_of_work(session)
        work.before_commit("recount", self.recount)
        work.after_commit(self.push)

    async def recount(self) -> None:
        self.log.append("recount")

    def push(self) -> None:
        self.log.append("push")

    async def prepare(self, session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        self.prepared.append([envelope.event_id for envelope in envelopes])

    def subscription(self) -> Subscription:
        return Subscription({"meer.engagement": {MailOpened.TYPE: self.change}}, {}, self.prepare)


async def test_a_batch_is_one_claim_one_transaction_and_its_end_work_runs_once() -> None:
    database, recorder = FakeDatabase(), Recorder()
    events = [an_open() for _ in range(5)]
    skipped = await apply_events(database, recorder.subscription(), events)  # type: ignore[arg-type]
    assert skipped == 0
    assert recorder.applied == [e.event_id for e in events]  # in order
    assert len(recorder.sessions) == 1 and database.claim_statements == 1 and database.commits == 1
    assert recorder.prepared == [[e.event_id for e in events]]
    assert recorder.log == ["recount", "push"]


async def test_handled_events_and_a_repeat_within_the_batch_are_skipped() -> None:
    database, recorder = FakeDatabase(), Recorder()
    first, second, third = an_open(), an_open(), an_open()
    await apply_events(database, recorder.subscription(), [first])  # type: ignore[arg-type]
    recorder.applied.clear()
    skipped = await apply_events(database, recorder.subscription(), [first, second, second, third])  # type: ignore[arg-type]
    assert skipped == 2
    assert recorder.applied == [second.event_id, third.event_id]
    assert recorder.prepared[-1] == [second.event_id, third.event_id]


async def test_a_failing_change_commits_nothing_and_pushes_nothing() -> None:
    database, recorder = FakeDatabase(), Recorder()
    good, bad = an_open(), an_open()
    recorder.poison.add(bad.event_id)
    with pytest.raises(ValueError, match="poison"):
        await apply_events(database, recorder.subscription(), [good, bad])  # type: ignore[arg-type]
    assert database.commits == 0 and database.handled == set()
    assert "push" not in recorder.log


async def test_a_type_without_a_change_is_skipped() -> None:
    database, recorder = FakeDatabase(), Recorder()
    sent = MailSent(
        delivery_id=uuid4(),
        day=1,
        lesson_title="Les 1",
        pack="p",
        pack_version="1",
        message_id="m",
        sent_at=datetime(2026, 3, 2, tzinfo=UTC),
    )
    await apply_events(database, recorder.subscription(), [Envelope.wrap(sent, org_id=ORG, participant_id=uuid4())])  # type: ignore[arg-type]
    assert recorder.applied == [] and database.claim_statements == 0


def test_a_quiet_topic_never_holds_back_a_busy_one_for_long() -> None:
    # aiokafka's one fetch in flight may cover only the quiet topics; the broker holds it this
    # long while the busy topic's records wait (its default, 500 ms, was half the push target).
    broker = create_broker("localhost:9092", client_id="test")
    subscriber = subscribe_events(broker, FakeDatabase(), Recorder().subscription(), service="test")  # type: ignore[arg-type]
    assert subscriber._connection_args["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS <= 100
    # A consumer that keeps up lets the broker gather a batch, for no longer than that wait.
    assert subscriber._connection_args["fetch_min_bytes"] == FETCH_MIN_BYTES > 1


async def test_a_poison_event_in_a_batch_is_dead_lettered_alone() -> None:
    database, recorder = FakeDatabase(), Recorder()
    broker = create_broker("localhost:9092", client_id="test")
    subscribe_events(broker, database, recorder.subscription(), service="test", max_attempts=2)  # type: ignore[arg-type]
    dead: list[tuple[bytes, dict[str, str]]] = []

    @broker.subscriber("meer.engagement.dlt")
    async def on_dead_letter(message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    events = [an_open() for _ in range(6)]
    poison = events[3]
    recorder.poison.add(poison.event_id)
    not_an_envelope = b'{"type": "mail.opened", "payload": 1}'
    unhandled = b'{"type": "link.clicked", "anything": "goes"}'
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            *[e.model_dump_json().encode() for e in events[:2]],
            not_an_envelope,
            unhandled,
            *[e.model_dump_json().encode() for e in events[2:]],
            topic="meer.engagement",
        )
    good = [e.event_id for e in events if e is not poison]
    # The batch was tried once (and rolled back at the poison), then every event alone, in order.
    assert recorder.applied == good[:3] + good
    assert database.commits == len(good)
    assert database.handled == set(good)
    reasons = {headers["dlt-reason"].split(":")[0] for _, headers in dead}
    bodies = [body for body, _ in dead]
    assert len(dead) == 2 and reasons == {"ValueError", "not a valid envelope"}
    assert poison.model_dump_json().encode() in bodies and not_an_envelope in bodies


def keyed_items(keys: Sequence[bytes | None]) -> list[_Item]:
    """Batch items whose records carry these keys (the offset tells them apart)."""
    return [
        _Item(ConsumerRecord("meer.engagement", 0, offset, 0, 0, key, b"{}", None, 0, 0, []), None)
        for offset, key in enumerate(keys)
    ]


def test_a_large_batch_is_split_by_key_and_every_key_keeps_its_order() -> None:
    keys = [f"participant-{n % 37}".encode() for n in range(4 * UNIT_MIN_EVENTS)]
    groups = split_by_key(keyed_items(keys), 3)
    assert len(groups) == 3
    offsets = sorted(item.record.offset for group in groups for item in group if item.record is not None)
    assert offsets == list(range(len(keys)))  # every item once
    for group in groups:
        in_group = [item.record.offset for item in group if item.record is not None]
        assert in_group == sorted(in_group)  # the batch's order
    key_groups = {
        item.record.key: index for index, group in enumerate(groups) for item in group if item.record is not None
    }
    for index, group in enumerate(groups):
        assert all(item.record is not None and key_groups[item.record.key] == index for item in group)


def test_a_small_batch_stays_one_unit_and_a_large_one_gets_at_most_one_unit_per_hundred_events() -> None:
    small = keyed_items([f"p{n}".encode() for n in range(2 * UNIT_MIN_EVENTS - 1)])
    assert split_by_key(small, 4) == [small]
    assert len(split_by_key(small + keyed_items([b"p"]), 4)) == 2
    one_key = keyed_items([b"same"] * (4 * UNIT_MIN_EVENTS) + [None])
    assert sum(len(group) for group in split_by_key(one_key, 4)) == len(one_key)
    assert max(len(group) for group in split_by_key(one_key, 4)) >= 4 * UNIT_MIN_EVENTS
    assert split_by_key(small, 1) == [small]
