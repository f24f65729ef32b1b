"""Coaching's use cases, every write path of the service but the event handlers: what coaches
write (a call, a moved call, a new version of the personal plan) and the republishing of call
plans after an upgrade or a rebuild.

Each is one transaction: the coach's own row, the event in the outbox, and the event
applied to the projection at once (claimed by its event id, so when it comes back from
Kafka it changes nothing, and a rebuild reproduces it from the topic). A write the rules do
not allow raises a `shared.errors.Refusal`: the app answers it in the one error shape, a page
shows its `dutch`.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from services.coaching.intake_use_cases import local_offers
from services.coaching.live import ParticipantChanged
from services.coaching.storage import SqlProjectionStore
from services.coaching.tables import CallCreate, CallLog, DashboardRow, PlanCreate, PlannedCallMove, PlanVersion
from shared.db import claim_event
from shared.errors import Refusal
from shared.events import CallLogged, Envelope, PlanUpdated
from shared.outbox import add_to_outbox

FUTURE_GRACE = timedelta(minutes=10)
"""A call may be logged a little 'in the future' (clocks differ), not more."""
LATEST_LESSON = 60
MOVE_WINDOW = timedelta(days=200)


def _writer(viewer: Viewer, row: DashboardRow) -> UUID:
    """The coach id a write is recorded under: the viewer must be a coach (an admin may be one too)."""
    if viewer.claims.coach_id is None:
        raise Refusal(
            "forbidden",
            "Only a coach can log calls and keep plans.",
            dutch="Alleen een coach kan gesprekken vastleggen en het plan bijhouden.",
        )
    if row.status == "erased":
        raise Refusal(
            "gone", "This participant's data was erased.", dutch="De gegevens van deze deelnemer zijn gewist."
        )
    return viewer.claims.coach_id


async def _check_offers(session: AsyncSession, org_id: UUID, offer_ids: Sequence[str], *, field: str) -> None:
    """Only the organisation's own current local offers can be named."""
    known = {str(offer.get("offer_id")) for offer in await local_offers(session, org_id)}
    if any(offer_id not in known for offer_id in offer_ids):
        raise Refusal(
            "invalid",
            "Unknown offer: choose one of your organisation's local offers.",
            field=field,
            dutch="Kies aanbod uit de lijst van uw organisatie.",
        )


async def log_call(
    session: AsyncSession, *, viewer: Viewer, row: DashboardRow, body: CallCreate, now: datetime, tz: ZoneInfo
) -> tuple[CallLog, ParticipantChanged]:
    """Log a call (reached or not): the notes stay here, call.logged goes out."""
    coach_id = _writer(viewer, row)
    if body.called_at.tzinfo is None:
        raise Refusal("invalid", "called_at needs a time zone.", field="called_at", dutch="Vul een datum en tijd in.")
    if body.called_at > now + FUTURE_GRACE:
        raise Refusal(
            "invalid",
            "A call cannot be logged in the future.",
            field="called_at",
            dutch="Een gesprek kan niet in de toekomst liggen.",
        )
    if row.enrolled_at is not None and body.called_at < row.enrolled_at - timedelta(days=30):
        raise Refusal(
            "invalid",
            "The call is long before the enrolment.",
            field="called_at",
            dutch="Dit gesprek ligt ver voor de aanmelding.",
        )
    if body.offer_id is not None:
        await _check_offers(session, row.org_id, [str(body.offer_id)], field="offer_id")
    lessons = sorted(set(body.lessons_discussed))
    if any(day < 1 or day > LATEST_LESSON for day in lessons):
        raise Refusal(
            "invalid", "Lessons are days 1 to 60.", field="lessons_discussed", dutch="Kies lessen van 1 tot en met 60."
        )
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
        offer_id=body.offer_id,
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
        raise Refusal(
            "not_found",
            "There are four planned calls, 1 to 4.",
            field="number",
            dutch="Er zijn vier geplande gesprekken.",
        )
    if not today - MOVE_WINDOW <= due_date <= today + MOVE_WINDOW:
        raise Refusal(
            "invalid", "Choose a date closer to today.", field="due_date", dutch="Kies een datum dichter bij vandaag."
        )
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
    content = plan_rules.normalise(
        noticed_how=body.noticed_how,
        own_question=body.own_question,
        causes=body.causes,
        causes_other=body.causes_other,
        goals=body.goals,
        steps=body.steps,
        offer_ids=[str(offer_id) for offer_id in body.offer_ids],
    )
    await _check_offers(session, row.org_id, content.offer_ids, field="offer_ids")
    # Lock the participant so two saves at once do not take the same version number.
    await storage.lock_participant(session, participant_id=row.participant_id)
    versions = await storage.plan_versions(session, participant_id=row.participant_id)
    if versions and not plan_rules.changed(plan_content(versions[0]), content):
        raise Refusal(
            "conflict",
            "Nothing changed in the plan.",
            dutch="Er was niets veranderd; het plan is niet opnieuw bewaard.",
        )
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
        offer_ids=list(content.offer_ids),
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
        offer_ids=tuple(version.offer_ids or ()),
    )


async def republish_call_plan(session: AsyncSession, *, participant_id: UUID, tz: ZoneInfo, now: datetime) -> int:
    """Publish one participant's call plan and alerts where they differ from what was told;
    the number of events staged. One transaction, the participant locked as the handlers do,
    so a concurrent event waits for this one."""
    await storage.lock_participant(session, participant_id=participant_id)
    staged = await publish_call_plan(session, participant_id=participant_id, tz=tz, now=now)
    await session.commit()
    return staged
