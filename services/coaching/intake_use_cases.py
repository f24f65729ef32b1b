"""The intake's use cases and reads: submit a signal, hand it over, the coach's steps (first
contact, own question and causes, then enrol, refer or close), the signaller's statuses and
the organisation's counts.

Each write is one transaction: the signal row (locked), its step and its event in the outbox.
Enrolling asks enrolment first (the coach's own token, enrolment's normal path) and writes
only with the participant id enrolment answered, so nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Protocol
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import intake, storage
from services.coaching.auth import Viewer
from services.coaching.handlers import on_plan_updated
from services.coaching.intake_tables import (
    AssignmentCreate,
    ClosureCreate,
    FirstContactCreate,
    LocalOffersCopy,
    QuestionCreate,
    Signal,
    SignalCreate,
    SignalStep,
    StaffCopy,
)
from services.coaching.plan import CAUSES
from services.coaching.storage import SqlProjectionStore
from services.coaching.tables import CoachView, PlanVersion
from shared.db import claim_event
from shared.errors import Refusal
from shared.events import (
    Envelope,
    PlanUpdated,
    SignalAssigned,
    SignalClosed,
    SignalContactMade,
    SignalEnrolled,
    SignalEvent,
    SignalQuestionRecorded,
    SignalReceived,
    SignalReferred,
)
from shared.outbox import add_to_outbox

NOT_YOURS = Refusal("not_found", "There is no such signal among yours.", dutch="Dit signaal staat niet in uw lijst.")


# --- reads ------------------------------------------------------------------------------------


async def visible_signal(session: AsyncSession, viewer: Viewer, signal_id: UUID, *, lock: bool = False) -> Signal:
    """The signal if the viewer works on it: the organisation's admin, or the coach it is assigned to."""
    found = await session.get(Signal, signal_id, with_for_update=lock, populate_existing=lock)
    if found is None or found.org_id != viewer.claims.org_id or viewer.is_partner:
        raise NOT_YOURS
    if not viewer.is_admin and (found.coach_id is None or found.coach_id != viewer.claims.coach_id):
        raise NOT_YOURS
    return found


async def work_list(session: AsyncSession, viewer: Viewer) -> list[Signal]:
    """The signals to work on: for the admin every signal with consent (new ones first), for a coach theirs."""
    statement = select(Signal).where(col(Signal.org_id) == viewer.claims.org_id, col(Signal.consent))
    if not viewer.is_admin:
        statement = statement.where(col(Signal.coach_id) == viewer.claims.coach_id)
    rows = list((await session.execute(statement)).scalars())
    order = {"new": 0, "assigned": 1, "contacted": 2}
    return sorted(rows, key=lambda s: (order.get(s.state, 3), -s.received_at.timestamp()))


async def submitted_by(session: AsyncSession, viewer: Viewer) -> list[Signal]:
    """The signals the viewer submitted, newest first."""
    statement = (
        select(Signal)
        .where(col(Signal.org_id) == viewer.claims.org_id, col(Signal.submitted_by) == viewer.claims.staff_id)
        .order_by(col(Signal.received_at).desc())
        .limit(200)
    )
    return list((await session.execute(statement)).scalars())


async def steps(session: AsyncSession, signal_ids: Sequence[UUID]) -> list[SignalStep]:
    """The steps of these signals, newest first."""
    if not signal_ids:
        return []
    statement = select(SignalStep).where(col(SignalStep.signal_id).in_(signal_ids))
    return sorted((await session.execute(statement)).scalars(), key=lambda s: s.occurred_at, reverse=True)


async def steps_of_participant(session: AsyncSession, participant_id: UUID) -> list[SignalStep]:
    """The intake steps of the signal a participant was enrolled from (for their timeline)."""
    statement = select(Signal).where(col(Signal.participant_id) == participant_id)
    return await steps(session, [signal.signal_id for signal in (await session.execute(statement)).scalars()])


async def active_coaches(session: AsyncSession, org_id: UUID) -> list[CoachView]:
    statement = select(CoachView).where(col(CoachView.org_id) == org_id, col(CoachView.active))
    return sorted((await session.execute(statement)).scalars(), key=lambda c: (c.name or "").lower())


async def local_offers(session: AsyncSession, org_id: UUID) -> list[dict[str, Any]]:
    """The organisation's current local offers (as organisation.local_offers_changed told them)."""
    found = await session.get(LocalOffersCopy, org_id)
    return list(found.offers) if found else []


def signal_dates(signal: Signal, tz: ZoneInfo) -> intake.SignalDates:
    def day(at: datetime | None) -> date | None:
        return at.astimezone(tz).date() if at else None

    return intake.SignalDates(
        received_on=signal.received_at.astimezone(tz).date(),
        assigned_on=day(signal.assigned_at),
        contact_on=signal.contact_date,
        finished_on=day(signal.finished_at),
    )


async def counts(session: AsyncSession, org_id: UUID, tz: ZoneInfo) -> intake.CountsReport:
    """The organisation's counts: every signal, anonymous ones too."""
    rows = (await session.execute(select(Signal).where(col(Signal.org_id) == org_id))).scalars()
    counted = []
    for signal in rows:
        dates = signal_dates(signal, tz)
        counted.append(
            intake.CountedSignal(
                partner_organisation=signal.partner_organisation,
                received_on=dates.received_on,
                assigned_on=dates.assigned_on,
                contact_on=dates.contact_on,
                outcome=signal.state if signal.state in intake.FINISHED else None,
            )
        )
    return intake.count_signals(counted)


# --- writes ---------------------------------------------------------------------------------------


def _stage(session: AsyncSession, signal: Signal, payload: SignalEvent, now: datetime, **facts: Any) -> None:
    """The step on the signal's timeline and its event in the outbox, in the caller's transaction."""
    envelope = Envelope.wrap(
        payload,
        org_id=signal.org_id,
        participant_id=getattr(payload, "participant_id", None),
        occurred_at=now,
    )
    session.add(
        SignalStep(
            event_id=envelope.event_id,
            signal_id=signal.signal_id,
            type=envelope.type,
            occurred_at=now,
            coach_id=getattr(payload, "coach_id", None),
            facts=facts,
        )
    )
    add_to_outbox(session, envelope)


async def submit_signal(session: AsyncSession, *, viewer: Viewer, body: SignalCreate, now: datetime) -> Signal:
    """A new signal of the viewer's organisation; the partner's own organisation from coaching's staff copy."""
    content = intake.normalise_signal(
        consent=body.consent,
        first_name=body.first_name,
        phone=body.phone,
        email=body.email,
        noticed=body.noticed,
        note=body.note,
    )
    if await storage.organisation(session, org_id=viewer.claims.org_id) is None:
        raise Refusal(
            "not_found",
            "Your organisation is not known here (yet).",
            dutch="Uw organisatie is hier (nog) niet bekend. Probeer het later nog eens of vraag het uw coördinator.",
        )
    staff = await session.get(StaffCopy, viewer.claims.staff_id)
    partner_organisation = staff.partner_organisation if staff is not None and viewer.is_partner else None
    signal = Signal(
        signal_id=uuid4(),
        org_id=viewer.claims.org_id,
        submitted_by=viewer.claims.staff_id,
        submitted_role=viewer.claims.role,
        partner_organisation=partner_organisation,
        consent=content.consent,
        first_name=content.first_name,
        phone=content.phone,
        email=content.email,
        note=content.note,
        noticed=list(content.noticed),
        state="new",
        received_at=now,
    )
    session.add(signal)
    _stage(
        session,
        signal,
        SignalReceived(
            signal_id=signal.signal_id,
            signaller_staff_id=viewer.claims.staff_id,
            consent=content.consent,
            noticed=content.noticed,
        ),
        now,
        noticed=list(content.noticed),
        consent=content.consent,
    )
    await session.commit()
    return signal


def _require_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise Refusal(
            "forbidden",
            "Only the organisation's coordinator hands signals over.",
            dutch="Alleen de coördinator van uw organisatie wijst signalen toe.",
        )


def _assigned_coach(viewer: Viewer, signal: Signal) -> UUID:
    if viewer.claims.coach_id is None or viewer.claims.coach_id != signal.coach_id:
        raise Refusal(
            "forbidden",
            "Only the coach the signal is assigned to takes this step.",
            dutch="Alleen de coach aan wie het signaal is toegewezen, kan deze stap zetten.",
        )
    return viewer.claims.coach_id


async def assign(
    session: AsyncSession, *, viewer: Viewer, signal_id: UUID, body: AssignmentCreate, now: datetime
) -> Signal:
    """The coordinator hands the signal to an active coach of the organisation (again, while open)."""
    _require_admin(viewer)
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    intake.check_assign(state=signal.state, consent=signal.consent)
    coach = await session.get(CoachView, body.coach_id)
    if coach is None or coach.org_id != signal.org_id or not coach.active:
        raise Refusal(
            "invalid",
            "Choose an active coach of your organisation.",
            field="coach_id",
            dutch="Kies een coach van uw organisatie.",
        )
    signal.coach_id, signal.assigned_at = coach.coach_id, now
    if signal.state == "new":
        signal.state = "assigned"
    _stage(session, signal, SignalAssigned(signal_id=signal.signal_id, coach_id=coach.coach_id), now)
    await session.commit()
    return signal


async def record_first_contact(
    session: AsyncSession, *, viewer: Viewer, signal_id: UUID, body: FirstContactCreate, now: datetime, tz: ZoneInfo
) -> Signal:
    """The assigned coach made the first contact, on a day not in the future."""
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    coach_id = _assigned_coach(viewer, signal)
    intake.check_first_contact(
        state=signal.state,
        contact_date=body.contact_date,
        received_on=signal.received_at.astimezone(tz).date(),
        today=now.astimezone(tz).date(),
    )
    signal.state, signal.contact_date, signal.discussable = "contacted", body.contact_date, body.discussable
    signal.contact_recorded_at = now
    _stage(
        session,
        signal,
        SignalContactMade(
            signal_id=signal.signal_id, coach_id=coach_id, contact_date=body.contact_date, discussable=body.discussable
        ),
        now,
        contact_date=body.contact_date.isoformat(),
        discussable=body.discussable,
    )
    await session.commit()
    return signal


async def record_question(
    session: AsyncSession, *, viewer: Viewer, signal_id: UUID, body: QuestionCreate, now: datetime
) -> Signal:
    """The person's own question and the causes, after the first contact (the newest counts)."""
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    coach_id = _assigned_coach(viewer, signal)
    question = intake.normalise_question(
        state=signal.state, own_question=body.own_question, causes=body.causes, checklist=CAUSES
    )
    signal.own_question, signal.causes = question.own_question, list(question.causes)
    signal.question_recorded_at = now
    _stage(
        session,
        signal,
        SignalQuestionRecorded(signal_id=signal.signal_id, coach_id=coach_id, causes=question.causes),
        now,
        causes=list(question.causes),
    )
    await session.commit()
    return signal


class EnrolmentUnavailable(Exception):
    """Enrolment could not be reached or failed: nothing was written, the coach may try again."""


@dataclass(frozen=True)
class EnrolmentRequest:
    """What coaching asks enrolment for: the person, the coach as their fixed coach, consent via the signal."""

    org_id: UUID
    signal_id: UUID
    coach_id: UUID
    first_name: str
    email: str
    phone: str | None
    token: str
    consent_given_at: datetime
    start_date: date | None = None
    send_time: time | None = None


class Enroller(Protocol):
    """Enrolment's normal path for a new participant; returns the participant's id or raises
    Refusal (enrolment said no) or EnrolmentUnavailable."""

    async def enrol(self, request: EnrolmentRequest) -> UUID: ...


async def enrol(
    session: AsyncSession,
    *,
    viewer: Viewer,
    signal_id: UUID,
    email: str | None,
    now: datetime,
    enroller: Enroller,
    start_date: date | None = None,
    send_time: time | None = None,
) -> tuple[Signal, bool]:
    """One click: enrolment creates the participant; then, in one transaction, the signal is
    enrolled, its contact blanked (the participant record holds it now) and the own question and
    causes become the first version of the personal plan. Returns the signal and whether it was
    enrolled just now (False: it already was, a retry)."""
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    if signal.state == "enrolled":
        return signal, False
    coach_id = _assigned_coach(viewer, signal)
    intake.check_outcome(state=signal.state, question_recorded=signal.question_recorded_at is not None, enrol=True)
    address = intake.normalise_email(email) if email and email.strip() else signal.email
    if address is None:
        raise Refusal(
            "invalid",
            "Meer contact sends its lessons by e-mail: give the person's e-mail address.",
            field="email",
            dutch="Meer contact stuurt de lessen per e-mail. Vul het e-mailadres van de persoon in.",
        )
    assert signal.first_name is not None  # a signal with consent has a name until it is finished
    participant_id = await enroller.enrol(
        EnrolmentRequest(
            org_id=signal.org_id,
            signal_id=signal.signal_id,
            coach_id=coach_id,
            first_name=signal.first_name,
            email=address,
            phone=signal.phone,
            token=viewer.token,
            # The person agreed to take part in the coach's conversation; the click records it.
            consent_given_at=now,
            start_date=start_date,
            send_time=send_time,
        )
    )
    signal.state, signal.participant_id, signal.finished_at = "enrolled", participant_id, now
    signal.phone = signal.email = None
    _stage(
        session,
        signal,
        SignalEnrolled(signal_id=signal.signal_id, coach_id=coach_id, participant_id=participant_id),
        now,
        participant_id=str(participant_id),
    )
    await _first_plan_version(session, signal, participant_id=participant_id, coach_id=coach_id, viewer=viewer, now=now)
    await session.commit()
    return signal, True


async def _first_plan_version(
    session: AsyncSession, signal: Signal, *, participant_id: UUID, coach_id: UUID, viewer: Viewer, now: datetime
) -> None:
    # Written now, not when the participant reaches the projection: the id is known, and the
    # plan commits with the enrolment of the signal or not at all.
    await storage.lock_participant(session, participant_id=participant_id)
    versions = await storage.plan_versions(session, participant_id=participant_id)
    noticed = ", ".join(intake.NOTICED[key] for key in signal.noticed if key in intake.NOTICED)
    version = PlanVersion(
        participant_id=participant_id,
        version=(versions[0].version if versions else 0) + 1,
        org_id=signal.org_id,
        coach_id=coach_id,
        staff_id=viewer.claims.staff_id,
        created_at=now,
        noticed_how=f"Gesignaleerd: {noticed.lower()}" if noticed else None,
        own_question=signal.own_question,
        causes=list(signal.causes),
    )
    envelope = Envelope.wrap(
        PlanUpdated(coach_id=coach_id, plan_version=version.version),
        org_id=signal.org_id,
        participant_id=participant_id,
        occurred_at=now,
    )
    await claim_event(session, envelope.event_id)
    session.add(version)
    await on_plan_updated(SqlProjectionStore(session), envelope)
    add_to_outbox(session, envelope)


async def refer(session: AsyncSession, *, viewer: Viewer, signal_id: UUID, offer_id: UUID, now: datetime) -> Signal:
    """The assigned coach refers the person to one of the organisation's local offers."""
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    coach_id = _assigned_coach(viewer, signal)
    intake.check_outcome(state=signal.state, question_recorded=signal.question_recorded_at is not None, enrol=False)
    if str(offer_id) not in {str(offer.get("offer_id")) for offer in await local_offers(session, signal.org_id)}:
        raise Refusal(
            "invalid",
            "Choose one of your organisation's local offers.",
            field="offer_id",
            dutch="Kies een aanbod uit de lijst van uw organisatie.",
        )
    signal.state, signal.offer_id, signal.finished_at = "referred", offer_id, now
    _stage(
        session,
        signal,
        SignalReferred(signal_id=signal.signal_id, coach_id=coach_id, offer_id=offer_id),
        now,
        offer_id=str(offer_id),
    )
    await session.commit()
    return signal


async def close(
    session: AsyncSession, *, viewer: Viewer, signal_id: UUID, body: ClosureCreate, now: datetime
) -> Signal:
    """The assigned coach (or the coordinator) closes an open signal with a reason; the person's
    name, contact, the signaller's note and the question are blanked: they are no longer needed."""
    signal = await visible_signal(session, viewer, signal_id, lock=True)
    if not viewer.is_admin:
        _assigned_coach(viewer, signal)
    note = intake.check_close(state=signal.state, reason=body.reason, note=body.note)
    signal.state, signal.close_reason, signal.close_note, signal.finished_at = "closed", body.reason, note, now
    signal.first_name = signal.phone = signal.email = signal.note = signal.own_question = None
    coach_id = viewer.claims.coach_id if viewer.claims.coach_id == signal.coach_id else None
    _stage(
        session,
        signal,
        SignalClosed(signal_id=signal.signal_id, coach_id=coach_id, reason=body.reason),
        now,
        reason=body.reason,
    )
    await session.commit()
    return signal
