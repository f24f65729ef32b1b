"""The outcome reports over HTTP: the page for staff (an organisation admin sees the whole
organisation per cohort and per coach; a coach only their own participants), CSV in two
dialects, the one-page PDF, the researchers' pseudonymised export, and the licensor's
routes across organisations (bearer: the licensor secret)."""

from __future__ import annotations

import dataclasses
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import outcomes, reports, storage
from services.coaching.api import Services, SessionDep, require_admin, services
from services.coaching.auth import ApiViewer, PageViewer, Viewer, bearer
from services.coaching.outcomes import CsvDialect, OrganisationReport
from services.coaching.web import PageError, _frame, render
from shared.runtime import Runtime, api_error, error_responses

api_router = APIRouter(
    prefix="/api",
    tags=["outcomes"],
    responses=error_responses(
        {
            401: "No staff token (or licensor secret), or it is not valid or has expired.",
            403: "Organisation admins only (the PDF and the research export).",
            503: "Staff login is not configured on this server.",
        }
    ),
)
_CSV_ANSWER: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}
_PDF_ANSWER: dict[int | str, dict[str, Any]] = {200: {"content": {"application/pdf": {}}}}
web_router = APIRouter(include_in_schema=False)

DialectQuery = Annotated[
    CsvDialect, Query(description="nl: ';' with a decimal comma (Dutch Excel); en: ',' with a decimal point.")
]
WEB_DIALECTS: dict[str, CsvDialect] = {"excel": "nl", "komma": "en"}


def _csv(text: str, dialect: CsvDialect, filename: str) -> Response:
    # Excel opens a ';' file with the right characters only with a byte order mark.
    body = ("\ufeff" + text).encode() if dialect == "nl" else text.encode()
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def viewer_report(session: AsyncSession, svc: Services, viewer: Viewer) -> OrganisationReport:
    """An admin: the organisation; a coach: only their own participants (no other coach's figures)."""
    moment = svc.moment()
    org_id = viewer.claims.org_id
    coach_id = viewer.scope.coach_id
    found = await reports.participants(session, tz=moment.tz, org_id=org_id, coach_id=coach_id)
    organisation = await storage.organisation(session, org_id=org_id)
    label = (organisation.display_name or organisation.name) if organisation else None
    report = outcomes.organisation_report(
        found,
        org_id=org_id,
        label=label or "Uw organisatie" if coach_id is None else "Uw deelnemers",
        coach_names=await storage.coach_names(session, org_id=org_id),
        today=moment.today,
    )
    return report if coach_id is None else dataclasses.replace(report, coaches=())


def _report_groups(report: OrganisationReport) -> list[outcomes.GroupReport]:
    return [report.overall, *report.cohorts, *report.coaches]


# --- staff JSON API ------------------------------------------------------------------------


@api_router.get("/outcomes", summary="Outcome report: the organisation (admins) or the coach's own participants")
async def outcome_report(
    viewer: ApiViewer, session: SessionDep, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    """Groups of fewer than 5 participants have `suppressed: true` and no figures."""
    return dataclasses.asdict(await viewer_report(session, svc, viewer))


@api_router.get("/outcomes.csv", responses=_CSV_ANSWER, summary="Outcome report as CSV")
async def outcome_csv(
    viewer: ApiViewer, session: SessionDep, svc: Annotated[Services, Depends(services)], dialect: DialectQuery = "nl"
) -> Response:
    rows = outcomes.report_rows(_report_groups(await viewer_report(session, svc, viewer)))
    return _csv(outcomes.csv_text(rows, outcomes.REPORT_COLUMNS, dialect), dialect, "meer-contact-resultaten.csv")


@api_router.get(
    "/outcomes/research-export.csv", responses=_CSV_ANSWER, summary="Pseudonymised export for researchers (admins)"
)
async def research_export(
    viewer: ApiViewer, session: SessionDep, svc: Annotated[Services, Depends(services)], dialect: DialectQuery = "en"
) -> Response:
    """One row per participant of the organisation: pseudonyms (keyed HMAC), cohort, engagement, scores."""
    require_admin(viewer)
    found = await reports.participants(session, tz=svc.moment().tz, org_id=viewer.claims.org_id)
    rows = outcomes.research_rows(found, key=svc.settings.research_export_key)
    return _csv(outcomes.csv_text(rows, outcomes.RESEARCH_COLUMNS, dialect), dialect, "meer-contact-onderzoek.csv")


@api_router.get("/outcomes.pdf", responses=_PDF_ANSWER, summary="One-page PDF of the organisation's outcomes (admins)")
async def outcome_pdf(viewer: ApiViewer, session: SessionDep, svc: Annotated[Services, Depends(services)]) -> Response:
    require_admin(viewer)
    return await _pdf_response(session, svc, viewer)


async def _pdf_response(session: AsyncSession, svc: Services, viewer: Viewer) -> Response:
    report = await viewer_report(session, svc, viewer)
    organisation = await storage.organisation(session, org_id=viewer.claims.org_id)
    pdf = reports.outcome_pdf(
        report.overall,
        report.cohorts,
        organisation=report.overall.label,
        colour=organisation.brand_colour if organisation else None,
        today=svc.moment().today,
    )
    headers = {"Content-Disposition": 'inline; filename="meer-contact-resultaten.pdf"', "Cache-Control": "no-store"}
    return Response(pdf, media_type="application/pdf", headers=headers)


# --- the licensor --------------------------------------------------------------------------


async def licensor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Only the licensor secret (constant-time compare); a staff token is not enough."""
    settings = services(request).settings
    if credentials is None or not hmac.compare_digest(
        credentials.credentials.encode(), settings.licensor_secret.encode()
    ):
        raise api_error(401, "The licensor secret is required.")


Licensor = Annotated[None, Depends(licensor)]


async def _licensor_report(session: AsyncSession, svc: Services) -> outcomes.LicensorReport:
    moment = svc.moment()
    found = await reports.participants(session, tz=moment.tz)
    names = await reports.organisation_names(session)
    return outcomes.licensor_report(found, organisation_names=names, today=moment.today)


@api_router.get("/licensor/outcomes", summary="Outcome report across organisations and per organisation (licensor)")
async def licensor_outcomes(
    _: Licensor, session: SessionDep, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    return dataclasses.asdict(await _licensor_report(session, svc))


@api_router.get("/licensor/outcomes.csv", responses=_CSV_ANSWER, summary="The licensor's outcome report as CSV")
async def licensor_outcomes_csv(
    _: Licensor, session: SessionDep, svc: Annotated[Services, Depends(services)], dialect: DialectQuery = "nl"
) -> Response:
    report = await _licensor_report(session, svc)
    rows = outcomes.report_rows([report.overall, *report.organisations])
    return _csv(outcomes.csv_text(rows, outcomes.REPORT_COLUMNS, dialect), dialect, "meer-contact-resultaten-alle.csv")


@api_router.get(
    "/licensor/outcomes/research-export.csv", responses=_CSV_ANSWER, summary="Pseudonymised export of all organisations"
)
async def licensor_research_export(
    _: Licensor, session: SessionDep, svc: Annotated[Services, Depends(services)], dialect: DialectQuery = "en"
) -> Response:
    found = await reports.participants(session, tz=svc.moment().tz)
    rows = outcomes.research_rows(found, key=svc.settings.research_export_key)
    return _csv(outcomes.csv_text(rows, outcomes.RESEARCH_COLUMNS, dialect), dialect, "meer-contact-onderzoek-alle.csv")


# --- the page ------------------------------------------------------------------------------


def _session(request: Request) -> AsyncSession:
    runtime: Runtime = request.app.state.runtime
    return runtime.database.session()


def _web_dialect(value: str) -> CsvDialect:
    if value not in WEB_DIALECTS:
        raise PageError(400, "Kies 'excel' (puntkomma, decimale komma) of 'komma' (komma, decimale punt).")
    return WEB_DIALECTS[value]


@web_router.get("/uitkomsten")
async def outcome_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    svc = services(request)
    moment = svc.moment()
    async with _session(request) as session:
        report = await viewer_report(session, svc, viewer)
        frame = await _frame(session, viewer, moment)
    return render(
        request,
        "outcomes.html.j2",
        {
            **frame,
            "report": report,
            "bars": reports.mean_bars(report.overall),
            "num": reports.number,
            "percent": reports.percent,
            "O": outcomes,
            "active": "uitkomsten",
        },
    )


@web_router.get("/uitkomsten.csv")
async def outcome_page_csv(request: Request, viewer: PageViewer, scheiding: str = "excel") -> Response:
    dialect = _web_dialect(scheiding)
    svc = services(request)
    async with _session(request) as session:
        report = await viewer_report(session, svc, viewer)
    rows = outcomes.report_rows(_report_groups(report))
    return _csv(outcomes.csv_text(rows, outcomes.REPORT_COLUMNS, dialect), dialect, "meer-contact-resultaten.csv")


@web_router.get("/uitkomsten.pdf")
async def outcome_page_pdf(request: Request, viewer: PageViewer) -> Response:
    if not viewer.is_admin:
        raise PageError(403, "Deze download is voor de beheerder van uw organisatie.")
    async with _session(request) as session:
        return await _pdf_response(session, services(request), viewer)


@web_router.get("/uitkomsten/onderzoek.csv")
async def outcome_page_research(request: Request, viewer: PageViewer, scheiding: str = "komma") -> Response:
    if not viewer.is_admin:
        raise PageError(403, "Deze download is voor de beheerder van uw organisatie.")
    dialect = _web_dialect(scheiding)
    svc = services(request)
    async with _session(request) as session:
        found = await reports.participants(session, tz=svc.moment().tz, org_id=viewer.claims.org_id)
    rows = outcomes.research_rows(found, key=svc.settings.research_export_key)
    return _csv(outcomes.csv_text(rows, outcomes.RESEARCH_COLUMNS, dialect), dialect, "meer-contact-onderzoek.csv")
