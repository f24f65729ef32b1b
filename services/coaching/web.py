"""Coaching's web pages (Dutch, server-rendered with Jinja2, a little JavaScript for the
live updates): login, the dashboard, the participant page with the call form, the call
guide and the personal plan, the organisation overview and the materials page."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from sse_starlette import EventSourceResponse
from starlette.datastructures import FormData

from services.coaching import dashboard, intake_use_cases, storage, use_cases
from services.coaching.api import PDF_HEADERS, Services, plan_pdf_bytes, recruitment_pdf
from services.coaching.auth import (
    CSRF_FIELD,
    DEVICE_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FragmentViewer,
    PageViewer,
    SignallerPageViewer,
    Viewer,
    check_form,
    check_login_form,
    safe_next,
    still_allowed,
)
from services.coaching.dashboard import DashboardFilter, Moment
from services.coaching.guide import GUIDE
from services.coaching.kit import signup_url
from services.coaching.live import stream_changes
from services.coaching.plan import CAUSES, cause_labels, questionnaire_rows
from services.coaching.tables import CallCreate, DashboardRow, ParticipantDetail, PlanCreate
from shared.errors import Refusal, RefusalKind
from shared.logging import get_logger
from shared.runtime import Runtime
from shared.staff_tokens import InvalidStaffTokenError
from shared.templating import template_environment

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)
DEVICE_COOKIE_MAX_AGE = 180 * 24 * 3600
"""Enrolment's device token carries its own expiry; the cookie need not outlive its default."""

WEEKDAYS = ("ma", "di", "wo", "do", "vr", "za", "zo")
MONTHS = ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec")
STATUS = {
    "enrolled": "Aangemeld",
    "active": "Bezig",
    "paused": "Gepauzeerd",
    "stopped": "Gestopt",
    "completed": "Afgerond",
    "unknown": "Nog onbekend",
    "erased": "Gewist",
}
CALL_STATUS = {
    "done": "Gedaan",
    "upcoming": "Gepland",
    "due": "Nu aan de beurt",
    "overdue": "Te laat",
    "cancelled": "Vervallen",
    "unknown": "Nog niet bekend",
}
TREND = {"up": ("↑", "gaat beter"), "down": ("↓", "gaat minder goed"), "steady": ("→", "blijft gelijk")}
MESSAGES = {
    "gesprek": "Het gesprek is vastgelegd.",
    "gesprek-niet-bereikt": "De poging is vastgelegd. Die telt niet als contact; probeer het later nog eens.",
    "verplaatst": "Het geplande gesprek is verplaatst.",
    "plan": "Het persoonlijk plan is bewaard. De vorige versie blijft in de geschiedenis.",
    "plan-ongewijzigd": "Er was niets veranderd; het plan is niet opnieuw bewaard.",
}
FILTERS = {
    "alle": "Alle deelnemers",
    "aandacht": "Vraagt aandacht",
    "bellen": "Gesprek aan de beurt",
    "klaar": "Afgerond of gestopt",
}
FILTER_KINDS: dict[str, DashboardFilter] = {
    "alle": "all",
    "aandacht": "attention",
    "bellen": "call_due",
    "klaar": "finished",
}
"""The dashboard's filters by the Dutch key in the page's address."""


PAGE_REFUSALS: tuple[RefusalKind, ...] = ("forbidden", "gone")
"""Refusals a form cannot fix: the page gives way to the Dutch error page with their status."""


class PageError(Exception):
    """Show a Dutch error page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- template helpers ----------------------------------------------------------------------


def build_templates() -> Jinja2Templates:
    """The platform's Jinja2 set-up, with the coaching pages' labels and the percentage filter."""
    environment = template_environment(
        Path(__file__).parent / "templates",
        filters={"pct": lambda rate: "–" if rate is None else f"{round(rate * 100)}%"},
        extra_globals={
            "STATUS": STATUS,
            "CALL_STATUS": CALL_STATUS,
            "TREND": TREND,
            "CAUSES": CAUSES,
            "GUIDE": GUIDE,
            "FILTERS": FILTERS,
        },
    )
    return Jinja2Templates(env=environment)


class Formatter:
    """Dates and times as a Dutch coach reads them, in the coaches' time zone."""

    def __init__(self, moment: Moment) -> None:
        self.moment = moment

    def day(self, value: date | datetime | None) -> str:
        if value is None:
            return "–"
        local = self.moment.local_date(value) if isinstance(value, datetime) else value
        return f"{WEEKDAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]}"

    def when(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        local = value.astimezone(self.moment.tz)
        return f"{self.day(value)} {local:%H:%M}"

    def ago(self, value: datetime | None) -> str:
        if value is None:
            return "nog nooit"
        days = (self.moment.today - self.moment.local_date(value)).days
        if days <= 0:
            return f"vandaag {value.astimezone(self.moment.tz):%H:%M}"
        if days == 1:
            return "gisteren"
        return f"{days} dagen geleden"

    def greeting(self) -> str:
        hour = self.moment.now.astimezone(self.moment.tz).hour
        return "Goedemorgen" if hour < 12 else "Goedemiddag" if hour < 18 else "Goedenavond"


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _templates(request: Request) -> Jinja2Templates:
    found: Jinja2Templates = request.app.state.templates
    return found


def _session(request: Request) -> AsyncSession:
    runtime: Runtime = request.app.state.runtime
    return runtime.database.session()


async def _frame(session: AsyncSession, viewer: Viewer | None, moment: Moment) -> dict[str, Any]:
    """What every page's frame shows: who is logged in, for which organisation."""
    if viewer is None:
        return {"viewer": None, "coach_name": None, "organisation": None, "fmt": Formatter(moment)}
    coach = await storage.coach(session, coach_id=viewer.claims.coach_id) if viewer.claims.coach_id else None
    organisation = await storage.organisation(session, org_id=viewer.claims.org_id)
    return {
        "viewer": viewer,
        "coach_name": coach.name if coach else None,
        "organisation": organisation.display_name if organisation else None,
        "brand_colour": organisation.brand_colour if organisation else None,
        "organisation_logo_url": organisation.logo_url if organisation else None,
        "csrf_token": viewer.csrf_token,
        "fmt": Formatter(moment),
    }


def render(request: Request, name: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
    response = _templates(request).TemplateResponse(request, name, dict(context), status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _cookie_secure(request: Request) -> bool:
    settings = _services(request).settings
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    # Production always runs behind TLS: Secure even when a proxy's scheme did not reach us.
    return settings.env == "production" or request.url.scheme == "https"


def _check_form(request: Request, viewer: Viewer, form: FormData) -> None:
    token = form.get(CSRF_FIELD)
    try:
        check_form(request, viewer, token if isinstance(token, str) else None)
    except HTTPException as error:
        raise PageError(error.status_code, str(error.detail)) from None


async def _participant_row(session: AsyncSession, viewer: Viewer, participant_id: UUID) -> DashboardRow:
    row = await storage.visible_row(session, scope=viewer.scope, participant_id=participant_id)
    if row is None:
        raise PageError(404, "Deze deelnemer staat niet in uw overzicht.")
    return row


# --- login ---------------------------------------------------------------------------------


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/overzicht", status_code=303)


def _login_page(
    request: Request, *, next_path: str, message: str | None, email: str = "", status_code: int = 200
) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    moment = _services(request).moment()
    response = render(
        request,
        "login.html.j2",
        {
            "viewer": None,
            "organisation": None,
            "coach_name": None,
            "fmt": Formatter(moment),
            "login_token": token,
            "next_path": next_path,
            "message": message,
            "email": email,
        },
        status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="lax", secure=_cookie_secure(request)
    )
    return response


@router.get("/inloggen")
async def login_page(request: Request, next: str | None = None, reden: str | None = None) -> HTMLResponse:
    messages = {
        "verlopen": "Uw sessie is verlopen. Log opnieuw in, dan gaat u verder waar u was.",
        "uitgelogd": "U bent uitgelogd. Tot de volgende keer!",
    }
    return _login_page(request, next_path=safe_next(next), message=messages.get(reden or ""))


@router.post("/inloggen")
async def login(request: Request) -> Response:
    form = await request.form()
    token_field = form.get("login_token")
    try:
        check_login_form(request, token_field if isinstance(token_field, str) else None)
    except HTTPException:
        return _login_page(
            request,
            next_path="/overzicht",
            message="Het formulier was verlopen. Probeer het nog eens.",
            status_code=403,
        )
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    next_path = safe_next(str(form.get("next") or ""))
    if not email or not password:
        return _login_page(
            request, next_path=next_path, message="Vul uw e-mailadres en wachtwoord in.", email=email, status_code=422
        )
    svc = _services(request)
    url = f"{svc.settings.enrolment_base_url.rstrip('/')}/api/auth/login"
    # Enrolment limits failed logins per client address and lets a browser that logged in
    # before through (its device token): pass both on, as a proxy does.
    body = {"email": email, "password": password, "device_token": request.cookies.get(DEVICE_COOKIE)}
    forwarded = {"X-Forwarded-For": request.client.host} if request.client else {}
    try:
        async with httpx.AsyncClient(timeout=svc.settings.login_timeout_s) as client:
            answer = await client.post(url, json=body, headers=forwarded)
    except httpx.HTTPError as error:
        log.warning("login service unreachable", error=type(error).__name__)
        answer = None
    if answer is not None and answer.status_code == 401:
        return _login_page(
            request,
            next_path=next_path,
            message="Dit e-mailadres en wachtwoord horen niet bij elkaar. Probeer het nog eens.",
            email=email,
            status_code=401,
        )
    if answer is not None and answer.status_code == 422:
        return _login_page(
            request, next_path=next_path, message="Vul een geldig e-mailadres in.", email=email, status_code=422
        )
    if answer is not None and answer.status_code == 429:
        return _login_page(
            request,
            next_path=next_path,
            message=f"Er is te vaak geprobeerd in te loggen. Probeer het {_wait_text(answer)} opnieuw.",
            email=email,
            status_code=429,
        )
    token = _token_from(answer)
    if token is None:
        return _login_page(
            request,
            next_path=next_path,
            message="Inloggen lukt nu even niet. Probeer het over een paar minuten opnieuw.",
            email=email,
            status_code=503,
        )
    try:
        claims = request.app.state.staff_tokens.verify(token)
    except InvalidStaffTokenError:
        log.warning("login returned a token this service does not accept")
        return _login_page(
            request, next_path=next_path, message="Met dit account kunt u hier niet inloggen.", status_code=403
        )
    if claims.role == "partner" and next_path == "/overzicht":
        next_path = "/signalen"  # a partner's home: their signals (the dashboard is not theirs)
    response = RedirectResponse(next_path, status_code=303)
    max_age = int(answer.json().get("expires_in", 3600)) if answer is not None else 3600
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=_cookie_secure(request)
    )
    device_token = answer.json().get("device_token") if answer is not None else None
    if isinstance(device_token, str) and device_token:
        response.set_cookie(
            DEVICE_COOKIE,
            device_token,
            max_age=DEVICE_COOKIE_MAX_AGE,
            path="/inloggen",
            httponly=True,
            samesite="strict",
            secure=_cookie_secure(request),
        )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


def _wait_text(answer: httpx.Response) -> str:
    """ "over een minuut", "over 5 minuten": how long enrolment says to wait."""
    try:
        seconds = int(answer.headers.get("Retry-After", "900"))
    except ValueError:
        seconds = 900
    minutes = max(1, -(-seconds // 60))
    return "over een minuut" if minutes == 1 else f"over {minutes} minuten"


def _token_from(answer: httpx.Response | None) -> str | None:
    if answer is None or answer.status_code != 200:
        if answer is not None:
            log.warning("login service answered unexpectedly", status=answer.status_code)
        return None
    try:
        token = answer.json().get("access_token")
    except ValueError:
        return None
    return token if isinstance(token, str) and token else None


@router.post("/uitloggen")
async def logout(request: Request, viewer: SignallerPageViewer) -> RedirectResponse:
    _check_form(request, viewer, await request.form())
    # Enrolment ends the session everywhere (staff.access_changed); the cookie goes either way.
    svc = _services(request)
    url = f"{svc.settings.enrolment_base_url.rstrip('/')}/api/auth/logout"
    try:
        async with httpx.AsyncClient(timeout=svc.settings.login_timeout_s) as client:
            answer = await client.post(url, headers={"Authorization": f"Bearer {viewer.token}"})
        if answer.status_code != 204:
            log.warning("logout answered unexpectedly", status=answer.status_code)
    except httpx.HTTPError as error:
        log.warning("logout service unreachable", error=type(error).__name__)
    response = RedirectResponse("/inloggen?reden=uitgelogd", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- the dashboard ---------------------------------------------------------------------------


@router.get("/overzicht")
async def overview_page(
    request: Request,
    viewer: PageViewer,
    filter: str = "alle",
    coach: UUID | None = None,
) -> HTMLResponse:
    svc = _services(request)
    moment = svc.moment()
    chosen = filter if filter in FILTERS else "alle"
    async with _session(request) as session:
        coach_filter = coach if viewer.is_admin else None
        lines = await dashboard.summaries(session, scope=viewer.scope, moment=moment, coach_id=coach_filter)
        coaches = await storage.coach_names(session, org_id=viewer.claims.org_id) if viewer.is_admin else {}
        frame = await _frame(session, viewer, moment)
    counts_by_kind = dashboard.filter_counts(lines)
    counts = {key: counts_by_kind[kind] for key, kind in FILTER_KINDS.items()}
    shown = dashboard.in_dashboard_order(lines, FILTER_KINDS[chosen])
    return render(
        request,
        "dashboard.html.j2",
        {
            **frame,
            "lines": shown,
            "counts": counts,
            "chosen": chosen,
            "coaches": sorted(coaches.items(), key=lambda item: (item[1] or "").lower()),
            "coach_filter": coach_filter,
            "active": "overzicht",
        },
    )


@router.get("/overzicht/rij/{participant_id}")
async def dashboard_row(request: Request, participant_id: UUID, viewer: FragmentViewer) -> HTMLResponse:
    """One dashboard row, fetched by the page's script after a live change."""
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        row = await storage.visible_row(session, scope=viewer.scope, participant_id=participant_id)
        if row is None:
            return HTMLResponse("", status_code=404)
        line = await dashboard.one_summary(session, row=row, moment=moment)
    return render(request, "_row.html.j2", {"line": line, "viewer": viewer, "fmt": Formatter(moment)})


@router.get("/live")
async def live(request: Request, viewer: FragmentViewer) -> EventSourceResponse:
    svc = _services(request)
    return stream_changes(
        svc.hub,
        org_id=viewer.claims.org_id,
        coach_id=viewer.scope.coach_id,
        token=viewer.token,
        ping_s=svc.settings.live_ping_s,
        still_allowed=lambda: still_allowed(request, viewer.claims),
    )


# --- the participant page ------------------------------------------------------------------


def _call_defaults(detail: ParticipantDetail, moment: Moment) -> dict[str, Any]:
    local = moment.now.astimezone(moment.tz)
    suggested = next((p.number for p in detail.planned_calls if p.status not in ("done", "cancelled")), None)
    return {
        "called_date": local.date().isoformat(),
        "called_time": f"{local:%H:%M}",
        "reached": "ja",
        "duration": "",
        "planned_call": str(suggested) if suggested else "extra",
        "lessons": [],
        "notes": "",
        "next_agreement": "",
        "offer_id": "",
    }


def _plan_defaults(versions: Sequence[Any]) -> dict[str, Any]:
    current = versions[0] if versions else None
    return {
        "noticed_how": current.noticed_how or "" if current else "",
        "own_question": current.own_question or "" if current else "",
        "causes": list(current.causes) if current else [],
        "causes_other": current.causes_other or "" if current else "",
        "goals": current.goals or "" if current else "",
        "steps": current.steps or "" if current else "",
        "offer_ids": list(current.offer_ids or []) if current else [],
    }


async def _participant_page(
    request: Request,
    viewer: Viewer,
    participant_id: UUID,
    *,
    call_form: dict[str, Any] | None = None,
    plan_form: dict[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    error_section: str | None = None,
    status_code: int = 200,
    guide_number: int | None = None,
) -> HTMLResponse:
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        row = await _participant_row(session, viewer, participant_id)
        detail = await dashboard.detail(session, row=row, moment=moment)
        versions = await storage.plan_versions(session, participant_id=participant_id)
        answers = await storage.questionnaire_answers(session, participant_id=participant_id)
        offers = await intake_use_cases.local_offers(session, row.org_id)
        frame = await _frame(session, viewer, moment)
    call_form = call_form or _call_defaults(detail, moment)
    chosen_call = guide_number or (int(call_form["planned_call"]) if call_form["planned_call"].isdigit() else None)
    if chosen_call is None:
        upcoming = detail.summary.next_call
        chosen_call = upcoming.number if upcoming else 4
    message_key = request.query_params.get("bericht", "")
    return render(
        request,
        "participant.html.j2",
        {
            **frame,
            "detail": detail,
            "summary": detail.summary,
            "guide": dashboard.call_guide(detail, chosen_call),
            "call_form": call_form,
            "plan_form": plan_form or _plan_defaults(versions),
            "versions": versions,
            "questionnaire": questionnaire_rows(answers),
            "offers": offers,
            "offer_names": {str(offer.get("offer_id")): str(offer.get("name")) for offer in offers},
            "cause_labels": cause_labels,
            "errors": errors or {},
            "error_section": error_section,
            "message": MESSAGES.get(message_key),
            "max_chart": max([1, *(d.human + d.automated for d in detail.opens_per_day)]),
        },
        status_code,
    )


@router.get("/deelnemers/{participant_id}")
async def participant_page(
    request: Request, participant_id: UUID, viewer: PageViewer, gesprek: int | None = None
) -> HTMLResponse:
    guide_number = gesprek if gesprek in (1, 2, 3, 4) else None
    return await _participant_page(request, viewer, participant_id, guide_number=guide_number)


@router.get("/deelnemers/{participant_id}/kerncijfers")
async def participant_figures(request: Request, participant_id: UUID, viewer: FragmentViewer) -> HTMLResponse:
    """The figures block of the participant page, fetched by the page's script after a live change."""
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        row = await storage.visible_row(session, scope=viewer.scope, participant_id=participant_id)
        if row is None:
            return HTMLResponse("", status_code=404)
        detail = await dashboard.detail(session, row=row, moment=moment)
    return render(
        request,
        "_figures.html.j2",
        {
            "summary": detail.summary,
            "detail": detail,
            "fmt": Formatter(moment),
            "max_chart": max([1, *(d.human + d.automated for d in detail.opens_per_day)]),
        },
    )


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


UNSTORABLE_TEXT = "Deze tekst bevat een onzichtbaar teken dat niet kan worden bewaard. Typ de tekst opnieuw."
CALL_FIELD_MESSAGES = {
    "called_at": "Vul een geldige datum en tijd in.",
    "duration_minutes": "Vul de duur in hele minuten in (0 tot 600).",
    "planned_call": "Kies welk gesprek dit was.",
    "lessons_discussed": "Kies lessen van 1 tot en met 60.",
    "notes": "De aantekeningen zijn te lang (hooguit 5000 tekens).",
    "next_agreement": "De afspraak is te lang (hooguit 2000 tekens).",
    "reached": "Geef aan of u de deelnemer heeft gesproken.",
    "offer_id": "Kies aanbod uit de lijst van uw organisatie.",
}


def _parse_call(form: FormData, tz: ZoneInfo) -> tuple[dict[str, Any], CallCreate | None, dict[str, str]]:
    """The call form as entered (to show again) and as a CallCreate, or Dutch errors per field."""
    entered: dict[str, Any] = {
        "called_date": _text(form, "called_date"),
        "called_time": _text(form, "called_time"),
        "reached": _text(form, "reached"),
        "duration": _text(form, "duration"),
        "planned_call": _text(form, "planned_call") or "extra",
        "lessons": [int(v) for v in form.getlist("lessons") if isinstance(v, str) and v.isdigit()],
        "notes": _text(form, "notes"),
        "next_agreement": _text(form, "next_agreement"),
        "offer_id": _text(form, "offer_id"),
    }
    errors: dict[str, str] = {}
    called_at: datetime | None = None
    try:
        called_at = datetime.combine(
            date.fromisoformat(entered["called_date"]), time.fromisoformat(entered["called_time"]), tzinfo=tz
        )
    except ValueError:
        errors["called_at"] = CALL_FIELD_MESSAGES["called_at"]
    if entered["reached"] not in ("ja", "nee"):
        errors["reached"] = CALL_FIELD_MESSAGES["reached"]
    duration = entered["duration"] or "0"
    if not duration.isdigit():
        errors["duration_minutes"] = CALL_FIELD_MESSAGES["duration_minutes"]
    planned = entered["planned_call"]
    if planned != "extra" and planned not in ("1", "2", "3", "4"):
        errors["planned_call"] = CALL_FIELD_MESSAGES["planned_call"]
    if errors:
        return entered, None, errors
    try:
        body = CallCreate.model_validate(
            {
                "called_at": called_at,
                "reached": entered["reached"] == "ja",
                "duration_minutes": int(duration),
                "planned_call": None if planned == "extra" else int(planned),
                "lessons_discussed": entered["lessons"],
                "notes": entered["notes"] or None,
                "next_agreement": entered["next_agreement"] or None,
                "offer_id": entered["offer_id"] or None,
            }
        )
    except ValidationError as error:
        for issue in error.errors():
            field = str(issue["loc"][0]) if issue["loc"] else "called_at"
            errors[field] = (
                UNSTORABLE_TEXT
                if issue["type"] == "control_character"
                else CALL_FIELD_MESSAGES.get(field, "Controleer dit veld.")
            )
        return entered, None, errors
    return entered, body, errors


@router.post("/deelnemers/{participant_id}/gesprekken")
async def log_call(request: Request, participant_id: UUID, viewer: PageViewer) -> Response:
    form = await request.form()
    _check_form(request, viewer, form)
    svc = _services(request)
    entered, body, errors = _parse_call(form, svc.moment().tz)
    if body is not None:
        async with _session(request) as session:
            row = await _participant_row(session, viewer, participant_id)
            try:
                _, change = await use_cases.log_call(
                    session, viewer=viewer, row=row, body=body, now=svc.clock.now(), tz=svc.moment().tz
                )
            except Refusal as refused:
                if refused.kind in PAGE_REFUSALS:
                    raise PageError(refused.http_status, refused.dutch) from None
                errors = {refused.field or "called_at": refused.dutch}
            else:
                svc.hub.publish(change)
                key = "gesprek" if body.reached else "gesprek-niet-bereikt"
                return RedirectResponse(f"/deelnemers/{participant_id}?bericht={key}#gesprekken", status_code=303)
    return await _participant_page(
        request, viewer, participant_id, call_form=entered, errors=errors, error_section="call", status_code=422
    )


@router.post("/deelnemers/{participant_id}/geplande-gesprekken/{number}")
async def move_planned_call(request: Request, participant_id: UUID, number: int, viewer: PageViewer) -> Response:
    form = await request.form()
    _check_form(request, viewer, form)
    svc = _services(request)
    moment = svc.moment()
    try:
        due_date = date.fromisoformat(_text(form, "due_date"))
    except ValueError:
        return await _participant_page(
            request,
            viewer,
            participant_id,
            errors={f"move_{number}": "Vul een geldige datum in."},
            error_section="move",
            status_code=422,
        )
    async with _session(request) as session:
        row = await _participant_row(session, viewer, participant_id)
        try:
            await use_cases.move_planned_call(
                session, viewer=viewer, row=row, number=number, due_date=due_date, moment=moment
            )
        except Refusal as refused:
            if refused.kind in (*PAGE_REFUSALS, "not_found"):
                raise PageError(refused.http_status, refused.dutch) from None
            return await _participant_page(
                request,
                viewer,
                participant_id,
                errors={f"move_{number}": refused.dutch},
                error_section="move",
                status_code=422,
            )
    return RedirectResponse(f"/deelnemers/{participant_id}?bericht=verplaatst#gesprekken", status_code=303)


@router.post("/deelnemers/{participant_id}/plan")
async def save_plan(request: Request, participant_id: UUID, viewer: PageViewer) -> Response:
    form = await request.form()
    _check_form(request, viewer, form)
    svc = _services(request)
    entered = {
        "noticed_how": _text(form, "noticed_how"),
        "own_question": _text(form, "own_question"),
        "causes": [v for v in form.getlist("causes") if isinstance(v, str)],
        "causes_other": _text(form, "causes_other"),
        "goals": _text(form, "goals"),
        "steps": _text(form, "steps"),
        "offer_ids": [v for v in form.getlist("offer_ids") if isinstance(v, str)],
    }
    try:
        body = PlanCreate.model_validate(entered)
    except ValidationError as error:
        issue = error.errors()[0]
        field = str(issue["loc"][0])
        too_long = (
            "Kies aanbod uit de lijst van uw organisatie."
            if field == "offer_ids"
            else "Dit deel is te lang (hooguit 4000 tekens)."
        )
        return await _participant_page(
            request,
            viewer,
            participant_id,
            plan_form=entered,
            errors={field: UNSTORABLE_TEXT if issue["type"] == "control_character" else too_long},
            error_section="plan",
            status_code=422,
        )
    async with _session(request) as session:
        row = await _participant_row(session, viewer, participant_id)
        try:
            _, change = await use_cases.save_plan(session, viewer=viewer, row=row, body=body, now=svc.clock.now())
        except Refusal as refused:
            if refused.kind == "conflict":
                return RedirectResponse(f"/deelnemers/{participant_id}?bericht=plan-ongewijzigd#plan", status_code=303)
            if refused.kind in PAGE_REFUSALS:
                raise PageError(refused.http_status, refused.dutch) from None
            return await _participant_page(
                request,
                viewer,
                participant_id,
                plan_form=entered,
                errors={refused.field or "plan": refused.dutch},
                error_section="plan",
                status_code=422,
            )
    svc.hub.publish(change)
    return RedirectResponse(f"/deelnemers/{participant_id}?bericht=plan#plan", status_code=303)


@router.get("/deelnemers/{participant_id}/plan.pdf")
async def plan_pdf(request: Request, participant_id: UUID, viewer: PageViewer, versie: int | None = None) -> Response:
    async with _session(request) as session:
        row = await _participant_row(session, viewer, participant_id)
        pdf = await plan_pdf_bytes(session, row, versie)
    if pdf is None:
        raise PageError(404, "Er is nog geen persoonlijk plan om te downloaden.")
    headers = {**PDF_HEADERS, "Content-Disposition": 'attachment; filename="persoonlijk-plan.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


# --- organisation admin ----------------------------------------------------------------------


def _admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise PageError(403, "Deze pagina is voor de beheerder van uw organisatie.")


@router.get("/organisatie")
async def organisation_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    _admin(viewer)
    moment = _services(request).moment()
    async with _session(request) as session:
        overview = await dashboard.organisation_overview(session, org_id=viewer.claims.org_id, moment=moment)
        frame = await _frame(session, viewer, moment)
    return render(request, "organisation.html.j2", {**frame, "overview": overview, "active": "organisatie"})


@router.get("/materialen")
async def materials_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        frame = await _frame(session, viewer, moment)
        organisation = await storage.organisation(session, org_id=viewer.claims.org_id)
    return render(
        request,
        "materials.html.j2",
        {
            **frame,
            "signup_url": signup_url(
                svc.settings.enrolment_base_url, viewer.claims.org_id, organisation.slug if organisation else None
            ),
            "active": "materialen",
        },
    )


@router.get("/materialen/{kind}.pdf")
async def recruitment_kit(request: Request, kind: str, viewer: PageViewer) -> Response:
    _admin(viewer)
    names = {"folder": "flyer", "poster": "poster"}
    if kind not in names:
        raise PageError(404, "Dit materiaal bestaat niet.")
    async with _session(request) as session:
        pdf = await recruitment_pdf(session, _services(request), viewer.claims.org_id, names[kind])
    headers = {**PDF_HEADERS, "Content-Disposition": f'inline; filename="meer-contact-{kind}.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


async def error_page(request: Request, error: PageError, *, home: str = "/overzicht") -> HTMLResponse:
    """The Dutch error page (a 403, 404 or 410 on a web page)."""
    moment = _services(request).moment()
    return render(
        request,
        "error.html.j2",
        {
            "viewer": None,
            "organisation": None,
            "coach_name": None,
            "fmt": Formatter(moment),
            "error": error,
            "home": home,
        },
        error.status,
    )
