"""Participants: enrolment by an organisation, contact details, the lifecycle (pause, resume, stop,
complete, start, erase), another coach, and republishing contact details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, storage
from services.enrolment.domain import ParticipantFields, StoppedBy
from services.enrolment.schemas import ConsentGiven, ParticipantUpdate
from services.enrolment.storage import EnrolmentCounts, LicenceTerms
from services.enrolment.tables import Organisation, Participant, StaffMember
from shared.db import utcnow
from shared.errors import Refusal
from shared.events import (
    ContactDetailsSet,
    Envelope,
    ParticipantCoachChanged,
    ParticipantCompleted,
    ParticipantDetailsChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
    Topic,
)
from shared.ids import uuid7
from shared.outbox import add_to_outbox, add_tombstone_to_outbox


def publish(session: AsyncSession, participant: Participant, payload: Payload) -> None:
    """Stage one of the participant's events in the outbox of the caller's transaction."""
    add_to_outbox(session, Envelope.wrap(payload, org_id=participant.org_id, participant_id=participant.id))


def publish_contact(session: AsyncSession, participant: Participant) -> None:
    """The participant's current contact details on meer.contact (the only place they travel)."""
    assert participant.first_name is not None and participant.email is not None
    publish(
        session,
        participant,
        contact_event(participant.id, participant.first_name, participant.email, participant.phone),
    )


def contact_event(participant_id: UUID, first_name: str, email: str, phone: str | None) -> ContactDetailsSet:
    """A participant's contact details as meer.contact carries them."""
    return ContactDetailsSet(person_id=participant_id, kind="participant", name=first_name, email=email, phone=phone)


def erase_contact(session: AsyncSession, participant: Participant) -> None:
    """A tombstone on meer.contact: the participant's contact details go from the compacted topic."""
    add_tombstone_to_outbox(session, Topic.CONTACT, str(participant.id))


def enrolled_event(participant: Participant) -> ParticipantEnrolled:
    """participant.enrolled for this participant as they are now."""
    return ParticipantEnrolled(
        coach_id=participant.coach_id,
        start_date=participant.start_date,
        send_time=participant.send_time,
        timezone=participant.timezone,
        variant=participant.variant,
        signal_id=participant.consent_signal_id,
    )


async def capacity(*, session: AsyncSession, organisation: Organisation, now: datetime) -> int:
    """How many more participants the licence allows now; refuses when it does not run."""
    return domain.remaining_capacity(
        valid_from=organisation.licence_valid_from,
        valid_until=organisation.licence_valid_until,
        maximum=organisation.max_active_participants,
        running=await storage.running_count(session=session, org_id=organisation.id),
        today=domain.licence_today(now),
    )


ALREADY_ENROLLED = "This e-mail address is already enrolled here."


async def enrolled_from_signal(*, session: AsyncSession, org_id: UUID, signal_id: UUID) -> Participant | None:
    """The participant this organisation already enrolled from the signal, if any: a repeated
    one-click enrolment answers that person instead of enrolling them twice."""
    return await storage.participant_from_signal(session=session, org_id=org_id, signal_id=signal_id)


@dataclass(frozen=True)
class EnrolmentRequest:
    """One enrolment through the API, checked field by field, waiting to go in."""

    fields: ParticipantFields
    coach_id: UUID | None
    source: Literal["api", "admin", "signal"]
    consent: ConsentGiven | None = None


def new_participant(
    *,
    org_id: UUID,
    fields: ParticipantFields,
    coach_id: UUID,
    start_date: date,
    variant: str,
    source: Literal["api", "admin", "signal", "csv"],
    now: datetime,
    consent: ConsentGiven | None = None,
) -> tuple[dict[str, Any], tuple[Envelope, Envelope]]:
    """A new participant's row and its two events (contact details, participant.enrolled), in
    the order they go to the outbox. Plain rows, not ORM objects: thousands of those cost seconds.

    consent: how the person agreed (via a signal: its id makes the enrolment happen once, see
    enrolled_from_signal; a parallel second one is refused by uq_participant_signal)."""
    participant_id = uuid7()
    signal_id = None if consent is None else consent.signal_id
    contact = contact_event(participant_id, fields.first_name, fields.email, fields.phone)
    enrolled = ParticipantEnrolled(
        coach_id=coach_id,
        start_date=start_date,
        send_time=fields.send_time,
        timezone=fields.timezone,
        variant=variant,
        signal_id=signal_id,
    )
    events = (
        Envelope.wrap(contact, org_id=org_id, participant_id=participant_id, occurred_at=now),
        Envelope.wrap(enrolled, org_id=org_id, participant_id=participant_id, occurred_at=now),
    )
    row = {
        "id": participant_id,
        "org_id": org_id,
        "coach_id": coach_id,
        "first_name": fields.first_name,
        "email": fields.email,
        "phone": fields.phone,
        "start_date": start_date,
        "send_time": fields.send_time,
        "timezone": fields.timezone,
        "variant": variant,
        "status": "enrolled",
        "source": source,
        "consented_at": None if consent is None else consent.given_at,
        "consent_via": None if consent is None else consent.via,
        "consent_signal_id": signal_id,
        "created_at": now,
        "updated_at": now,
    }
    return row, events


def stage_new_participant(
    session: AsyncSession,
    *,
    org_id: UUID,
    fields: ParticipantFields,
    coach_id: UUID,
    start_date: date,
    variant: str,
    source: Literal["api", "admin", "signal", "csv"],
    now: datetime,
    consent: ConsentGiven | None = None,
) -> dict[str, Any]:
    """new_participant with its events staged in the outbox of the caller's transaction; the
    caller inserts the rows together (storage.insert_participants)."""
    row, events = new_participant(
        org_id=org_id,
        fields=fields,
        coach_id=coach_id,
        start_date=start_date,
        variant=variant,
        source=source,
        now=now,
        consent=consent,
    )
    for envelope in events:
        add_to_outbox(session, envelope)
    return row


@dataclass
class EnrolmentPlan:
    """What a batch of enrolments does: per request the new participant's row or the refusal
    that request alone gets; the rows to insert and their events, in outbox order."""

    outcomes: list[dict[str, Any] | Refusal]
    rows: list[dict[str, Any]]
    events: list[Envelope]


def plan_enrolments(
    *,
    org_id: UUID,
    terms: LicenceTerms,
    counts: EnrolmentCounts,
    taken: frozenset[str],
    requests: Sequence[EnrolmentRequest],
    now: datetime,
) -> EnrolmentPlan:
    """Enrol several people into one organisation: one shared count, one look-up of addresses.

    The caller holds the organisation's row lock from before `counts` was read until its commit,
    so the licence and coach counts hold exactly. `taken`: the batch's addresses already running
    here (looked up before the lock); an address enrolled in between, twice in the batch, or a
    signal enrolled twice, is refused by a unique index at the insert (uq_participant_active_email,
    uq_participant_signal), and the caller enrols the batch again one by one.
    """
    running, per_coach = counts.running, dict(counts.per_coach)
    seen = set(taken)
    plan = EnrolmentPlan(outcomes=[], rows=[], events=[])
    for request in requests:
        fields = request.fields
        try:
            domain.remaining_capacity(
                valid_from=terms.valid_from,
                valid_until=terms.valid_until,
                maximum=terms.maximum,
                running=running,
                today=domain.licence_today(now),
            )
            variant = domain.check_variant(fields.variant, terms.variants)
            start = domain.check_start_date(
                fields.start_date or domain.default_start_date(now, fields.timezone), now, fields.timezone
            )
            coach = domain.choose_coach(request.coach_id, per_coach)
            if request.consent is not None:
                domain.check_consent_given_at(request.consent.given_at, now)
            if fields.email in seen:
                raise Refusal("conflict", ALREADY_ENROLLED, field="email")
        except Refusal as refusal:
            plan.outcomes.append(refusal)
            continue
        row, events = new_participant(
            org_id=org_id,
            fields=fields,
            coach_id=coach,
            start_date=start,
            variant=variant,
            source=request.source,
            now=now,
            consent=request.consent,
        )
        running += 1
        per_coach[coach] += 1
        seen.add(fields.email)
        plan.rows.append(row)
        plan.events.extend(events)
        plan.outcomes.append(row)
    return plan


async def change_details(
    *, session: AsyncSession, participant: Participant, update: ParticipantUpdate, now: datetime
) -> bool:
    """Change contact details or mail preferences (participant.details_changed)."""
    domain.check_editable(participant.status)
    changed = False
    for name in sorted(update.model_fields_set):
        value = getattr(update, name)
        if value is None and name != "phone":
            raise Refusal("invalid", f"{name} cannot be cleared.", field=name)
        if getattr(participant, name) != value:
            setattr(participant, name, value)
            changed = True
    if not changed:
        return False
    assert participant.email is not None and participant.first_name is not None
    if "email" in update.model_fields_set and await storage.has_running_enrolment(
        session=session, org_id=participant.org_id, email=participant.email, other_than=participant.id
    ):
        raise Refusal("conflict", "This e-mail address is already enrolled here.", field="email")
    participant.updated_at = now
    session.add(participant)
    publish_contact(session, participant)  # for a pending sign-up: the confirmation mail's address
    if not domain.awaits_confirmation(participant.status):
        publish(
            session,
            participant,
            ParticipantDetailsChanged(
                send_time=participant.send_time,
                timezone=participant.timezone,
            ),
        )
    return True


def pause(*, session: AsyncSession, participant: Participant, reason: str | None, now: datetime) -> None:
    """Daily mails stop until resumed (participant.paused)."""
    participant.status = domain.next_status(participant.status, "pause")
    participant.updated_at = now
    session.add(participant)
    publish(session, participant, ParticipantPaused(reason=reason.strip() if reason else None))


def resume(*, session: AsyncSession, participant: Participant, now: datetime) -> None:
    """Mails continue with the next lesson (participant.resumed)."""
    participant.status = domain.next_status(participant.status, "resume", started=participant.started_at is not None)
    participant.updated_at = now
    session.add(participant)
    publish(session, participant, ParticipantResumed())


def stop(*, session: AsyncSession, participant: Participant, by: StoppedBy, reason: str | None, now: datetime) -> bool:
    """End the programme early (participant.stopped); False when that changes nothing (a repeated
    unsubscribe). A coach or organisation who stops someone who already stopped is refused."""
    if not domain.stop_applies(participant.status, by):
        return False
    cleaned = domain.check_stop_reason(by, reason)
    participant.status = domain.next_status(participant.status, "stop")
    participant.stopped_by, participant.stop_reason = by, cleaned
    participant.ended_at = participant.updated_at = now
    session.add(participant)
    publish(session, participant, ParticipantStopped(by=by, reason=cleaned))
    return True


def complete(*, session: AsyncSession, participant: Participant, now: datetime) -> bool:
    """Record that all lessons were sent (participant.completed); False if nothing to do."""
    if not domain.allows(participant.status, "complete"):
        return False
    participant.status = domain.next_status(participant.status, "complete")
    participant.ended_at = participant.updated_at = now
    session.add(participant)
    publish(session, participant, ParticipantCompleted())
    return True


def mark_started(*, session: AsyncSession, participant: Participant, sent_at: datetime) -> None:
    """The first lesson went out: enrolled becomes active. mail.sent is the event of this
    change, so nothing new is published; a paused participant stays paused."""
    if participant.started_at is None:
        participant.started_at = sent_at
    if domain.allows(participant.status, "start"):
        participant.status = domain.next_status(participant.status, "start")
    participant.updated_at = utcnow()
    session.add(participant)


async def change_coach(*, session: AsyncSession, participant: Participant, coach_id: UUID, now: datetime) -> bool:
    """Give the participant another coach of the organisation (participant.coach_changed)."""
    coaches = await storage.active_participants_per_coach(session=session, org_id=participant.org_id)
    if coach_id not in coaches:
        raise Refusal("invalid", "This coach does not work for this organisation.", field="coach_id")
    domain.check_editable(participant.status)
    if participant.coach_id == coach_id:
        return False
    participant.coach_id = coach_id
    participant.updated_at = now
    session.add(participant)
    if not domain.awaits_confirmation(participant.status):
        publish(session, participant, ParticipantCoachChanged(coach_id=coach_id))
    return True


def erase(*, session: AsyncSession, participant: Participant, now: datetime) -> None:
    """The right to be forgotten: personal fields go; an anonymous row stays for the counts.
    participant.erased tells every other service to remove its copy."""
    participant.status = domain.next_status(participant.status, "erase")
    participant.first_name = participant.email = participant.phone = None
    participant.stop_reason = participant.confirm_token_hash = None
    participant.erased_at = participant.updated_at = now
    session.add(participant)
    publish(session, participant, ParticipantErased())
    erase_contact(session, participant)


async def republish_contacts(*, session: AsyncSession, batch: int = 1000) -> int:
    """Put every current participant's and staff member's contact details on meer.contact again
    (once, when moving to the contact topic; or to rebuild it). Commits per batch; returns how many."""
    published = 0
    last = UUID(int=0)
    while participants := list(
        (
            await session.execute(
                select(Participant)
                .where(col(Participant.email).is_not(None), col(Participant.id) > last)
                .order_by(col(Participant.id))
                .limit(batch)
            )
        )
        .scalars()
        .all()
    ):
        for participant in participants:
            publish_contact(session, participant)
        await session.commit()
        published, last = published + len(participants), participants[-1].id
    last = UUID(int=0)
    while staff := list(
        (
            await session.execute(
                select(StaffMember)
                .where(col(StaffMember.email).is_not(None), col(StaffMember.id) > last)
                .order_by(col(StaffMember.id))
                .limit(batch)
            )
        )
        .scalars()
        .all()
    ):
        for member in staff:
            details = ContactDetailsSet(person_id=member.id, kind="staff", name=member.name or "", email=member.email)
            add_to_outbox(session, Envelope.wrap(details, org_id=member.org_id))
        await session.commit()
        published, last = published + len(staff), staff[-1].id
    return published
