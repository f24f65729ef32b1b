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
        assert mine.queue.get_nowait() == change
        assert admin.queue.get_nowait() == change
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
