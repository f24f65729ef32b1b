"""What coaches write: a call, a moved call, a new version of the personal plan.

Each is one transaction: the coach's own row, the event in the outbox, and the event
applied to the projection at once (claimed by its event id, so when it comes back from
Kafka it changes nothing, and a rebuild reproduces it from the topic).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import plan as plan_rules
from services.coaching import storage
from services.coaching.auth import Viewer
from services.coaching.callplan import publish_call_plan
from services.coaching.dashboard import Moment
from services.coaching.handlers import on_call_logged, on_plan_updated
from services.coaching.live import ParticipantChanged
from services.coaching.storage import SqlProjectionStore
from services.coaching.tables import CallCreate, CallLog, DashboardRow, PlanCreate, PlannedCallMove, PlanVersion
from shared.db import claim_event
from shared.events import CallLogged, Envelope, PlanUpdated
from shared.outbox import add_to_outbox

FUTURE_GRACE = timedelta(minutes=10)
"""A call may be logged a little 'in the future' (clocks differ), not more."""
LATEST_LESSON = 60
MOVE_WINDOW = timedelta(days=200)


class Refused(Exception):
    """The write cannot be done: an HTTP status, why in English (API) and in Dutch (page)."""

    def __init__(self, status: int, message: str, dutch: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.dutch = dutch
        self.field = field


def _writer(viewer: Viewer, row: DashboardRow) -> UUID:
    """The coach id a write is recorded under: the viewer must be a coach (an admin may be one too)."""
    if viewer.claims.coach_id is None:
        raise Refused(
            403,
            "Only a coach can log calls and keep plans.",
            "Alleen een coach kan gesprekken vastleggen en het plan bijhouden.",
        )
    if row.status == "erased":
        raise Refused(410, "This participant's data was erased.", "De gegevens van deze deelnemer zijn gewist.")
    return viewer.claims.coach_id


async def log_call(
    session: AsyncSession, *, viewer: Viewer, row: DashboardRow, body: CallCreate, now: datetime, tz: ZoneInfo
) -> tuple[CallLog, ParticipantChanged]:
    """Log a call (reached or not): the notes stay here, call.logged goes out."""
    coach_id = _writer(viewer, row)
    if body.called_at.tzinfo is None:
        raise Refused(422, "called_at needs a time zone.", "Vul een datum en tijd in.", "called_at")
    if body.called_at > now + FUTURE_GRACE:
        raise Refused(
            422, "A call cannot be logged in the future.", "Een gesprek kan niet in de toekomst liggen.", "called_at"
        )
    if row.enrolled_at is not None and body.called_at < row.enrolled_at - timedelta(days=30):
        raise Refused(
            422, "The call is long before the enrolment.", "Dit gesprek ligt ver voor de aanmelding.", "called_at"
        )
    lessons = sorted(set(body.lessons_discussed))
    if any(day < 1 or day > LATEST_LESSON for day in lessons):
        raise Refused(422, "Lessons are days 1 to 60.", "Kies lessen van 1 tot en met 60.", "lessons_discussed")
    call = CallLog(
        call_id=uuid4(),
        participant_id=row.participant_id,
        org_id=row.org_id,
        coach_id=coach_id,
        staff_id=viewer.claims.staff_id,
        called_at=body.called_at,
        reached=body.reached,
        duration_minutes=body.duration_minutes,
        planned_call=body.planned_call,
        lessons_discussed=lessons,
        notes=plan_rules.clean_text(body.notes),
        next_agreement=plan_rules.clean_text(body.next_agreement),
        created_at=now,
    )
    envelope = Envelope.wrap(
        CallLogged(
            call_id=call.call_id,
            coach_id=coach_id,
            called_at=call.called_at,
            reached=call.reached,
            duration_minutes=call.duration_minutes,
            planned_call=call.planned_call,
        ),
        org_id=row.org_id,
        participant_id=row.participant_id,
        occurred_at=now,
    )
    await claim_event(session, envelope.event_id)
    session.add(call)
    change = await on_call_logged(SqlProjectionStore(session), envelope)
    add_to_outbox(session, envelope)
    await publish_call_plan(session, participant_id=row.participant_id, tz=tz, now=now)
    await session.commit()
    return call, change


async def move_planned_call(
    session: AsyncSession, *, viewer: Viewer, row: DashboardRow, number: int, due_date: date, moment: Moment
) -> PlannedCallMove:
    """Move one of the four planned calls to another day; call.moved goes out."""
    _writer(viewer, row)
    today = moment.today
    if number not in (1, 2, 3, 4):
        raise Refused(404, "There are four planned calls, 1 to 4.", "Er zijn vier geplande gesprekken.", "number")
    if not today - MOVE_WINDOW <= due_date <= today + MOVE_WINDOW:
        raise Refused(422, "Choose a date closer to today.", "Kies een datum dichter bij vandaag.", "due_date")
    move = await session.get(PlannedCallMove, (row.participant_id, number)) or PlannedCallMove(
        participant_id=row.participant_id,
        number=number,
        org_id=row.org_id,
        due_date=due_date,
        moved_by=viewer.claims.staff_id,
    )
    move.due_date, move.moved_by = due_date, viewer.claims.staff_id
    # Lock the participant so the plan is compared and published once at a time.
    await storage.lock_participant(session, participant_id=row.participant_id)
    session.add(move)
    await session.flush()
    await publish_call_plan(session, participant_id=row.participant_id, tz=moment.tz, now=moment.now, moved=number)
    await session.commit()
    return move


async def save_plan(
    session: AsyncSession, *, viewer: Viewer, row: DashboardRow, body: PlanCreate, now: datetime
) -> tuple[PlanVersion, ParticipantChanged]:
    """Save a new version of the personal plan (the older versions stay: the history)."""
    coach_id = _writer(viewer, row)
    try:
        content = plan_rules.normalise(
            noticed_how=body.noticed_how,
            own_question=body.own_question,
            causes=body.causes,
            causes_other=body.causes_other,
            goals=body.goals,
            steps=body.steps,
        )
    except plan_rules.PlanRefused as refused:
        raise Refused(422, refused.message, refused.dutch, refused.field) from None
    # Lock the participant so two saves at once do not take the same version number.
    await storage.lock_participant(session, participant_id=row.participant_id)
    versions = await storage.plan_versions(session, participant_id=row.participant_id)
    if versions and not plan_rules.changed(plan_content(versions[0]), content):
        raise Refused(409, "Nothing changed in the plan.", "Er was niets veranderd; het plan is niet opnieuw bewaard.")
    version = PlanVersion(
        participant_id=row.participant_id,
        version=(versions[0].version if versions else 0) + 1,
        org_id=row.org_id,
        coach_id=coach_id,
        staff_id=viewer.claims.staff_id,
        created_at=now,
        noticed_how=content.noticed_how,
        own_question=content.own_question,
        causes=list(content.causes),
        causes_other=content.causes_other,
        goals=content.goals,
        steps=content.steps,
    )
    envelope = Envelope.wrap(
        PlanUpdated(coach_id=coach_id, plan_version=version.version),
        org_id=row.org_id,
        participant_id=row.participant_id,
        occurred_at=now,
    )
    await claim_event(session, envelope.event_id)
    session.add(version)
    change = await on_plan_updated(SqlProjectionStore(session), envelope)
    add_to_outbox(session, envelope)
    await session.commit()
    return version, change


def plan_content(version: PlanVersion) -> plan_rules.PlanContent:
    """A stored version as plan content (to compare with a new one)."""
    return plan_rules.PlanContent(
        noticed_how=version.noticed_how,
        own_question=version.own_question,
        causes=tuple(version.causes),
        causes_other=version.causes_other,
        goals=version.goals,
        steps=version.steps,
    )
