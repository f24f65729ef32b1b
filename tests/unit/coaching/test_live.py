"""Live changes reach the dashboards that may show them, and no others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import MutableMapping, Sequence
from typing import Any
from uuid import uuid4

import jwt
import pytest

from services.coaching import live
from services.coaching.live import (
    CHANNEL,
    MAX_PAYLOAD_BYTES,
    LiveHub,
    LiveListener,
    ParticipantChanged,
    decode_changes,
    encode_changes,
)


async def test_a_change_reaches_its_coach_and_the_admins_of_its_organisation_only() -> None:
    hub = LiveHub()
    org, other_org, coach, other_coach = uuid4(), uuid4(), uuid4(), uuid4()
    change = ParticipantChanged(
        org_id=org, participant_id=uuid4(), coach_ids=frozenset({coach}), event_type="mail.opened"
    )
    async with (
        hub.subscribe(org_id=org, coach_id=coach) as mine,
        hub.subscribe(org_id=org, coach_id=other_coach) as colleague,
        hub.subscribe(org_id=org, coach_id=None) as admin,
        hub.subscribe(org_id=other_org, coach_id=None) as stranger,
    ):
        assert hub.open_streams == 4
        hub.publish(change)
        assert mine.queue.get_nowait() == (change,)
        assert admin.queue.get_nowait() == (change,)
        assert colleague.queue.empty() and stranger.queue.empty()
    assert hub.open_streams == 0


async def test_after_a_coach_change_both_coaches_hear_of_it() -> None:
    hub = LiveHub()
    org, old, new = uuid4(), uuid4(), uuid4()
    async with hub.subscribe(org_id=org, coach_id=old) as before, hub.subscribe(org_id=org, coach_id=new) as after:
        hub.publish(
            ParticipantChanged(
                org_id=org,
                participant_id=uuid4(),
                coach_ids=frozenset({old, new}),
                event_type="participant.coach_changed",
            )
        )
        assert not before.queue.empty() and not after.queue.empty()


async def test_a_stalled_dashboard_is_told_to_reload_instead_of_growing() -> None:
    hub = LiveHub()
    org = uuid4()
    async with hub.subscribe(org_id=org, coach_id=None) as stalled:
        for _ in range(stalled.queue.maxsize + 5):
            hub.publish(ParticipantChanged(org_id=org, participant_id=uuid4(), coach_ids=frozenset(), event_type="x"))
        assert stalled.queue.full() and stalled.overflowed


async def test_the_changes_of_one_commit_are_one_push_per_dashboard_with_only_what_it_may_show() -> None:
    hub = LiveHub()
    org, coach, other_coach = uuid4(), uuid4(), uuid4()
    mine = [
        ParticipantChanged(org_id=org, participant_id=uuid4(), coach_ids=frozenset({coach}), event_type="mail.opened")
        for _ in range(3)
    ]
    theirs = ParticipantChanged(
        org_id=org, participant_id=uuid4(), coach_ids=frozenset({other_coach}), event_type="mail.sent"
    )
    async with (
        hub.subscribe(org_id=org, coach_id=coach) as dashboard,
        hub.subscribe(org_id=org, coach_id=None) as admin,
    ):
        hub.publish_many([*mine, theirs])
        assert dashboard.queue.qsize() == 1 and admin.queue.qsize() == 1
        assert dashboard.queue.get_nowait() == tuple(mine)
        assert admin.queue.get_nowait() == (*mine, theirs)


def test_notifications_carry_every_change_in_payloads_postgresql_accepts() -> None:
    org = uuid4()
    changes = [
        ParticipantChanged(
            org_id=org,
            participant_id=uuid4(),
            coach_ids=frozenset({uuid4(), uuid4()} if n % 7 == 0 else {uuid4()}),
            event_type="mail.opened" if n % 2 else "assignment.reported",
        )
        for n in range(500)
    ]
    payloads = encode_changes(changes)
    assert len(payloads) > 1
    assert all(len(payload.encode()) <= MAX_PAYLOAD_BYTES < 8000 for payload in payloads)
    assert [change for payload in payloads for change in decode_changes(payload)] == changes
    assert encode_changes([]) == []


async def test_a_coachs_own_change_goes_to_every_replica_when_listening_else_to_this_one() -> None:
    hub = LiveHub()
    sent: list[ParticipantChanged] = []
    org, coach = uuid4(), uuid4()
    change = ParticipantChanged(org_id=org, participant_id=uuid4(), coach_ids=frozenset({coach}), event_type="x")
    async with hub.subscribe(org_id=org, coach_id=coach) as mine:

        def notify(changes: Sequence[ParticipantChanged]) -> bool:
            sent.extend(changes)
            return True

        hub.notifier = notify
        hub.publish(change)
        assert sent == [change] and mine.queue.empty()  # it comes back through LISTEN
        hub.notifier = lambda changes: False  # not listening (PostgreSQL away)
        hub.publish(change)
        assert mine.queue.get_nowait() == (change,)


async def test_after_a_lost_listen_connection_every_dashboard_reloads() -> None:
    hub = LiveHub()
    async with hub.subscribe(org_id=uuid4(), coach_id=None) as admin:
        hub.reload_all()
        assert admin.overflowed and admin.queue.get_nowait() == ()


class FakeConnection:
    """Stands in for the listener's asyncpg connection: it answers `answers` checks, then is gone."""

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.listeners: list[Any] = []
        self.closed = False

    async def add_listener(self, channel: str, callback: Any) -> None:
        assert channel == CHANNEL
        self.listeners.append(callback)

    async def fetchval(self, _: str) -> int:
        if self.answers <= 0:
            raise ConnectionResetError
        self.answers -= 1
        return 1

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True


async def test_the_listener_hands_notifications_to_the_hub_and_listens_again_after_a_lost_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = FakeConnection(answers=1), FakeConnection(answers=10**9)
    attempts: list[object] = [first, OSError("refused"), OSError("refused"), second]

    async def connect(_: str) -> FakeConnection:
        found = attempts.pop(0)
        if isinstance(found, Exception):
            raise found
        assert isinstance(found, FakeConnection)
        return found

    monkeypatch.setattr(live, "connect_raw", connect)
    hub = LiveHub()
    listener = LiveListener("postgresql://unused", hub, check_s=0.001, retry_s=0.001)
    org = uuid4()
    change = ParticipantChanged(org_id=org, participant_id=uuid4(), coach_ids=frozenset(), event_type="mail.opened")
    async with hub.subscribe(org_id=org, coach_id=None) as admin:
        running = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.listening.wait(), timeout=5)
            (callback,) = first.listeners
            callback(first, 1, CHANNEL, encode_changes([change])[0])
            assert admin.queue.get_nowait() == (change,)
            while not second.listeners:  # the first connection is lost; two refusals; then the second
                await asyncio.sleep(0.001)
            assert first.closed and attempts == []
            await asyncio.wait_for(admin.queue.get(), timeout=5)  # reload: changes may have been missed
            assert admin.overflowed
            second.listeners[0](second, 1, CHANNEL, "not json")  # ignored, logged
            assert admin.queue.empty()
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def test_the_changes_of_one_push_reach_the_stream_as_one_chunk_of_participant_events() -> None:
    hub = LiveHub()
    org_id, coach_id = uuid4(), uuid4()
    token = jwt.encode({"exp": int(time.time()) + 600}, "test-key-of-32-bytes-or-more-for-hs256", algorithm="HS256")

    async def allowed() -> bool:
        return True

    response = live.stream_changes(
        hub, org_id=org_id, coach_id=coach_id, token=token, ping_s=3600, still_allowed=allowed
    )
    bodies: list[bytes] = []
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            bodies.append(message["body"])

    streaming = asyncio.create_task(response({"type": "http", "method": "GET", "headers": []}, receive, send))
    while hub.open_streams == 0 or not bodies:  # subscribed, and `ready` sent
        await asyncio.sleep(0)
    changes = [
        ParticipantChanged(org_id, uuid4(), frozenset({coach_id}), "mail.opened"),
        ParticipantChanged(org_id, uuid4(), frozenset({coach_id}), "mail.sent"),
    ]
    hub.publish_many(changes)
    while len(bodies) < 2:
        await asyncio.sleep(0)
    hub.close_all()
    disconnected.set()
    await asyncio.wait_for(streaming, timeout=60)

    assert b"event: ready" in bodies[0]
    pushed = bodies[1].decode().replace("\r\n", "\n").strip().split("\n\n")
    assert [block.split("\n")[0] for block in pushed] == ["event: participant", "event: participant"]
    assert [json.loads(block.split("\n")[1].removeprefix("data: ")) for block in pushed] == [
        {"participant_id": str(change.participant_id), "event_type": change.event_type} for change in changes
    ]
