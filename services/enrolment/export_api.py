"""Subject-access export routes: an organisation admin (or the licensor) requests the export
of one participant, follows which parts are in, and downloads it as JSON or a Dutch page.
Isolation as everywhere: only their own organisation, 404 for another's participant or
export, coaches and API keys not at all."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from services.enrolment import exports
from services.enrolment.api.common import Caller, SessionDep, SettingsDep, allow, errors, participant_or_404
from services.enrolment.export import export_status, render_page
from services.enrolment.schemas import ExportPublic
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import ExportRequest
from shared.db import utcnow
from shared.http_security import csp_nonce
from shared.runtime import api_error

router = APIRouter(prefix="/api", tags=["exports"])
ExportPath = "/organisations/{org_id}/exports/{export_id}"


async def _public(export: ExportRequest, settings: EnrolmentSettings, session: SessionDep) -> ExportPublic:
    received = (
        list(export.expected_parts)
        if export.completed_at
        else await exports.parts_received(session=session, export_id=export.id)
    )
    status, missing = export_status(
        expected=export.expected_parts,
        received=received,
        requested_at=export.requested_at,
        completed_at=export.completed_at,
        now=utcnow(),
        timeout=timedelta(minutes=settings.export_timeout_minutes),
    )
    base = f"/api/organisations/{export.org_id}/exports/{export.id}"
    done = status == "complete"
    return ExportPublic(
        id=export.id,
        org_id=export.org_id,
        participant_id=export.participant_id,
        status=status,
        parts_received=received,
        missing=missing,
        requested_at=export.requested_at,
        completed_at=export.completed_at,
        delete_after=export.delete_after,
        json_url=f"{base}.json" if done else None,
        html_url=f"{base}.html" if done else None,
    )


async def _export_or_404(session: SessionDep, caller: Caller, org_id: UUID, export_id: UUID) -> ExportRequest:
    allow(caller, org_id, "org_admin")
    export = await exports.get_export(session=session, org_id=org_id, export_id=export_id)
    if export is None:
        raise api_error(404, f"Export {export_id} does not exist in this organisation.")
    return export


def _bundle_or_409(export: ExportRequest) -> dict[str, object]:
    if export.bundle is None:
        raise api_error(409, "This export is not complete yet; GET the export to see which parts are missing.")
    return export.bundle


@router.post(
    "/organisations/{org_id}/participants/{participant_id}/exports",
    status_code=202,
    responses=errors(401, 403, 404, 409),
)
async def request_export(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep
) -> ExportPublic:
    """Ask every service for what it holds about the participant (a subject-access request).
    The export is complete once every part is in; it is deleted after the retention period."""
    allow(caller, org_id, "org_admin")
    participant = await participant_or_404(session, caller, org_id, participant_id)
    if participant.erased_at is not None:
        raise api_error(409, "This participant was erased: nothing is kept to export.", "participant_id")
    export = await exports.request_export(
        session=session,
        participant=participant,
        requested_by=caller.kind,
        staff_id=caller.staff_id,
        now=utcnow(),
        retention=timedelta(days=settings.export_retention_days),
    )
    await session.commit()
    return await _public(export, settings, session)


@router.get(f"{ExportPath}.json", responses=errors(401, 403, 404, 409))
async def download_export_json(org_id: UUID, export_id: UUID, caller: Caller, session: SessionDep) -> JSONResponse:
    """The complete export as one JSON file."""
    bundle = _bundle_or_409(await _export_or_404(session, caller, org_id, export_id))
    return JSONResponse(
        bundle,
        headers={
            "Content-Disposition": f'attachment; filename="meer-contact-export-{export_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    f"{ExportPath}.html",
    responses={
        200: {"description": "The Dutch page.", "content": {"text/html": {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 409),
    },
)
async def download_export_html(org_id: UUID, export_id: UUID, caller: Caller, session: SessionDep) -> HTMLResponse:
    """The complete export as a readable Dutch page (for the participant)."""
    bundle = _bundle_or_409(await _export_or_404(session, caller, org_id, export_id))
    return HTMLResponse(render_page(bundle, nonce=csp_nonce()), headers={"Cache-Control": "no-store"})


@router.get(ExportPath, responses=errors(401, 403, 404))
async def get_export(
    org_id: UUID, export_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep
) -> ExportPublic:
    """Where an export stands: pending, complete, or timed out with the parts still missing."""
    return await _public(await _export_or_404(session, caller, org_id, export_id), settings, session)
