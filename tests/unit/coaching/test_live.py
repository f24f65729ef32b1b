"""Live changes reach the dashboards that may show them, and no others."""

from __future__ import annotations

from uuid import uuid4

from services.coaching.live import MAX_PAYLOAD_BYTES, LiveHub, ParticipantChanged, decode_changes, encode_changes


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
        hub.notifier = lambda changes: bool(sent.extend(changes)) or True
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
