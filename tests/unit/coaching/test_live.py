"""Live changes reach the dashboards that may show them, and no others."""

from __future__ import annotations

from uuid import uuid4

from services.coaching.live import LiveHub, ParticipantChanged


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
