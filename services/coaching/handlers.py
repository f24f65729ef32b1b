"""Coaching's Kafka handlers: every event updates the projection, once.

Each `on_<event>` applies one event through a ProjectionStore and says which participant
changed. The live consumer runs them in the shared consumer unit of work, a batch at a
time (shared.kafka: claim the batch's events, apply them to the batch's rows in memory
(LiveBatchStore), write back what changed, publish the call plans and alerts that changed,
commit; every replica's open dashboards hear of it once, see live.py); `cli rebuild` runs
the very same functions on a store of every row in memory. Events of one participant come
from several topics, so they may arrive in any order (an open before its mail.sent, a mail
before the enrolment): every handler upserts, and every rule is a recount or a min/max (see projection.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import projection
from services.coaching.callplan import PlanRequest, Publish, publish_call_plans
from services.coaching.export import build_export_handlers
from services.coaching.intake_handlers import on_local_offers_changed, record_staff_copy
from services.coaching.live import LiveHub, ParticipantChanged, notify_changes
from services.coaching.memory_store import LiveBatchStore
from services.coaching.storage import ProjectionStore, erase_authored_data
from services.coaching.tables import (
    CallSeen,
    CoachView,
    ContactView,
    DashboardRow,
    LifecycleSeen,
    OpenSeen,
    OrganisationView,
    QuestionnaireAnswerSeen,
    ReportSeen,
    StaffAccessCopy,
)
from shared.db import utcnow
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
    OrganisationBrandingChanged,
    OrganisationLicensed,
    OrganisationLocalOffersChanged,
    OrganisationSlugChanged,
    ParticipantCoachChanged,
    ParticipantCompleted,
    ParticipantDetailsChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
    PlanUpdated,
    ProgrammeCompleted,
    QuestionnaireAnswered,
    StaffAccessChanged,
    StaffInvited,
    Topic,
    UnsubscribeRequested,
    people_made_from_two_topics,
)
from shared.kafka import Change, TombstoneChange, unit_of_work
from shared.runtime import Runtime

PayloadT = TypeVar("PayloadT", bound=Payload)
Applier = Callable[[ProjectionStore, Envelope], Awaitable[ParticipantChanged | None]]
"""Applies one event to the projection; returns the participant it changed, if any."""


def _parse(envelope: Envelope, kind: type[PayloadT]) -> PayloadT:
    payload = envelope.parsed()
    if not isinstance(payload, kind):
        raise TypeError(f"expected {kind.TYPE}, got {envelope.type}")
    if kind.TOPIC not in (Topic.ORGANISATION, Topic.STAFF, Topic.CONTACT) and envelope.participant_id is None:
        raise ValueError(f"{envelope.type} without a participant_id")
    return payload


async def _row(store: ProjectionStore, envelope: Envelope) -> DashboardRow:
    assert envelope.participant_id is not None
    return await store.participant(envelope.participant_id, envelope.org_id, at=envelope.occurred_at)


def _changed(row: DashboardRow, envelope: Envelope, *extra_coaches: object) -> ParticipantChanged:
    coaches = {c for c in (row.coach_id, *extra_coaches) if c is not None}
    return ParticipantChanged(
        org_id=row.org_id,
        participant_id=row.participant_id,
        coach_ids=frozenset(coaches),  # type: ignore[arg-type]
        event_type=envelope.type,
    )


def _lifecycle_entry(store: ProjectionStore, envelope: Envelope, by: str | None = None) -> None:
    assert envelope.participant_id is not None
    store.add(
        LifecycleSeen,
        event_id=envelope.event_id,
        participant_id=envelope.participant_id,
        type=envelope.type,
        occurred_at=envelope.occurred_at,
        by=by,
    )


# --- participant.* ------------------------------------------------------------------------


async def on_participant_enrolled(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, ParticipantEnrolled)
    row = await _row(store, envelope)
    contact = await store.find(ContactView, row.participant_id)
    if row.lifecycle != "erased" and contact is not None:  # else the name comes with contact.details_set
        row.first_name, row.phone = contact.name, contact.phone
    row.coach_id, row.start_date = payload.coach_id, payload.start_date
    projection.apply_lifecycle(row, envelope.type, envelope.occurred_at)
    _lifecycle_entry(store, envelope)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_participant_details_changed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    _parse(envelope, ParticipantDetailsChanged)  # mail preferences only: coaching keeps none of them
    row = await _row(store, envelope)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def _on_lifecycle(store: ProjectionStore, envelope: Envelope, *, by: str | None = None) -> ParticipantChanged:
    row = await _row(store, envelope)
    projection.apply_lifecycle(row, envelope.type, envelope.occurred_at, by=by)
    _lifecycle_entry(store, envelope, by)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_participant_paused(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    _parse(envelope, ParticipantPaused)
    return await _on_lifecycle(store, envelope)


async def on_participant_resumed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    _parse(envelope, ParticipantResumed)
    return await _on_lifecycle(store, envelope)


async def on_participant_stopped(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, ParticipantStopped)
    return await _on_lifecycle(store, envelope, by=payload.by)


async def on_participant_completed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    _parse(envelope, ParticipantCompleted)
    return await _on_lifecycle(store, envelope)


async def on_participant_coach_changed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, ParticipantCoachChanged)
    row = await _row(store, envelope)
    previous = row.coach_id
    row.coach_id = payload.coach_id
    _lifecycle_entry(store, envelope)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope, previous)


async def on_participant_erased(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    _parse(envelope, ParticipantErased)
    row = await _row(store, envelope)
    projection.apply_lifecycle(row, envelope.type, envelope.occurred_at)
    projection.erase_personal_data(row)
    await store.remove(ContactView, row.participant_id)
    for report in await store.reports(row.participant_id):
        report.note = None
    await store.erase_authored(row.participant_id)
    await store.erase_questionnaire_answers(row.participant_id)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


# --- organisation.* and coach.* -----------------------------------------------------------


async def on_organisation_licensed(store: ProjectionStore, envelope: Envelope) -> None:
    payload = _parse(envelope, OrganisationLicensed)
    organisation = await store.organisation(envelope.org_id)
    organisation.name = payload.name
    _brand(organisation, payload.branding)


async def on_organisation_branding_changed(store: ProjectionStore, envelope: Envelope) -> None:
    payload = _parse(envelope, OrganisationBrandingChanged)
    _brand(await store.organisation(envelope.org_id), payload.branding)


async def on_organisation_slug_changed(store: ProjectionStore, envelope: Envelope) -> None:
    payload = _parse(envelope, OrganisationSlugChanged)
    organisation = await store.organisation(envelope.org_id)
    organisation.slug = payload.slug


def _brand(organisation: OrganisationView, branding: Branding) -> None:
    for name in ("display_name", "brand_colour", "logo_url", "contact_phone", "contact_email", "website", "address"):
        setattr(organisation, name, getattr(branding, name))


async def on_coach_added(store: ProjectionStore, envelope: Envelope) -> None:
    payload = _parse(envelope, CoachAdded)
    coach = await store.coach(payload.coach_id, envelope.org_id)
    contact = await store.find(ContactView, payload.coach_id)
    if not coach.removed and contact is not None:  # else the name comes with contact.details_set
        coach.name = contact.name


# --- contact.* (meer.contact) -----------------------------------------------------------


async def on_contact_details_set(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged | None:
    """Keep the person's name and phone; put them on the participant's row or the coach, when known."""
    payload = _parse(envelope, ContactDetailsSet)
    row = await store.find(DashboardRow, payload.person_id) if payload.kind == "participant" else None
    if row is not None and row.lifecycle == "erased":
        return None  # erased before these details arrived: they are not kept
    contact = await store.find(ContactView, payload.person_id)
    if contact is None:
        store.add(
            ContactView,
            person_id=payload.person_id,
            org_id=envelope.org_id,
            kind=payload.kind,
            name=payload.name,
            phone=payload.phone,
        )
    else:
        contact.name, contact.phone = payload.name, payload.phone
    if payload.kind == "staff":
        coach = await store.find(CoachView, payload.person_id)
        if coach is not None and not coach.removed:
            coach.name = payload.name
        return None
    if row is None:
        return None  # not enrolled yet: participant.enrolled takes the name from here
    row.first_name, row.phone = payload.name, payload.phone
    return _changed(row, envelope)


async def on_contact_tombstone(store: ProjectionStore, key: str) -> None:
    """The person's details are erased from meer.contact: from every copy here too."""
    person_id = UUID(key)
    await store.remove(ContactView, person_id)
    row = await store.find(DashboardRow, person_id)
    if row is not None:
        projection.erase_personal_data(row)
    coach = await store.find(CoachView, person_id)
    if coach is not None:
        coach.name = None


TOMBSTONE_APPLIERS: Mapping[str, Callable[[ProjectionStore, str], Awaitable[None]]] = {
    Topic.CONTACT: on_contact_tombstone
}
"""What a tombstone (null value) on a compacted topic does, by topic (live consumer and rebuild)."""


async def on_staff_access_changed(store: ProjectionStore, envelope: Envelope) -> None:
    """The newest access (highest token version) says whether the coach is active; a
    removal erases the name for good, whichever of coach.added and this came first."""
    payload = _parse(envelope, StaffAccessChanged)
    if payload.role != "coach":
        return
    coach = await store.coach(payload.staff_id, envelope.org_id)
    if payload.token_version > coach.access_version:
        coach.access_version, coach.active = payload.token_version, payload.active
    if payload.removed:
        coach.removed, coach.active, coach.name = True, False, None


# --- mail.* -----------------------------------------------------------------------------


async def on_mail_sent(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, MailSent)
    row = await _row(store, envelope)
    mail = await store.mail(payload.delivery_id, row.participant_id, payload.day)
    before = projection.mail_counts(mail)
    projection.record_sent(mail, title=payload.lesson_title, sent_at=payload.sent_at)
    projection.apply_mail_change(row, before, mail)
    projection.derive_status(row)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_mail_failed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, MailFailed)
    row = await _row(store, envelope)
    mail = await store.mail(payload.delivery_id, row.participant_id, payload.day)
    before = projection.mail_counts(mail)
    projection.record_failure(mail, failed_at=payload.failed_at, reason=payload.reason)
    projection.apply_mail_change(row, before, mail)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_programme_completed(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, ProgrammeCompleted)
    row = await _row(store, envelope)
    if row.programme_completed_at is None or payload.completed_at < row.programme_completed_at:
        row.programme_completed_at = payload.completed_at
    projection.derive_status(row)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


# --- engagement ---------------------------------------------------------------------------


async def on_mail_opened(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, MailOpened)
    row = await _row(store, envelope)
    mail = await store.mail(payload.delivery_id, row.participant_id, payload.day)
    before = projection.mail_counts(mail)
    projection.record_open(mail, payload.opened_at, likely_automated=payload.likely_automated)
    projection.apply_mail_change(row, before, mail)
    store.add(
        OpenSeen,
        event_id=envelope.event_id,
        participant_id=row.participant_id,
        delivery_id=payload.delivery_id,
        day=payload.day,
        opened_at=payload.opened_at,
        likely_automated=payload.likely_automated,
    )
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_link_clicked(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged | None:
    payload = _parse(envelope, LinkClicked)
    if payload.likely_automated:
        return None  # a scanner following links says nothing about the participant
    row = await _row(store, envelope)
    mail = await store.mail(payload.delivery_id, row.participant_id, payload.day)
    before = projection.mail_counts(mail)
    projection.record_click(mail, payload.clicked_at)
    projection.apply_mail_change(row, before, mail)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_assignment_reported(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, AssignmentReported)
    row = await _row(store, envelope)
    answer = projection.ReportAnswer(
        delivery_id=payload.delivery_id,
        score=payload.score,
        note=None if row.lifecycle == "erased" else payload.note,
        reported_at=payload.reported_at,
        event_id=envelope.event_id,
    )
    current = await store.report(row.participant_id, payload.day)
    if current is None:
        store.add(ReportSeen, participant_id=row.participant_id, day=payload.day, **vars(answer))
    else:
        projection.record_report(current, answer)
    projection.count_report(row, answer.reported_at, new_day=current is None)
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_questionnaire_answered(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged | None:
    """Keep the latest scores per moment; an answer after erasure (events from two topics
    may cross) is not kept."""
    payload = _parse(envelope, QuestionnaireAnswered)
    row = await _row(store, envelope)
    if row.lifecycle == "erased":
        return None
    scores = {
        "total": payload.total,
        "emotional": payload.emotional,
        "social": payload.social,
        "total_imputed": payload.total_imputed,
        "category": payload.category,
        "answered_at": payload.answered_at,
    }
    current = await store.questionnaire_answer(row.participant_id, payload.moment)
    if current is None:
        store.add(
            QuestionnaireAnswerSeen,
            participant_id=row.participant_id,
            moment=payload.moment,
            org_id=envelope.org_id,
            **scores,
        )
    elif current.answered_at <= payload.answered_at:
        for name, value in scores.items():
            setattr(current, name, value)
    return _changed(row, envelope)


async def on_unsubscribe_requested(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, UnsubscribeRequested)
    row = await _row(store, envelope)
    if row.unsubscribe_requested_at is None or payload.requested_at < row.unsubscribe_requested_at:
        row.unsubscribe_requested_at = payload.requested_at
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


# --- coaching (our own events, applied at write time and again harmlessly from Kafka) ------


async def on_call_logged(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, CallLogged)
    row = await _row(store, envelope)
    store.add(
        CallSeen,
        call_id=payload.call_id,
        participant_id=row.participant_id,
        coach_id=payload.coach_id,
        called_at=payload.called_at,
        reached=payload.reached,
        duration_minutes=payload.duration_minutes,
        planned_call=payload.planned_call,
    )
    projection.summarise_calls(row, await store.calls(row.participant_id))
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


async def on_plan_updated(store: ProjectionStore, envelope: Envelope) -> ParticipantChanged:
    payload = _parse(envelope, PlanUpdated)
    row = await _row(store, envelope)
    if payload.plan_version >= row.plan_version:
        row.plan_version, row.plan_updated_at = payload.plan_version, envelope.occurred_at
    projection.touch(row, envelope.occurred_at)
    return _changed(row, envelope)


APPLIERS: Mapping[str, Mapping[str, Applier]] = {
    Topic.PARTICIPANT: {
        ParticipantEnrolled.TYPE: on_participant_enrolled,
        ParticipantDetailsChanged.TYPE: on_participant_details_changed,
        ParticipantPaused.TYPE: on_participant_paused,
        ParticipantResumed.TYPE: on_participant_resumed,
        ParticipantStopped.TYPE: on_participant_stopped,
        ParticipantCompleted.TYPE: on_participant_completed,
        ParticipantCoachChanged.TYPE: on_participant_coach_changed,
        ParticipantErased.TYPE: on_participant_erased,
    },
    Topic.ORGANISATION: {
        OrganisationLicensed.TYPE: on_organisation_licensed,
        OrganisationBrandingChanged.TYPE: on_organisation_branding_changed,
        OrganisationSlugChanged.TYPE: on_organisation_slug_changed,
        CoachAdded.TYPE: on_coach_added,
    },
    Topic.STAFF: {
        StaffAccessChanged.TYPE: on_staff_access_changed,
    },
    Topic.MAIL: {
        MailSent.TYPE: on_mail_sent,
        MailFailed.TYPE: on_mail_failed,
        ProgrammeCompleted.TYPE: on_programme_completed,
    },
    Topic.ENGAGEMENT: {
        MailOpened.TYPE: on_mail_opened,
        LinkClicked.TYPE: on_link_clicked,
        AssignmentReported.TYPE: on_assignment_reported,
        QuestionnaireAnswered.TYPE: on_questionnaire_answered,
        UnsubscribeRequested.TYPE: on_unsubscribe_requested,
    },
    Topic.COACHING: {
        CallLogged.TYPE: on_call_logged,
        PlanUpdated.TYPE: on_plan_updated,
    },
    Topic.CONTACT: {
        ContactDetailsSet.TYPE: on_contact_details_set,
    },
}
"""Every event coaching applies, by topic and type (the live consumer and the rebuild share it)."""


async def record_staff_access(session: AsyncSession, envelope: Envelope) -> None:
    """staff.access_changed: keep the newest access (highest token version) of a staff
    member, so their older tokens are refused. Not part of the projection: a rebuild
    leaves it alone."""
    payload = envelope.parsed()
    if not isinstance(payload, StaffAccessChanged):
        raise TypeError(f"expected {StaffAccessChanged.TYPE}, got {envelope.type}")
    values = {
        "org_id": envelope.org_id,
        "token_version": payload.token_version,
        "active": payload.active,
        "updated_at": utcnow(),
    }
    statement = insert(StaffAccessCopy).values(staff_id=payload.staff_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["staff_id"],
            set_=values,
            where=col(StaffAccessCopy.token_version) < statement.excluded.token_version,
        )
    )


_STORE, _FINISH, _LATEST = "coaching.store", "coaching.finish", "coaching.latest"
_MAIL_PAYLOADS = (MailSent, MailFailed, MailOpened, LinkClicked)
_WITHOUT_PARTICIPANT = frozenset({Topic.ORGANISATION, Topic.STAFF, Topic.CONTACT})


async def batch_store(session: AsyncSession) -> LiveBatchStore:
    """The projection store of the consumer unit of work `session` belongs to (one per batch,
    on the transaction's own connection)."""
    work = unit_of_work(session)
    store = work.state.get(_STORE)
    if not isinstance(store, LiveBatchStore):
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        store = work.state[_STORE] = LiveBatchStore(raw)
    return store


async def load_batch(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Before a batch is applied: load and lock its participants' rows, and load its mails,
    reports and contact details, in a few queries (the ids are read from the parsed payloads; a
    malformed one is left to its change, which refuses it). The people whose rows two topics
    make together (participant.enrolled or coach.added, and contact.details_set) are locked
    first. The rows of participants whose first event here is their enrolment are made here,
    all in one statement, as that event's change would make each one (store.participant)."""
    participant_ids: set[UUID] = set()
    delivery_ids: set[UUID] = set()
    reports: set[tuple[UUID, int]] = set()
    contacts: set[UUID] = set()
    new_rows: dict[UUID, tuple[UUID, datetime]] = {}
    """Participants whose enrolment is the first event here to make their row, with what it
    makes the row from (contact details only look for the row: the row they find made
    already gets the name that the enrolment would copy onto it a moment later)."""
    asked: set[UUID] = set()
    """Participants whose row an earlier event here asks for (store.participant)."""
    for envelope in envelopes:
        payload: Payload | None = None
        with contextlib.suppress(LookupError, TypeError, ValueError):
            # Parsed once per envelope (the consumer parsed it already; its change asks again).
            payload = envelope.parsed()
        if isinstance(payload, ContactDetailsSet):
            contacts.add(payload.person_id)
            if payload.kind == "participant":
                participant_ids.add(payload.person_id)
            continue
        if envelope.participant_id is None or envelope.topic in _WITHOUT_PARTICIPANT:
            continue
        if isinstance(payload, ParticipantEnrolled):
            contacts.add(envelope.participant_id)
            if envelope.participant_id not in asked:
                new_rows[envelope.participant_id] = (envelope.org_id, envelope.occurred_at)
        asked.add(envelope.participant_id)
        participant_ids.add(envelope.participant_id)
        if isinstance(payload, _MAIL_PAYLOADS):
            delivery_ids.add(payload.delivery_id)
        elif isinstance(payload, AssignmentReported) and 0 < payload.day < 2**31:
            # No row has another day (and PostgreSQL's int could not hold it).
            reports.add((envelope.participant_id, payload.day))
    store = await batch_store(session)
    await store.lock_people(people_made_from_two_topics(envelopes))
    await store.load(
        participant_ids=participant_ids,
        delivery_ids=delivery_ids,
        reports=reports,
        contacts=contacts,
        new_rows=new_rows,
    )


def _coalesce(before: ParticipantChanged | None, change: ParticipantChanged) -> ParticipantChanged:
    """One push per participant per batch: every coach that must hear of it, and an open
    (the change a dashboard announces) over what came with it."""
    if before is None:
        return change
    kind = MailOpened.TYPE if MailOpened.TYPE in (before.event_type, change.event_type) else change.event_type
    return replace(change, coach_ids=before.coach_ids | change.coach_ids, event_type=kind)


async def finish_batch(session: AsyncSession, store: LiveBatchStore, latest: _Latest, tz: ZoneInfo) -> None:
    """At the end of a batch, before its commit: write what changed, publish the call plans and
    alerts of the participants whose inputs changed (only what differs from what was told),
    and notify every replica's dashboards (delivered when the transaction commits)."""
    written = await store.write()
    if store.erased:
        await erase_authored_data(session, sorted(store.erased))
    rows = store.tables[DashboardRow]
    full_plan, full_alerts = written.plan_changed, written.alerts_changed
    requests = {
        participant_id: PlanRequest(
            Publish(
                plan=participant_id in full_plan or participant_id in written.sends,
                alerts=participant_id in full_alerts or participant_id in written.opened,
            ),
            latest[participant_id][0] if participant_id in latest else rows[participant_id].updated_at,
            sends=None if participant_id in full_plan else tuple(written.sends.get(participant_id, ())),
            opens_only=participant_id not in full_alerts,
        )
        for participant_id in full_plan | full_alerts | written.sends.keys() | written.opened
        if participant_id in rows
    }
    await publish_call_plans(session, requests, tz=tz, rows=rows)
    await notify_changes(store.connection, [change for _, change in latest.values()])


_Latest = dict[UUID, tuple[datetime, ParticipantChanged]]
"""Per participant changed in a batch: the moment of their last event, and the coalesced change."""


async def _batch(session: AsyncSession, tz: ZoneInfo) -> tuple[LiveBatchStore, _Latest]:
    """The batch's store and its changed participants; the first change of a batch leaves
    finish_batch for its end."""
    store = await batch_store(session)
    work = unit_of_work(session)
    latest: _Latest | None = work.state.get(_LATEST)
    if latest is None:
        latest = work.state[_LATEST] = {}
        work.before_commit(_FINISH, lambda: finish_batch(session, store, latest, tz))
    return store, latest


def build_handlers(hub: LiveHub, tz: ZoneInfo) -> dict[str, dict[str, Change]]:
    """Changes by topic and event type, each applying its event to the batch's projection store.
    Per batch, what changed is written once before the commit (finish_batch), and every
    replica's open dashboards get one push per participant after it (through LiveListener;
    `hub` is kept for the signature the tests and benchmarks use)."""
    del hub  # the pushes travel through PostgreSQL, also to this replica's own dashboards

    def change_of(apply: Applier) -> Change:
        async def change(session: AsyncSession, envelope: Envelope, _: object) -> None:
            store, latest = await _batch(session, tz)
            changed = await apply(store, envelope)
            if changed is not None:
                earlier = latest.get(changed.participant_id)
                latest[changed.participant_id] = (
                    envelope.occurred_at,
                    _coalesce(earlier[1] if earlier else None, changed),
                )

        change.__name__ = apply.__name__
        return change

    async def on_access_changed(session: AsyncSession, envelope: Envelope, _: object) -> None:
        await record_staff_access(session, envelope)
        await record_staff_copy(session, envelope)
        store, _latest = await _batch(session, tz)
        await on_staff_access_changed(store, envelope)

    handlers = {
        topic: {kind: change_of(apply) for kind, apply in by_type.items()} for topic, by_type in APPLIERS.items()
    }
    handlers[Topic.STAFF] = {StaffAccessChanged.TYPE: on_access_changed, StaffInvited.TYPE: record_staff_copy}
    handlers[Topic.ORGANISATION][OrganisationLocalOffersChanged.TYPE] = on_local_offers_changed
    return handlers


def build_tombstone_handlers(tz: ZoneInfo) -> dict[str, TombstoneChange]:
    """Tombstones by topic (no event id: deleting twice is harmless)."""

    def change_of(apply: Callable[[ProjectionStore, str], Awaitable[None]]) -> TombstoneChange:
        async def change(session: AsyncSession, key: str) -> None:
            store, _latest = await _batch(session, tz)
            # Taking turns with an enrolment applied at the same moment, which would otherwise put
            # the name this erases on a dashboard row this does not see yet.
            with contextlib.suppress(ValueError):  # a malformed key: the applier refuses it
                await store.lock_people([UUID(key)])
            await apply(store, key)

        return change

    return {topic: change_of(apply) for topic, apply in TOMBSTONE_APPLIERS.items()}


def register_kafka_handlers(runtime: Runtime, hub: LiveHub, tz: ZoneInfo) -> None:
    """Subscribe coaching's one consumer to every topic it projects."""
    runtime.subscribe(
        {**build_handlers(hub, tz), **build_export_handlers()}, build_tombstone_handlers(tz), prepare=load_batch
    )
