"""The handlers on the in-memory store (the one `cli rebuild` uses): events of different
topics in any order, and redeliveries, end in the same projection."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

from services.coaching.handlers import APPLIERS, TOMBSTONE_APPLIERS
from services.coaching.rebuild import MemoryProjectionStore
from services.coaching.tables import CoachView, ContactView, DashboardRow, QuestionnaireAnswerSeen
from shared.events import (
    AssignmentReported,
    Branding,
    CallLogged,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    LinkClicked,
    MailFailed,
    MailOpened,
    MailSent,
    OrganisationLicensed,
    ParticipantCoachChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ProgrammeCompleted,
    QuestionnaireAnswered,
    StaffAccessChanged,
    Topic,
    UnsubscribeRequested,
)

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def journey(org: UUID, coach: UUID, participant: UUID, *, days: int = 12, erase: bool = False) -> list[Envelope]:
    """A short journey touching every topic coaching projects."""
    contact = ContactDetailsSet(person_id=participant, kind="participant", name="Gerrit", email="g@x.org", phone="06 1")
    events = [
        Envelope.wrap(contact, org_id=org, participant_id=participant, occurred_at=T0 - timedelta(days=1)),
        Envelope.wrap(
            ParticipantEnrolled(
                coach_id=coach,
                start_date=T0.date(),
                send_time=time(8),
                timezone="Europe/Amsterdam",
                variant="standard",
            ),
            org_id=org,
            participant_id=participant,
            occurred_at=T0 - timedelta(days=1),
        ),
    ]
    for day in range(1, days + 1):
        delivery, sent = uuid4(), T0 + timedelta(days=day - 1)
        if day == 5:
            failed = MailFailed(delivery_id=delivery, day=day, reason="550", failed_at=sent)
            events.append(Envelope.wrap(failed, org_id=org, participant_id=participant, occurred_at=sent))
            continue
        mail = MailSent(
            delivery_id=delivery,
            day=day,
            lesson_title=f"Les {day}",
            pack="p",
            pack_version="1",
            message_id="m",
            sent_at=sent,
        )
        events.append(Envelope.wrap(mail, org_id=org, participant_id=participant, occurred_at=sent))
        if day % 2:
            for hours, automated in ((0.01, True), (2, False), (5, False)):
                opened = MailOpened(
                    delivery_id=delivery,
                    day=day,
                    opened_at=sent + timedelta(hours=hours),
                    first_open=hours < 1,
                    likely_automated=automated,
                )
                events.append(
                    Envelope.wrap(
                        opened, org_id=org, participant_id=participant, occurred_at=sent + timedelta(hours=hours)
                    )
                )
        if day % 3 == 0:
            for score, hours in ((2, 6), (4, 8)):
                report = AssignmentReported(
                    delivery_id=delivery,
                    day=day,
                    score=score,
                    note="notitie",
                    reported_at=sent + timedelta(hours=hours),
                )
                events.append(Envelope.wrap(report, org_id=org, participant_id=participant, occurred_at=sent))
        if day == 4:
            clicked = LinkClicked(
                delivery_id=delivery, day=day, url="https://x.example", clicked_at=sent, likely_automated=False
            )
            events.append(Envelope.wrap(clicked, org_id=org, participant_id=participant, occurred_at=sent))
    called = T0 + timedelta(days=1, hours=3)
    for reached in (False, True):
        call = CallLogged(
            call_id=uuid4(), coach_id=coach, called_at=called, reached=reached, duration_minutes=12, planned_call=1
        )
        events.append(Envelope.wrap(call, org_id=org, participant_id=participant, occurred_at=called))
    for payload, at in (
        (ParticipantPaused(reason=None), T0 + timedelta(days=6)),
        (ParticipantResumed(), T0 + timedelta(days=7)),
        (ParticipantCoachChanged(coach_id=coach), T0 + timedelta(days=8)),
        (UnsubscribeRequested(delivery_id=uuid4(), via="page", requested_at=T0 + timedelta(days=9)), None),
        (ProgrammeCompleted(days=days, completed_at=T0 + timedelta(days=days)), None),
    ):
        events.append(
            Envelope.wrap(payload, org_id=org, participant_id=participant, occurred_at=at or T0 + timedelta(days=9))
        )
    if erase:
        events.append(
            Envelope.wrap(
                ParticipantErased(), org_id=org, participant_id=participant, occurred_at=T0 + timedelta(days=20)
            )
        )
    return events


def organisation_events(org: UUID, coach: UUID) -> list[Envelope]:
    licensed = OrganisationLicensed(
        name="Org",
        branding=Branding(display_name="Welzijn"),
        licence_valid_from=date(2026, 1, 1),
        licence_valid_until=date(2027, 1, 1),
        max_active_participants=10,
        variants=("standard",),
    )
    contact = ContactDetailsSet(person_id=coach, kind="staff", name="Karin", email="karin@x.org")
    return [
        Envelope.wrap(licensed, org_id=org),
        Envelope.wrap(CoachAdded(coach_id=coach), org_id=org),
        Envelope.wrap(contact, org_id=org),
    ]


async def apply_all(events: Sequence[Envelope]) -> MemoryProjectionStore:
    store = MemoryProjectionStore()
    for envelope in events:
        if store.claim(envelope.event_id):
            await APPLIERS[envelope.topic][envelope.type](store, envelope)
    return store


def snapshot(store: MemoryProjectionStore) -> dict[str, Any]:
    def values(table: Any, row: Any) -> list[tuple[str, str]]:
        return sorted((column.name, str(getattr(row, column.name))) for column in table.__table__.columns)

    return {
        str(table.__tablename__): sorted(values(table, row) for row in rows.values())
        for table, rows in store.tables.items()
    }


def interleave(events: Sequence[Envelope], rng: random.Random) -> list[Envelope]:
    """Another arrival order that keeps each topic's own order (as Kafka keeps per-key order)."""
    queues: dict[str, list[Envelope]] = {}
    for envelope in events:
        queues.setdefault(envelope.topic, []).append(envelope)
    merged: list[Envelope] = []
    while any(queues.values()):
        topic = rng.choice([name for name, queue in queues.items() if queue])
        merged.append(queues[topic].pop(0))
    return merged


async def test_any_interleaving_of_the_topics_gives_the_same_projection() -> None:
    org, coach = uuid4(), uuid4()
    events = organisation_events(org, coach) + journey(org, coach, uuid4()) + journey(org, coach, uuid4(), erase=True)
    expected = snapshot(await apply_all(events))
    rng = random.Random(8)
    for _ in range(20):
        assert snapshot(await apply_all(interleave(events, rng))) == expected


COUNTED_ONCE_BY_THE_CLAIM = frozenset({"mail.opened", "link.clicked", "call.logged", "participant.paused"})
"""Appliers that count (opens, clicks, calls) or move the lifecycle: applied twice they change
the projection, so only the consumer's claim (shared.kafka, processed_events) keeps a
redelivery of them from counting twice."""


async def test_a_redelivered_event_changes_nothing_by_the_appliers_own_rules() -> None:
    """Each event applied a second time, unclaimed, after the whole journey: the appliers'
    own rules (upserts, recounts, min/max) leave the projection as it was."""
    org, coach = uuid4(), uuid4()
    events = organisation_events(org, coach) + journey(org, coach, uuid4())
    once = snapshot(await apply_all(events))
    redelivered = [envelope for envelope in events if envelope.type not in COUNTED_ONCE_BY_THE_CLAIM]
    assert len({envelope.type for envelope in redelivered}) >= 10
    for envelope in redelivered:
        store = await apply_all(events)
        await APPLIERS[envelope.topic][envelope.type](store, envelope)
        assert snapshot(store) == once, envelope.type


async def test_a_redelivered_count_changes_nothing_through_the_claim() -> None:
    org, coach = uuid4(), uuid4()
    events = organisation_events(org, coach) + journey(org, coach, uuid4())
    once = snapshot(await apply_all(events))
    counted = [envelope for envelope in events if envelope.type in COUNTED_ONCE_BY_THE_CLAIM]
    assert {envelope.type for envelope in counted} == COUNTED_ONCE_BY_THE_CLAIM
    assert snapshot(await apply_all(events + counted)) == once


async def test_the_journey_figures() -> None:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    store = await apply_all(organisation_events(org, coach) + journey(org, coach, participant))
    row = await store.participant(participant, org, at=T0)
    assert (row.mails_sent, row.mails_failed, row.lesson_day) == (11, 1, 12)
    assert (row.mails_opened, row.mails_opened_automated_only) == (5, 0)  # odd days but 5, which failed
    assert (row.calls_attempted, row.calls_reached) == (2, 1)
    assert row.reports == 4 and row.clicks == 1
    assert row.status == "completed" and row.unsubscribe_requested_at is not None
    reports = sorted(await store.reports(participant), key=lambda r: r.day)
    assert [r.score for r in reports] == [4, 4, 4, 4]  # the later answer of each day wins


async def test_erasing_keeps_counts_and_drops_names_phone_and_notes() -> None:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    store = await apply_all(organisation_events(org, coach) + journey(org, coach, participant, erase=True))
    row = await store.participant(participant, org, at=T0)
    assert (row.first_name, row.phone, row.status) == (None, None, "erased")
    assert row.mails_sent == 11
    assert all(report.note is None for report in await store.reports(participant))
    assert store.erased == {participant}


async def test_contact_details_reach_the_row_and_the_coach_in_either_order_and_a_tombstone_erases_them() -> None:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    events = organisation_events(org, coach) + journey(org, coach, participant)
    contacts = [e for e in events if e.type == ContactDetailsSet.TYPE]
    rest = [e for e in events if e.type != ContactDetailsSet.TYPE]
    for order in (contacts + rest, rest + contacts):
        store = await apply_all(order)
        row = store.tables[DashboardRow][participant]
        assert (row.first_name, row.phone, store.tables[CoachView][coach].name) == ("Gerrit", "06 1", "Karin")
    for person in (participant, coach):
        await TOMBSTONE_APPLIERS[Topic.CONTACT](store, str(person))
    row = store.tables[DashboardRow][participant]
    assert (row.first_name, row.phone, store.tables[CoachView][coach].name) == (None, None, None)
    assert store.tables[ContactView] == {}
    assert row.mails_sent == 11, "only the details go"


async def test_details_that_arrive_after_the_erasure_are_not_kept() -> None:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    events = journey(org, coach, participant, erase=True)
    contacts = [e for e in events if e.type == ContactDetailsSet.TYPE]
    store = await apply_all([e for e in events if e.type != ContactDetailsSet.TYPE] + contacts)
    assert store.tables[ContactView] == {}
    assert store.tables[DashboardRow][participant].first_name is None


async def test_a_coach_s_access_ends_the_same_whichever_event_comes_first() -> None:
    """staff.access_changed (topic meer.staff) and coach.added (meer.organisation) may
    arrive in any order: the newest version says whether the coach is active, and a
    removal keeps the name erased."""
    org, coach, admin = uuid4(), uuid4(), uuid4()
    added = organisation_events(org, coach)
    deactivated = Envelope.wrap(
        StaffAccessChanged(staff_id=coach, role="coach", token_version=2, active=False), org_id=org
    )
    reactivated = Envelope.wrap(
        StaffAccessChanged(staff_id=coach, role="coach", token_version=3, active=True), org_id=org
    )
    removed = Envelope.wrap(
        StaffAccessChanged(staff_id=coach, role="coach", token_version=4, active=False, removed=True), org_id=org
    )
    admin_out = Envelope.wrap(
        StaffAccessChanged(staff_id=admin, role="org_admin", token_version=2, active=True), org_id=org
    )
    for order in ([*added, deactivated, reactivated], [reactivated, deactivated, *added]):
        view = (await apply_all(order)).tables[CoachView][coach]
        assert (view.name, view.active, view.access_version) == ("Karin", True, 3)
    for order in ([*added, removed, reactivated], [removed, *added, deactivated]):
        store = await apply_all([*order, admin_out])
        view = store.tables[CoachView][coach]
        assert (view.name, view.active, view.removed) == (None, False, True)
        assert admin not in store.tables[CoachView], "an admin is no coach"


def answered(org: UUID, participant: UUID, moment: str, total: int | None, at: datetime) -> Envelope:
    scores = QuestionnaireAnswered(
        participant_id=participant,
        moment=moment,  # type: ignore[arg-type]
        scale_version="djg6-2006",
        answers={"e1": "ja", "e2": "ja", "e3": None, "s1": "nee", "s2": "nee", "s3": "nee"},
        emotional=None,
        social=3,
        total=total,
        total_imputed=True,
        category="severely_lonely",
        answered_at=at,
    )
    return Envelope.wrap(scores, org_id=org, participant_id=participant, occurred_at=at)


async def test_questionnaire_scores_are_kept_per_moment_the_latest_wins_and_erasure_removes_them() -> None:
    org, coach, participant = uuid4(), uuid4(), uuid4()
    base = organisation_events(org, coach) + journey(org, coach, participant, days=2)
    first = answered(org, participant, "intake", 6, T0)
    again = answered(org, participant, "intake", 5, T0 + timedelta(minutes=5))
    end = answered(org, participant, "end", 2, T0 + timedelta(days=60))
    # a late redelivery of the older answer does not undo the newer one
    store = await apply_all([*base, first, again, end, answered(org, participant, "intake", 6, T0)])
    seen = store.tables[QuestionnaireAnswerSeen]
    assert {key: row.total for key, row in seen.items()} == {(participant, "intake"): 5, (participant, "end"): 2}
    assert seen[(participant, "intake")].org_id == org and seen[(participant, "intake")].total_imputed
    erased = Envelope.wrap(ParticipantErased(), org_id=org, participant_id=participant, occurred_at=T0)
    store = await apply_all([*base, first, end, erased])
    assert store.tables[QuestionnaireAnswerSeen] == {}
    # an answer that arrives after the erasure (another topic) is not kept either
    store = await apply_all([*base, erased, first])
    assert store.tables[QuestionnaireAnswerSeen] == {}
