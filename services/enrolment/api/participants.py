"""Participants: enrolment (one, or many from a CSV file), lists, details, and the lifecycle
(pause, resume, stop, another coach, erase)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, exports, storage
from services.enrolment.api.common import (
    Caller,
    SessionDep,
    SettingsDep,
    allow,
    commit_or_conflict,
    enrolment_batches,
    errors,
    organisation_or_404,
    participant_or_404,
)
from services.enrolment.schemas import (
    CoachChange,
    ImportReport,
    Page,
    ParticipantCreate,
    ParticipantPublic,
    ParticipantUpdate,
    PauseRequest,
    StopRequest,
)
from services.enrolment.use_cases import csv_import, participants
from shared.db import utcnow
from shared.errors import Refusal
from shared.http import Limit, Offset

router = APIRouter(prefix="/api")


@router.post(
    "/organisations/{org_id}/participants",
    status_code=201,
    tags=["participants"],
    responses={
        200: {
            "model": ParticipantPublic,
            "description": "This signal (consent.signal_id) enrolled someone before: that participant, nothing new.",
        },
        **errors(401, 403, 404, 409, 422),
    },
)
async def enrol_participant(
    org_id: UUID, body: ParticipantCreate, caller: Caller, session: SessionDep, request: Request, response: Response
) -> ParticipantPublic:
    """Enrol a participant; their programme starts on start_date (default: tomorrow).

    `consent` records how the person agreed. With `via: signal` (coaching's one-click
    enrolment at the end of an intake) the person's own coach may enrol them too, as their
    coach; the same signal enrols once: a repeat (a retry, a double click) answers 200 with
    the participant of the first, whatever else it sends."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    consent = body.consent
    coach_id = body.coach_id
    if caller.kind == "coach":
        assert caller.staff_id is not None, "a coach token names the coach"
        coach_id = domain.coach_enrolling_from_signal(caller.staff_id, coach_id, consent.via if consent else None)

    async def enrolled_before() -> ParticipantPublic | None:
        if consent is None:
            return None
        first = await participants.enrolled_from_signal(session=session, org_id=org_id, signal_id=consent.signal_id)
        if first is None:
            return None
        if caller.kind == "coach" and first.coach_id != caller.staff_id:
            raise Refusal("conflict", "This signal enrolled a participant of another coach.", field="consent.signal_id")
        response.status_code = 200
        return ParticipantPublic.model_validate(first)

    if (first := await enrolled_before()) is not None:
        return first
    enrolment = participants.EnrolmentRequest(
        fields=body.fields(),
        coach_id=coach_id,
        source="signal" if consent else "api" if caller.kind == "api_key" else "admin",
        consent=consent,
    )
    try:
        return ParticipantPublic.model_validate(await enrolment_batches(request).enrol(org_id, enrolment))
    except Refusal as refusal:
        # A parallel request of the same signal came first: answer its participant.
        if refusal.kind == "conflict" and (first := await enrolled_before()) is not None:
            return first
        raise


@router.post(
    "/organisations/{org_id}/participants/import",
    tags=["participants"],
    responses=errors(401, 403, 404, 409, 413, 422),
)
async def import_participants(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV: ';' or ',' separated, UTF-8 with or without BOM.")],
    mode: Annotated[
        csv_import.ImportMode,
        Query(description="valid_rows: import every valid row; all_or_nothing: import only if no row is rejected."),
    ] = "valid_rows",
    dry_run: Annotated[bool, Query(description="Check every row, import nothing.")] = False,
) -> ImportReport:
    """Import participants from a spreadsheet export, with a report per row.

    Every row is checked first; then the rows that may go in are inserted, each with its
    participant.enrolled event, in one transaction: a row is fully imported or not at all.
    """
    allow(caller, org_id, "org_admin", "api_key")
    data = await file.read(settings.import_max_bytes + 1)
    if len(data) > settings.import_max_bytes:
        raise Refusal("too_large", f"The file is larger than {settings.import_max_bytes} bytes.", field="file")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    report = await csv_import.import_csv(
        session=session, organisation=organisation, data=data, mode=mode, dry_run=dry_run, now=utcnow()
    )
    await commit_or_conflict(
        session, "Another enrolment of one of these addresses came first; import again.", field="file"
    )
    return report


@router.get("/organisations/{org_id}/participants", tags=["participants"], responses=errors(401, 403, 404, 422))
async def list_participants(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    status: domain.Status | None = None,
    coach_id: UUID | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ParticipantPublic]:
    """The organisation's participants (a coach sees only their own), oldest first."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    await organisation_or_404(session, org_id)
    if caller.kind == "coach":
        coach_id = caller.staff_id
    items, total = await storage.list_participants(
        session=session, org_id=org_id, status=status, coach_id=coach_id, limit=limit, offset=offset
    )
    return Page(items=[ParticipantPublic.model_validate(p) for p in items], total=total, limit=limit, offset=offset)


@router.get(
    "/organisations/{org_id}/participants-to-reassign", tags=["participants"], responses=errors(401, 403, 404, 422)
)
async def participants_to_reassign(
    org_id: UUID, caller: Caller, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ParticipantPublic]:
    """Running participants whose coach was deactivated or removed: give each another coach
    with PUT …/participants/{participant_id}/coach."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    items, total = await storage.participants_to_reassign(session=session, org_id=org_id, limit=limit, offset=offset)
    return Page(items=[ParticipantPublic.model_validate(p) for p in items], total=total, limit=limit, offset=offset)


# A UUID by its convertor, so that ".../participants/import" never reaches these routes (PATCH on it is a 405).
ParticipantPath = "/organisations/{org_id}/participants/{participant_id:uuid}"


@router.get(ParticipantPath, tags=["participants"], responses=errors(401, 403, 404))
async def get_participant(org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep) -> ParticipantPublic:
    """One participant (a coach: only their own)."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    return ParticipantPublic.model_validate(await participant_or_404(session, caller, org_id, participant_id))


@router.patch(ParticipantPath, tags=["participants"], responses=errors(401, 403, 404, 409, 422))
async def change_participant(
    org_id: UUID, participant_id: UUID, body: ParticipantUpdate, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Change contact details or mail preferences; only the fields sent change."""
    allow(caller, org_id, "org_admin", "api_key")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    await participants.change_details(session=session, participant=participant, update=body, now=utcnow())
    await commit_or_conflict(session, "This e-mail address is already enrolled here.", "email")
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/pause", tags=["lifecycle"], responses=errors(401, 403, 404, 409, 422))
async def pause_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep, body: PauseRequest | None = None
) -> ParticipantPublic:
    """Stop the daily mails for now; resuming continues with the next lesson."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    reason = body.reason if body else None
    participants.pause(session=session, participant=participant, reason=reason, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/resume", tags=["lifecycle"], responses=errors(401, 403, 404, 409))
async def resume_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Daily mails continue with the next lesson."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    participants.resume(session=session, participant=participant, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/stop", tags=["lifecycle"], responses=errors(401, 403, 404, 409, 422))
async def stop_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep, body: StopRequest | None = None
) -> ParticipantPublic:
    """End the programme early. A coach gives a reason; it stays with enrolment and coaching."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    by: domain.StoppedBy = "coach" if caller.kind == "coach" else "organisation"
    reason = body.reason if body else None
    participants.stop(session=session, participant=participant, by=by, reason=reason, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.put(f"{ParticipantPath}/coach", tags=["lifecycle"], responses=errors(401, 403, 404, 409, 422))
async def change_coach(
    org_id: UUID, participant_id: UUID, body: CoachChange, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Give the participant another coach of the organisation."""
    allow(caller, org_id, "org_admin")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    await participants.change_coach(session=session, participant=participant, coach_id=body.coach_id, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


async def _erase(org_id: UUID, participant_id: UUID, caller: Caller, session: AsyncSession) -> ParticipantPublic:
    allow(caller, org_id, "org_admin")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    participants.erase(session=session, participant=participant, now=utcnow())
    await exports.forget_participant_exports(session=session, participant_id=participant.id)
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/erase", tags=["lifecycle"], responses=errors(401, 403, 404, 409))
async def erase_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """The right to be forgotten: personal data is removed here and, through participant.erased, everywhere."""
    return await _erase(org_id, participant_id, caller, session)


@router.delete(ParticipantPath, tags=["lifecycle"], responses=errors(401, 403, 404, 409))
async def delete_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """The same as POST …/erase."""
    return await _erase(org_id, participant_id, caller, session)
