"""Coaching's JSON API: the same things the web pages show and do, for a staff token.

Every route needs `Authorization: Bearer <staff token>`. A coach gets only their own
participants, an organisation admin their whole organisation; a participant outside
that is a 404 (whether they exist elsewhere is not told), an admin-only route is a 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlmodel.ext.asyncio.session import AsyncSession
from sse_starlette import EventSourceResponse

from services.coaching import dashboard, documents, intake_use_cases, kit, storage, use_cases
from services.coaching.auth import ApiViewer, Viewer, still_allowed
from services.coaching.dashboard import Clock, Moment
from services.coaching.guide import GUIDE
from services.coaching.live import LiveHub, stream_changes
from services.coaching.plan import CAUSES, cause_labels
from services.coaching.settings import CoachingSettings
from services.coaching.tables import (
    CallCreate,
    CallGuidePublic,
    CallPublic,
    DashboardRow,
    DashboardRowPublic,
    GuideSection,
    Me,
    OrganisationOverview,
    ParticipantDetail,
    ParticipantSummary,
    PlanCreate,
    PlanHistory,
    PlannedCallMoveCreate,
    PlannedCallPublic,
    PlanPublic,
    PlanVersion,
)
from shared.runtime import Runtime, api_error, error_responses

router = APIRouter(
    prefix="/api",
    responses=error_responses(
        {
            401: "No staff token, or it is not valid or has expired.",
            503: "Staff login is not configured on this server.",
        }
    ),
)

_FORBIDDEN = {403: "Not for this role (an admin-only page, or another coach's participants)."}
_NOT_YOURS = {404: "No such participant among yours (whether they exist elsewhere is not told)."}
_ERASED = {410: "This participant's data was erased."}
PARTICIPANT_ERRORS = error_responses({**_NOT_YOURS, **_ERASED})
WRITE_ERRORS = error_responses({403: "Only a coach can log calls and keep plans.", **_NOT_YOURS, **_ERASED})

PDF_HEADERS = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Services:
    """What the routes need besides the database: settings, clock, live hub, logo fetcher."""

    settings: CoachingSettings
    clock: Clock
    hub: LiveHub
    logos: kit.LogoFetcher

    def moment(self) -> Moment:
        return Moment(now=self.clock.now(), tz=ZoneInfo(self.settings.display_timezone))


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ServicesDep = Annotated[Services, Depends(services)]
ParticipantId = Annotated[UUID, Path(description="The participant's id.")]


async def visible_participant(session: AsyncSession, viewer: Viewer, participant_id: UUID) -> DashboardRow:
    """The participant if the viewer may see them; 410 when erased, 404 otherwise."""
    row = await storage.visible_row(session, scope=viewer.scope, participant_id=participant_id)
    if row is not None:
        return row
    gone = await storage.row_in_organisation(session, org_id=viewer.claims.org_id, participant_id=participant_id)
    if gone is not None and gone.status == "erased" and (viewer.is_admin or gone.coach_id == viewer.claims.coach_id):
        raise api_error(410, "This participant's data was erased.")
    raise api_error(404, "There is no such participant among yours.")


def require_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise api_error(403, "Only an organisation admin may see this.")


@router.get("/me", tags=["staff"], summary="Who the token belongs to")
async def me(viewer: ApiViewer, session: SessionDep) -> Me:
    coach = await storage.coach(session, coach_id=viewer.claims.coach_id) if viewer.claims.coach_id else None
    organisation = await storage.organisation(session, org_id=viewer.claims.org_id)
    return Me(
        staff_id=viewer.claims.staff_id,
        role=viewer.claims.role,
        org_id=viewer.claims.org_id,
        coach_id=viewer.claims.coach_id,
        coach_name=coach.name if coach else None,
        organisation=organisation.display_name if organisation else None,
    )


@router.get(
    "/participants",
    tags=["dashboard"],
    summary="The dashboard: participants with their figures",
    responses=error_responses({403: "A coach asked for another coach's participants."}),
)
async def participants(
    viewer: ApiViewer,
    session: SessionDep,
    svc: ServicesDep,
    coach_id: Annotated[UUID | None, Query(description="Only this coach's participants (admins).")] = None,
) -> list[ParticipantSummary]:
    """A coach gets their own participants; an organisation admin everyone (or one coach's).
    In the dashboard's order: alerts first, then calls due, then the rest; finished ones last."""
    if coach_id is not None and not viewer.is_admin and coach_id != viewer.claims.coach_id:
        raise api_error(403, "A coach sees only their own participants.", "coach_id")
    lines = await dashboard.summaries(session, scope=viewer.scope, moment=svc.moment(), coach_id=coach_id)
    return [line.summary for line in dashboard.in_dashboard_order(lines)]


@router.get(
    "/coaches/{coach_id}/participants",
    tags=["dashboard"],
    summary="One coach's stored dashboard rows",
    responses=error_responses({**_FORBIDDEN, 404: "There is no such coach in your organisation."}),
)
async def coach_dashboard(coach_id: UUID, viewer: ApiViewer, session: SessionDep) -> list[DashboardRowPublic]:
    """The participants of one coach, as stored (a coach may ask for their own; an admin for their organisation's)."""
    if viewer.is_admin:
        coach = await storage.coach(session, coach_id=coach_id)
        if coach is None or coach.org_id != viewer.claims.org_id:
            raise api_error(404, "There is no such coach in your organisation.")
    elif coach_id != viewer.claims.coach_id:
        raise api_error(403, "A coach sees only their own participants.")
    rows = await storage.visible_rows(session, scope=viewer.scope, coach_id=coach_id)
    return [DashboardRowPublic.model_validate(row, from_attributes=True) for row in rows]


@router.get(
    "/participants/{participant_id}",
    tags=["participants"],
    summary="The participant page",
    responses=PARTICIPANT_ERRORS,
)
async def participant(
    participant_id: ParticipantId, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> ParticipantDetail:
    """Figures, planned calls, lessons, reports, calls, opens per day and the timeline."""
    row = await visible_participant(session, viewer, participant_id)
    return await dashboard.detail(session, row=row, moment=svc.moment())


@router.get(
    "/participants/{participant_id}/calls", tags=["calls"], summary="The call log", responses=PARTICIPANT_ERRORS
)
async def calls(
    participant_id: ParticipantId, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> list[CallPublic]:
    row = await visible_participant(session, viewer, participant_id)
    return (await dashboard.detail(session, row=row, moment=svc.moment())).calls


@router.post(
    "/participants/{participant_id}/calls",
    status_code=201,
    tags=["calls"],
    summary="Log a call",
    responses=WRITE_ERRORS,
)
async def log_call(
    participant_id: ParticipantId, body: CallCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> CallPublic:
    """Log a call, reached or not (an unreached attempt does not count as a contact); publishes call.logged."""
    row = await visible_participant(session, viewer, participant_id)
    call, change = await use_cases.log_call(
        session, viewer=viewer, row=row, body=body, now=svc.clock.now(), tz=svc.moment().tz
    )
    svc.hub.publish(change)
    return CallPublic.model_validate(call, from_attributes=True)


@router.put(
    "/participants/{participant_id}/planned-calls/{number}",
    tags=["calls"],
    summary="Move a planned call",
    responses=WRITE_ERRORS,
)
async def move_planned_call(
    participant_id: ParticipantId,
    number: Annotated[int, Path(ge=1, le=4)],
    body: PlannedCallMoveCreate,
    viewer: ApiViewer,
    session: SessionDep,
    svc: ServicesDep,
) -> PlannedCallPublic:
    """Give one of the four planned calls another day."""
    row = await visible_participant(session, viewer, participant_id)
    moment = svc.moment()
    await use_cases.move_planned_call(
        session, viewer=viewer, row=row, number=number, due_date=body.due_date, moment=moment
    )
    detail = await dashboard.detail(session, row=row, moment=moment)
    return next(call for call in detail.planned_calls if call.number == number)


def _plan_public(version: PlanVersion) -> PlanPublic:
    return PlanPublic.model_validate(version, from_attributes=True)


@router.get(
    "/participants/{participant_id}/plan",
    tags=["plan"],
    summary="The personal plan and its history",
    responses=PARTICIPANT_ERRORS,
)
async def plan(participant_id: ParticipantId, viewer: ApiViewer, session: SessionDep) -> PlanHistory:
    row = await visible_participant(session, viewer, participant_id)
    versions = [_plan_public(v) for v in await storage.plan_versions(session, participant_id=row.participant_id)]
    return PlanHistory(
        participant_id=row.participant_id,
        current=versions[0] if versions else None,
        history=versions,
        causes_checklist=dict(CAUSES),
    )


@router.post(
    "/participants/{participant_id}/plan",
    status_code=201,
    tags=["plan"],
    summary="Save a new plan version",
    responses={**WRITE_ERRORS, **error_responses({409: "Nothing changed in the plan."})},
)
async def save_plan(
    participant_id: ParticipantId, body: PlanCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> PlanPublic:
    """Every save is a new version (the history is kept); an unchanged plan is a 409. Publishes plan.updated."""
    row = await visible_participant(session, viewer, participant_id)
    version, change = await use_cases.save_plan(session, viewer=viewer, row=row, body=body, now=svc.clock.now())
    svc.hub.publish(change)
    return _plan_public(version)


async def plan_pdf_bytes(session: AsyncSession, row: DashboardRow, version: int | None = None) -> bytes | None:
    """The participant's copy of the plan (the latest version, or the one asked for)."""
    versions = await storage.plan_versions(session, participant_id=row.participant_id)
    chosen = next((v for v in versions if version is None or v.version == version), None)
    if chosen is None:
        return None
    coach = await storage.coach(session, coach_id=row.coach_id) if row.coach_id else None
    organisation = await storage.organisation(session, org_id=row.org_id)
    offers = {str(offer.get("offer_id")): offer for offer in await intake_use_cases.local_offers(session, row.org_id)}
    return documents.personal_plan(
        documents.PlanDocument(
            first_name=row.first_name,
            organisation=organisation.display_name if organisation else None,
            coach_name=coach.name if coach else None,
            version=chosen.version,
            saved_on=chosen.created_at.date(),
            noticed_how=chosen.noticed_how,
            own_question=chosen.own_question,
            causes=cause_labels(chosen.causes),
            causes_other=chosen.causes_other,
            goals=chosen.goals,
            steps=chosen.steps,
            offers=[
                documents.PlanOffer.from_offer(offers[offer_id])
                for offer_id in chosen.offer_ids or []
                if offer_id in offers
            ],
        )
    )


@router.get(
    "/participants/{participant_id}/plan.pdf",
    tags=["plan"],
    summary="The plan as a PDF for the participant",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}},
        **error_responses({404: "No such participant or plan version."}),
        **error_responses(_ERASED),
    },
)
async def plan_pdf(
    participant_id: ParticipantId,
    viewer: ApiViewer,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    row = await visible_participant(session, viewer, participant_id)
    pdf = await plan_pdf_bytes(session, row, version)
    if pdf is None:
        raise api_error(404, "There is no such plan version yet.")
    headers = {**PDF_HEADERS, "Content-Disposition": 'attachment; filename="persoonlijk-plan.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get(
    "/participants/{participant_id}/call-guide/{number}",
    tags=["calls"],
    summary="The call guide beside the call form",
    responses=PARTICIPANT_ERRORS,
)
async def call_guide(
    participant_id: ParticipantId,
    number: Annotated[int, Path(ge=1, le=4)],
    viewer: ApiViewer,
    session: SessionDep,
    svc: ServicesDep,
) -> CallGuidePublic:
    """What to ask and look at in call 1..4, with this participant's lessons, open rate and reports."""
    row = await visible_participant(session, viewer, participant_id)
    return dashboard.call_guide(await dashboard.detail(session, row=row, moment=svc.moment()), number)


@router.get("/call-guide", tags=["calls"], summary="The call guide for all four calls")
async def call_guide_all(viewer: ApiViewer) -> list[CallGuidePublic]:
    return [
        CallGuidePublic(
            number=guide.number,
            title=guide.title,
            when=guide.when,
            purpose=guide.purpose,
            sections=[GuideSection(title=title, items=list(items)) for title, items in guide.sections],
            lessons_before=[],
            open_rate=None,
            open_rate_7d=None,
            reports=[],
        )
        for guide in GUIDE.values()
    ]


@router.get(
    "/organisation",
    tags=["organisation"],
    summary="Per coach: calls done ratio and open rates",
    responses=error_responses({403: "Organisation admins only."}),
)
async def organisation_overview(viewer: ApiViewer, session: SessionDep, svc: ServicesDep) -> OrganisationOverview:
    """Organisation admins only."""
    require_admin(viewer)
    return await dashboard.organisation_overview(session, org_id=viewer.claims.org_id, moment=svc.moment())


async def recruitment_pdf(session: AsyncSession, svc: Services, org_id: UUID, kind: str) -> bytes:
    organisation = await storage.organisation(session, org_id=org_id)
    content = await kit.kit_organisation(
        organisation, org_id=org_id, enrolment_base_url=svc.settings.enrolment_base_url, logos=svc.logos
    )
    return documents.recruitment_poster(content) if kind == "poster" else documents.recruitment_flyer(content)


@router.get(
    "/organisation/recruitment-kit/{kind}.pdf",
    tags=["organisation"],
    summary="The recruitment flyer or poster (A4 PDF with logo, sign-up link and QR code)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **error_responses({403: "Organisation admins only."})},
)
async def recruitment_kit(
    kind: Annotated[Literal["flyer", "poster"], Path()], viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> Response:
    """Organisation admins only."""
    require_admin(viewer)
    pdf = await recruitment_pdf(session, svc, viewer.claims.org_id, kind)
    headers = {**PDF_HEADERS, "Content-Disposition": f'attachment; filename="meer-contact-{kind}.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get(
    "/live",
    tags=["dashboard"],
    summary="Live changes (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(request: Request, viewer: ApiViewer, svc: ServicesDep) -> EventSourceResponse:
    """`participant` events ({participant_id, event_type}) for the participants the token may see."""
    return stream_changes(
        svc.hub,
        org_id=viewer.claims.org_id,
        coach_id=viewer.scope.coach_id,
        token=viewer.token,
        ping_s=svc.settings.live_ping_s,
        still_allowed=lambda: still_allowed(request, viewer.claims),
    )
