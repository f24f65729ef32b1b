"""Mailer's Kafka handlers: keep the mailer's own copy of participants, organisations and
coaches up to date, and queue the transactional mails other services ask for.
Each is a change in the shared consumer unit of work (shared.kafka: claimed once per event,
applied in a batch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Update, delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.mailer import storage
from services.mailer.delivery import WAIT_FOR_COPIES
from services.mailer.domain import contacts_to_load, fold_copies
from services.mailer.export import build_export_handlers
from services.mailer.tables import (
    AlertCopy,
    CoachCopy,
    ContactCopy,
    Delivery,
    LocalOffersCopy,
    OrganisationCopy,
    PlannedCallCopy,
    Recipient,
    StaffAccessCopy,
    TransactionalMail,
)
from services.mailer.use_cases import not_being_sent, unschedule_due_deliveries
from shared.db import lock_people, utcnow
from shared.events import (
    AlertCleared,
    AlertRaised,
    CallCancelled,
    CallLogged,
    CallMoved,
    CallPlanned,
    CallSuspended,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    OrganisationBrandingChanged,
    OrganisationLicensed,
    OrganisationLocalOffersChanged,
    ParticipantCoachChanged,
    ParticipantConfirmationRequested,
    ParticipantConfirmationRequestedV1,
    ParticipantDetailsChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    QuestionnaireAnswered,
    StaffAccessChanged,
    StaffInvited,
    StaffInvitedV1,
    Topic,
    people_made_from_two_topics,
)
from shared.kafka import Change, TombstoneChange, unit_of_work
from shared.runtime import Runtime

QUESTIONNAIRE_MAILS = ("questionnaire_follow_up", "questionnaire_reminder")
_FOLDED = "mailer.folded"
"""The unit of work's run of folded events not written yet (domain.FOLDED_TYPES)."""


def build_handlers(wake_scheduler: Callable[[], None]) -> dict[str, dict[str, Change]]:
    """Changes by topic and event type. One session serves a whole batch. The copies that
    arrive by the thousand (contact details, enrolments, planned calls, alerts) are folded in
    memory and written once per table (domain.fold_copies); every other change first writes
    the run folded so far, then writes at once with SQL statements: rows are read with
    populate_existing, never from the session's memory of an earlier event."""

    def once(change: Change, *, wakes: bool = False) -> Change:
        in_order = _after_folded(change)
        if not wakes:
            return in_order

        async def and_wake(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
            await in_order(session, envelope, payload)
            unit_of_work(session).after_commit(wake_scheduler)  # once per batch

        return and_wake

    def folded(*, wakes: bool = False) -> Change:
        async def fold(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
            work = unit_of_work(session)
            work.state.setdefault(_FOLDED, []).append((envelope, payload))
            work.before_commit(_FOLDED, lambda: write_folded(session))
            if wakes:
                work.after_commit(wake_scheduler)

        return fold

    async def upsert_organisation(session: AsyncSession, envelope: Envelope, p: OrganisationLicensed) -> None:
        values = {"name": p.name, "branding": p.branding.model_dump(mode="json")}
        await session.execute(
            insert(OrganisationCopy)
            .values(org_id=envelope.org_id, **values)
            .on_conflict_do_update(index_elements=["org_id"], set_=values)
        )

    async def change_branding(session: AsyncSession, envelope: Envelope, p: OrganisationBrandingChanged) -> None:
        branding = p.branding.model_dump(mode="json")
        await session.execute(
            insert(OrganisationCopy)
            .values(org_id=envelope.org_id, name=p.branding.display_name, branding=branding)
            .on_conflict_do_update(index_elements=["org_id"], set_={"branding": branding})
        )

    async def copy_local_offers(session: AsyncSession, envelope: Envelope, p: OrganisationLocalOffersChanged) -> None:
        values = {"offers": [offer.model_dump(mode="json") for offer in p.offers], "updated_at": utcnow()}
        await session.execute(
            insert(LocalOffersCopy)
            .values(org_id=envelope.org_id, **values)
            .on_conflict_do_update(index_elements=["org_id"], set_=values)
        )

    async def add_coach(session: AsyncSession, envelope: Envelope, p: CoachAdded) -> None:
        # Name and address come from meer.contact, before or after this event.
        contact = await session.get(ContactCopy, p.coach_id, populate_existing=True)
        values = {"name": contact.name if contact else None, "email": contact.email if contact else None}
        await session.execute(
            insert(CoachCopy)
            .values(coach_id=p.coach_id, org_id=envelope.org_id, **values)
            .on_conflict_do_update(index_elements=["coach_id"], set_=values)
        )

    async def change_details(session: AsyncSession, envelope: Envelope, p: ParticipantDetailsChanged) -> None:
        # Name and address: contact.details_set on meer.contact (mails read them when they go).
        await _update_recipient(session, envelope, send_time=p.send_time, timezone=p.timezone)

    async def questionnaire_answered(session: AsyncSession, envelope: Envelope, p: QuestionnaireAnswered) -> None:
        # Answered: the one reminder of the follow-up is not needed any more.
        if p.moment == "follow_up":
            await session.execute(
                _due_questionnaire_mails(envelope, ("questionnaire_reminder",)).values(
                    status="cancelled", to_address=None, context=None
                )
            )

    async def pause(session: AsyncSession, envelope: Envelope, _: ParticipantPaused) -> None:
        recipient = await session.get(Recipient, envelope.participant_id, with_for_update=True, populate_existing=True)
        if recipient is None:
            return
        recipient.status, recipient.updated_at = "paused", utcnow()
        await unschedule_due_deliveries(session, recipient)

    async def resume(session: AsyncSession, envelope: Envelope, _: ParticipantResumed) -> None:
        # The next lesson follows the last one sent: paused days do not count.
        await session.execute(
            update(Recipient)
            .where(col(Recipient.participant_id) == envelope.participant_id, col(Recipient.status) == "paused")
            .values(status="active", next_check_at=None, updated_at=utcnow())
        )

    async def stop(session: AsyncSession, envelope: Envelope, p: ParticipantStopped) -> None:
        recipient = await session.get(Recipient, envelope.participant_id, populate_existing=True)
        await _update_recipient(session, envelope, status="stopped")
        await _cancel_due_deliveries(session, envelope)
        await session.execute(
            _due_questionnaire_mails(envelope, QUESTIONNAIRE_MAILS).values(
                status="cancelled", to_address=None, context=None
            )
        )
        if p.by == "participant" and recipient is not None:
            session.add(
                TransactionalMail(
                    kind="stop_confirmation",
                    org_id=envelope.org_id,
                    participant_id=envelope.participant_id,
                    contact_id=envelope.participant_id,
                    context={},
                )
            )

    async def change_coach(session: AsyncSession, envelope: Envelope, p: ParticipantCoachChanged) -> None:
        await _update_recipient(session, envelope, coach_id=p.coach_id)

    async def erase(session: AsyncSession, envelope: Envelope, _: ParticipantErased) -> None:
        # Address and name go; delivery rows (ids, days, pack versions) hold no personal data.
        await _cancel_due_deliveries(session, envelope)
        await session.execute(delete(Recipient).where(col(Recipient.participant_id) == envelope.participant_id))
        await session.execute(
            delete(PlannedCallCopy).where(col(PlannedCallCopy.participant_id) == envelope.participant_id)
        )
        await session.execute(delete(AlertCopy).where(col(AlertCopy.participant_id) == envelope.participant_id))
        await session.execute(
            delete(TransactionalMail).where(col(TransactionalMail.participant_id) == envelope.participant_id)
        )
        await session.execute(delete(ContactCopy).where(col(ContactCopy.person_id) == envelope.participant_id))

    # The link stays sealed in the stored context; the sender opens it only to render the mail.
    # The address (and name) come from the contact copy when the mail goes; only version 1
    # events, published before meer.contact, still carry them.
    async def request_confirmation(
        session: AsyncSession,
        envelope: Envelope,
        p: ParticipantConfirmationRequested | ParticipantConfirmationRequestedV1,
    ) -> None:
        if isinstance(p, ParticipantConfirmationRequested):
            to_address, context = None, {"sealed_link": p.sealed_link}
        else:
            to_address, context = p.email, {"confirm_url": p.confirm_url}
        session.add(
            TransactionalMail(
                kind="confirmation",
                org_id=envelope.org_id,
                participant_id=envelope.participant_id,
                contact_id=envelope.participant_id,
                to_address=to_address,
                context=context,
            )
        )

    async def invite_staff(session: AsyncSession, envelope: Envelope, p: StaffInvited | StaffInvitedV1) -> None:
        context: dict[str, Any]
        if isinstance(p, StaffInvited):
            to_address, context = None, {"role": p.role, "sealed_link": p.sealed_link}
        else:
            to_address = p.email
            context = {"name": p.name, "role": p.role, "set_password_url": p.set_password_url}
        session.add(
            TransactionalMail(
                kind="invitation",
                org_id=envelope.org_id,
                contact_id=p.staff_id,
                to_address=to_address,
                context=context,
            )
        )

    async def change_staff_access(session: AsyncSession, envelope: Envelope, p: StaffAccessChanged) -> None:
        await record_staff_access(session, envelope, p)
        if p.removed:
            # The coach's name and address go with their account; the id stays for the records.
            await session.execute(
                update(CoachCopy).where(col(CoachCopy.coach_id) == p.staff_id).values(name="", email=None)
            )

    return {
        Topic.CONTACT: {ContactDetailsSet.TYPE: folded(wakes=True)},
        Topic.ORGANISATION: {
            OrganisationLicensed.TYPE: once(upsert_organisation),
            OrganisationBrandingChanged.TYPE: once(change_branding),
            OrganisationLocalOffersChanged.TYPE: once(copy_local_offers),
            CoachAdded.TYPE: once(add_coach),
        },
        Topic.PARTICIPANT: {
            ParticipantEnrolled.TYPE: folded(wakes=True),
            ParticipantDetailsChanged.TYPE: once(change_details),
            ParticipantPaused.TYPE: once(pause),
            ParticipantResumed.TYPE: once(resume, wakes=True),
            ParticipantStopped.TYPE: once(stop, wakes=True),
            ParticipantCoachChanged.TYPE: once(change_coach),
            ParticipantErased.TYPE: once(erase),
            ParticipantConfirmationRequested.TYPE: once(request_confirmation, wakes=True),
        },
        Topic.STAFF: {
            StaffInvited.TYPE: once(invite_staff, wakes=True),
            StaffAccessChanged.TYPE: once(change_staff_access),
        },
        Topic.ENGAGEMENT: {QuestionnaireAnswered.TYPE: once(questionnaire_answered)},
        Topic.COACHING: {
            CallPlanned.TYPE: folded(),
            CallMoved.TYPE: folded(),
            CallSuspended.TYPE: folded(),
            CallCancelled.TYPE: folded(),
            CallLogged.TYPE: folded(),
            AlertRaised.TYPE: folded(),
            AlertCleared.TYPE: folded(),
        },
    }


def build_tombstone_handlers() -> dict[str, TombstoneChange]:
    """A tombstone on meer.contact: the person's address and name go from every copy."""

    async def erase_contact(session: AsyncSession, key: str) -> None:
        await write_folded(session)
        person_id = UUID(key)
        # Taking turns with an enrolment applied at the same moment, which would otherwise copy
        # the address this erases onto a recipient row this does not see yet.
        await lock_people(session, [person_id])
        await session.execute(delete(ContactCopy).where(col(ContactCopy.person_id) == person_id))
        await session.execute(
            update(Recipient).where(col(Recipient.participant_id) == person_id).values(first_name=None, email=None)
        )
        await session.execute(update(CoachCopy).where(col(CoachCopy.coach_id) == person_id).values(name="", email=None))
        # A mail to this person that was still waiting for the address will never have one.
        await session.execute(
            delete(TransactionalMail).where(
                col(TransactionalMail.contact_id) == person_id, col(TransactionalMail.status) == "due"
            )
        )

    return {Topic.CONTACT: erase_contact}


async def write_folded(session: AsyncSession) -> None:
    """Write the copies folded since the last write of this unit of work (none: nothing)."""
    try:
        work = unit_of_work(session)
    except RuntimeError:
        return  # a tombstone applied on its own, outside a consumer: nothing can have been folded
    events: list[tuple[Envelope, Any]] = work.state.get(_FOLDED, [])
    if not events:
        return
    work.state[_FOLDED] = []
    # Rows the ORM still holds (a pause, a queued mail) go first, as an autoflush would send them.
    await session.flush()
    stored = await storage.load_contacts(session=session, person_ids=contacts_to_load(events))
    now = utcnow()
    await storage.write_copies(
        session=session, writes=fold_copies(events, stored), now=now, waited=now + WAIT_FOR_COPIES
    )


def _after_folded(change: Change) -> Change:
    async def after_folded(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        await write_folded(session)
        await change(session, envelope, payload)

    return after_folded


async def record_staff_access(session: AsyncSession, envelope: Envelope, p: StaffAccessChanged) -> None:
    """Keep the newest access of a staff member (the highest token version wins)."""
    values = {"org_id": envelope.org_id, "token_version": p.token_version, "active": p.active, "updated_at": utcnow()}
    statement = insert(StaffAccessCopy).values(staff_id=p.staff_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["staff_id"],
            set_=values,
            where=col(StaffAccessCopy.token_version) < statement.excluded.token_version,
        )
    )


async def _update_recipient(session: AsyncSession, envelope: Envelope, **values: Any) -> None:
    await session.execute(
        update(Recipient)
        .where(col(Recipient.participant_id) == envelope.participant_id)
        .values(**values, next_check_at=None, updated_at=utcnow())
    )


def _due_questionnaire_mails(envelope: Envelope, kinds: tuple[str, ...]) -> Update:
    return update(TransactionalMail).where(
        col(TransactionalMail.participant_id) == envelope.participant_id,
        col(TransactionalMail.kind).in_(kinds),
        col(TransactionalMail.status) == "due",
    )


async def _cancel_due_deliveries(session: AsyncSession, envelope: Envelope) -> None:
    await session.execute(
        update(Delivery)
        .where(col(Delivery.participant_id) == envelope.participant_id, col(Delivery.status) == "due", not_being_sent())
        .values(status="cancelled")
    )


def register_kafka_handlers(runtime: Runtime, wake_scheduler: Callable[[], None]) -> None:
    # An export reads the tables: it comes after the copies folded before it are written.
    exports = {
        topic: {kind: _after_folded(change) for kind, change in by_type.items()}
        for topic, by_type in build_export_handlers().items()
    }
    runtime.subscribe(
        {**build_handlers(wake_scheduler), **exports},
        build_tombstone_handlers(),
        prepare=take_turns_per_person,
    )


async def take_turns_per_person(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Before a batch is applied: lock the people whose copies it makes from two topics, so that
    an enrolment (or a coach's account) and the contact details applied by another consumer at
    the same moment cannot each miss the other, leaving a recipient without an address or a coach
    without a name, whose mails then wait for it for ever."""
    await lock_people(session, people_made_from_two_topics(envelopes))
