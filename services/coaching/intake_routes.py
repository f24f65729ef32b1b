"""The intake's JSON API and pages: the signal form and the signaller's status list (the only
things a partner may reach), the coordinator's hand-over and counts, and the coach's steps on
the signal's page. Enrolling calls enrolment's normal path with the coach's own token."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from services.coaching import intake, storage
from services.coaching import intake_use_cases as cases
from services.coaching.api import Services, SessionDep, require_admin, services
from services.coaching.auth import ApiViewer, PageViewer, SignallerApiViewer, SignallerPageViewer, Viewer
from services.coaching.intake_tables import (
    AssignmentCreate,
    Checklists,
    ClosureCreate,
    EnrolmentCreate,
    FirstContactCreate,
    PartnerCountsPublic,
    QuestionCreate,
    ReferralCreate,
    Signal,
    SignalCountsPublic,
    SignalCountsReport,
    SignalCreate,
    SignalPublic,
    SignalReceipt,
    SignalStatusPublic,
    SignalStep,
    SignalStepPublic,
)
from services.coaching.plan import CAUSES, cause_labels
from services.coaching.web import UNSTORABLE_TEXT, PageError, _check_form, _frame, _services, _session, _text, render
from shared.errors import Refusal
from shared.logging import get_logger
from shared.runtime import api_error, error_responses

log = get_logger(__name__)

api_router = APIRouter(
    prefix="/api/signals",
    tags=["signals"],
    responses=error_responses(
        {
            401: "No staff token, or it is not valid or has expired.",
            503: "Staff login is not configured on this server.",
        }
    ),
)
web_router = APIRouter(include_in_schema=False)

ServicesDep = Annotated[Services, Depends(services)]
SignalId = Annotated[UUID, Path(description="The signal's id.")]
_PARTNER = {403: "Not for a partner (a partner only submits signals and follows their status)."}
_NOT_YOURS = {404: "No such signal among yours (whether it exists elsewhere is not told)."}
STEP_ERRORS = error_responses(
    {
        403: "Not for this role: only the assigned coach takes the steps, only the coordinator hands over.",
        **_NOT_YOURS,
        409: "The step does not fit where the signal is (e.g. finished, or the first contact is missing).",
    }
)


# --- enrolment's normal path -----------------------------------------------------------------------


class HttpEnroller:
    """POST /api/organisations/{org}/participants at enrolment, with the coach's own token."""

    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport

    async def enrol(self, request: cases.EnrolmentRequest) -> UUID:
        body: dict[str, Any] = {
            "first_name": request.first_name,
            "email": request.email,
            "phone": request.phone,
            "coach_id": str(request.coach_id),
            "consent": {
                "given_at": request.consent_given_at.isoformat(),
                "via": "signal",
                "signal_id": str(request.signal_id),
            },
        }
        if request.start_date is not None:
            body["start_date"] = request.start_date.isoformat()
        if request.send_time is not None:
            body["send_time"] = request.send_time.strftime("%H:%M")
        url = f"{self.base_url}/api/organisations/{request.org_id}/participants"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport) as client:
                answer = await client.post(url, json=body, headers={"Authorization": f"Bearer {request.token}"})
        except httpx.HTTPError as error:
            log.warning("enrolment unreachable", error=type(error).__name__)
            raise cases.EnrolmentUnavailable() from None
        if answer.status_code in (200, 201):
            try:
                return UUID(str(answer.json()["id"]))
            except (ValueError, KeyError, TypeError):
                log.warning("enrolment answered without a participant id", status=answer.status_code)
                raise cases.EnrolmentUnavailable() from None
        raise enrolment_refusal(answer)


def enrolment_refusal(answer: httpx.Response) -> Refusal | cases.EnrolmentUnavailable:
    """Enrolment's answer in Dutch for the coach (a 5xx: unavailable, try again)."""
    status = answer.status_code
    fields: list[str] = []
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        error = answer.json()["error"]  # the one error shape of every API (shared.runtime.error_body)
        fields = [str(f.get("field")) for f in error.get("fields") or [] if isinstance(f, dict)]
    log.info("enrolment refused an enrolment from a signal", status=status)
    if status == 409:
        return Refusal(
            "conflict",
            "Enrolment answered 409: this person is already enrolled.",
            field="email",
            dutch="Iemand met dit e-mailadres is al aangemeld bij uw organisatie.",
        )
    if status == 422 and "start_date" in fields:
        return Refusal(
            "invalid",
            "Enrolment refused the start date.",
            field="start_date",
            dutch="Kies een startdatum vanaf vandaag, en niet verder dan een jaar vooruit.",
        )
    if status == 422 and "email" in fields:
        return Refusal(
            "invalid", "Enrolment refused the e-mail address.", field="email", dutch="Dit e-mailadres klopt niet."
        )
    if status == 422:
        return Refusal(
            "invalid",
            "Enrolment refused the details.",
            field="email",
            dutch="Het aanmeldsysteem nam de gegevens niet aan. "
            "Controleer de naam, het e-mailadres en het telefoonnummer.",
        )
    if status == 401:
        return Refusal("forbidden", "Enrolment refused the token.", dutch="Uw sessie is verlopen. Log opnieuw in.")
    if status in (403, 404):
        return Refusal(
            "forbidden",
            f"Enrolment answered {status}.",
            dutch="Uw organisatie kan nu niemand aanmelden (bijvoorbeeld omdat de licentie vol of verlopen is). "
            "Vraag het uw coördinator.",
        )
    return cases.EnrolmentUnavailable()


def enroller_of(svc: Services) -> cases.Enroller:
    return HttpEnroller(svc.settings.enrolment_base_url, svc.settings.login_timeout_s)


# --- shapes -------------------------------------------------------------------------------------------


def _status(signal: Signal, svc: Services) -> SignalStatusPublic:
    dates = cases.signal_dates(signal, svc.moment().tz)
    stage, since = intake.signaller_stage(dates)
    return SignalStatusPublic(
        signal_id=signal.signal_id,
        first_name=signal.first_name,
        received_on=dates.received_on,
        status=stage,
        status_label=intake.STAGE_LABELS[stage],
        status_since=since,
    )


def _offer_names(offers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {str(offer.get("offer_id")): str(offer.get("name") or "") for offer in offers}


async def _step_views(session: AsyncSession, org_id: UUID, found: Sequence[SignalStep]) -> list[SignalStepPublic]:
    coaches = await storage.coach_names(session, org_id=org_id)
    offers = _offer_names(await cases.local_offers(session, org_id))
    return [
        SignalStepPublic(
            at=step.occurred_at,
            type=step.type,
            text=intake.step_text(
                step.type,
                step.facts,
                coach_name=coaches.get(step.coach_id) if step.coach_id else None,
                offer_name=offers.get(str(step.facts.get("offer_id"))),
            ),
        )
        for step in found
    ]


async def _public(session: AsyncSession, signal: Signal, *, with_steps: bool) -> SignalPublic:
    coach = await storage.coach(session, coach_id=signal.coach_id) if signal.coach_id else None
    found = await cases.steps(session, [signal.signal_id]) if with_steps else []
    return SignalPublic(
        signal_id=signal.signal_id,
        state=signal.state,
        consent=signal.consent,
        first_name=signal.first_name,
        phone=signal.phone,
        email=signal.email,
        note=signal.note,
        noticed=list(signal.noticed),
        partner_organisation=signal.partner_organisation,
        received_at=signal.received_at,
        coach_id=signal.coach_id,
        coach_name=coach.name if coach else None,
        contact_date=signal.contact_date,
        discussable=signal.discussable,
        own_question=signal.own_question,
        causes=list(signal.causes),
        participant_id=signal.participant_id,
        offer_id=signal.offer_id,
        close_reason=signal.close_reason,
        steps=await _step_views(session, signal.org_id, found),
    )


def _counts_public(counts: intake.Counts) -> dict[str, int]:
    return {
        "received": counts.received,
        "picked_up_within_5_working_days": counts.picked_up_within_5_working_days,
        "contact_made": counts.contact_made,
        "enrolled": counts.enrolled,
        "referred": counts.referred,
        "closed": counts.closed,
    }


def _counts_report(org_id: UUID, report: intake.CountsReport) -> SignalCountsReport:
    return SignalCountsReport(
        org_id=org_id,
        total=SignalCountsPublic(**_counts_public(report.total)),
        by_partner_organisation=[
            PartnerCountsPublic(partner_organisation=name, **_counts_public(counts))
            for name, counts in report.by_partner
        ],
    )


# --- the JSON API -------------------------------------------------------------------------------------


@api_router.get("/checklists", summary="The checklists: what was noticed, causes, reasons to close")
async def checklists(viewer: SignallerApiViewer) -> Checklists:
    return Checklists(noticed=dict(intake.NOTICED), causes=dict(CAUSES), close_reasons=dict(intake.CLOSE_REASONS))


@api_router.post(
    "",
    status_code=201,
    summary="Submit a signal (a partner, coordinator or coach)",
    responses=error_responses(
        {
            404: "The organisation of the token is not known here (yet).",
            422: "Not a valid signal (e.g. a name without consent); nothing is stored.",
        }
    ),
)
async def submit_signal(
    body: SignalCreate, viewer: SignallerApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalReceipt:
    """With consent: a first name and a phone number or e-mail address. Without: only what was
    noticed, and the signal is only counted. Publishes signal.received (ids and keys only)."""
    signal = await cases.submit_signal(session, viewer=viewer, body=body, now=svc.clock.now())
    return SignalReceipt(signal_id=signal.signal_id, consent=signal.consent, status="received")


@api_router.get("/mine", summary="The status of the signals I submitted")
async def my_signals(viewer: SignallerApiViewer, session: SessionDep, svc: ServicesDep) -> list[SignalStatusPublic]:
    """How far each is (received, picked up, contact made, closed) and since when; nothing of the follow-up."""
    return [_status(signal, svc) for signal in await cases.submitted_by(session, viewer)]


@api_router.get("", summary="The signals to work on", responses=error_responses(_PARTNER))
async def signals(viewer: ApiViewer, session: SessionDep) -> list[SignalPublic]:
    """The coordinator: every signal with consent (new ones first); a coach: the ones assigned to them."""
    return [await _public(session, signal, with_steps=False) for signal in await cases.work_list(session, viewer)]


@api_router.get(
    "/counts",
    summary="Counts per organisation and per partner organisation",
    responses=error_responses({403: "Organisation admins only."}),
)
async def signal_counts(viewer: ApiViewer, session: SessionDep, svc: ServicesDep) -> SignalCountsReport:
    """Received (anonymous ones too), picked up within 5 working days, contact made, enrolled, referred, closed."""
    require_admin(viewer)
    report = await cases.counts(session, viewer.claims.org_id, svc.moment().tz)
    return _counts_report(viewer.claims.org_id, report)


@api_router.get(
    "/{signal_id}", summary="One signal with its steps", responses=error_responses({**_PARTNER, **_NOT_YOURS})
)
async def signal(signal_id: SignalId, viewer: ApiViewer, session: SessionDep) -> SignalPublic:
    return await _public(session, await cases.visible_signal(session, viewer, signal_id), with_steps=True)


@api_router.post(
    "/{signal_id}/assignment",
    summary="Hand the signal to a coach (the coordinator)",
    responses=STEP_ERRORS,
)
async def assign(
    signal_id: SignalId, body: AssignmentCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """Publishes signal.assigned."""
    found = await cases.assign(session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now())
    return await _public(session, found, with_steps=True)


@api_router.post("/{signal_id}/first-contact", summary="Record the first contact", responses=STEP_ERRORS)
async def first_contact(
    signal_id: SignalId, body: FirstContactCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """The assigned coach; the date not in the future. Publishes signal.contact_made."""
    found = await cases.record_first_contact(
        session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now(), tz=svc.moment().tz
    )
    return await _public(session, found, with_steps=True)


@api_router.post("/{signal_id}/question", summary="Record the own question and the causes", responses=STEP_ERRORS)
async def question(
    signal_id: SignalId, body: QuestionCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """Publishes signal.question_recorded (the cause keys; the question stays here)."""
    found = await cases.record_question(session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now())
    return await _public(session, found, with_steps=True)


@api_router.post(
    "/{signal_id}/enrolment",
    summary="Enrol the person in Meer contact (one click)",
    responses={
        **STEP_ERRORS,
        **error_responses({503: "Enrolment could not be reached; nothing was written, try again."}),
    },
)
async def enrolment(
    signal_id: SignalId, body: EnrolmentCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """Through enrolment's normal path with the coach's token and consent via the signal; the own
    question and causes become the first version of the personal plan. A retry answers the same."""
    try:
        found, _ = await cases.enrol(
            session,
            viewer=viewer,
            signal_id=signal_id,
            email=body.email,
            now=svc.clock.now(),
            enroller=enroller_of(svc),
            start_date=body.start_date,
            send_time=body.send_time,
        )
    except cases.EnrolmentUnavailable:
        raise api_error(503, "Enrolment could not be reached; nothing was written. Try again.") from None
    return await _public(session, found, with_steps=True)


@api_router.post("/{signal_id}/referral", summary="Refer to a local offer", responses=STEP_ERRORS)
async def referral(
    signal_id: SignalId, body: ReferralCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """One of the organisation's local offers. Publishes signal.referred."""
    found = await cases.refer(session, viewer=viewer, signal_id=signal_id, offer_id=body.offer_id, now=svc.clock.now())
    return await _public(session, found, with_steps=True)


@api_router.post("/{signal_id}/closure", summary="Close with a reason", responses=STEP_ERRORS)
async def closure(
    signal_id: SignalId, body: ClosureCreate, viewer: ApiViewer, session: SessionDep, svc: ServicesDep
) -> SignalPublic:
    """The assigned coach or the coordinator; the person's name, contact, note and question are blanked."""
    found = await cases.close(session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now())
    return await _public(session, found, with_steps=True)


# --- the pages ------------------------------------------------------------------------------------------

MESSAGES = {
    "ontvangen": "Dank u wel! Het signaal is doorgegeven. Hieronder ziet u hoe het ermee staat.",
    "geteld": "Dank u wel! Het signaal is anoniem meegeteld. Zonder toestemming nemen we geen contact op.",
    "toegewezen": "Het signaal is toegewezen.",
    "contact": "Het eerste contact is vastgelegd.",
    "vraag": "De eigen vraag en de oorzaken zijn bewaard.",
    "aangemeld": "De persoon is aangemeld voor Meer contact. De vraag en oorzaken staan in het persoonlijk plan.",
    "doorverwezen": "De doorverwijzing is vastgelegd.",
    "afgesloten": "Het signaal is afgesloten. De gegevens van de persoon zijn gewist.",
}
PAGE_REFUSALS = ("forbidden", "gone", "not_found")


def _labels() -> dict[str, Any]:
    return {
        "NOTICED": intake.NOTICED,
        "CLOSE_REASONS": intake.CLOSE_REASONS,
        "STAGE_LABELS": intake.STAGE_LABELS,
        "CAUSES": CAUSES,
        "cause_labels": cause_labels,
        "display_phone": intake.display_phone,
        "noticed_labels": lambda keys: [intake.NOTICED[key] for key in keys if key in intake.NOTICED],
    }


@web_router.get("/signalen")
async def signals_page(request: Request, viewer: SignallerPageViewer) -> HTMLResponse:
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        mine = [_status(signal, svc) for signal in await cases.submitted_by(session, viewer)]
        work = [] if viewer.is_partner else await cases.work_list(session, viewer)
        coaches = await storage.coach_names(session, org_id=viewer.claims.org_id) if work else {}
        report = await cases.counts(session, viewer.claims.org_id, moment.tz) if viewer.is_admin else None
        frame = await _frame(session, viewer, moment)
    return render(
        request,
        "signals.html.j2",
        {
            **frame,
            **_labels(),
            "mine": mine,
            "work": work,
            "coaches": coaches,
            "report": report,
            "message": MESSAGES.get(request.query_params.get("bericht", "")),
            "active": "signalen",
        },
    )


def _form_defaults() -> dict[str, Any]:
    return {"consent": "", "first_name": "", "phone": "", "email": "", "noticed": [], "note": ""}


async def _form_page(
    request: Request, viewer: Viewer, entered: dict[str, Any], errors: Mapping[str, str], status_code: int = 200
) -> HTMLResponse:
    moment = _services(request).moment()
    async with _session(request) as session:
        frame = await _frame(session, viewer, moment)
    return render(
        request,
        "signal_form.html.j2",
        {**frame, **_labels(), "form": entered, "errors": errors, "active": "signalen"},
        status_code,
    )


@web_router.get("/signalen/nieuw")
async def signal_form(request: Request, viewer: SignallerPageViewer) -> HTMLResponse:
    return await _form_page(request, viewer, _form_defaults(), {})


FORM_FIELD_MESSAGES = {
    "first_name": "Vul een voornaam in van hooguit 100 tekens.",
    "phone": "Vul een telefoonnummer in van hooguit 40 tekens.",
    "email": "Vul een e-mailadres in.",
    "note": "De toelichting mag hooguit 1000 tekens hebben.",
    "noticed": "Kies uit de lijst wat u is opgevallen.",
    "consent": "Geef aan of de persoon het goed vindt dat er contact wordt opgenomen.",
}


def _validation_errors(error: ValidationError, messages: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for issue in error.errors():
        field = str(issue["loc"][0]) if issue["loc"] else "form"
        errors.setdefault(
            field,
            UNSTORABLE_TEXT if issue["type"] == "control_character" else messages.get(field, "Controleer dit veld."),
        )
    return errors


@web_router.post("/signalen/nieuw")
async def submit_signal_form(request: Request, viewer: SignallerPageViewer) -> Response:
    form = await request.form()
    _check_form(request, viewer, form)
    svc = _services(request)
    entered: dict[str, Any] = {
        "consent": _text(form, "consent"),
        "first_name": _text(form, "first_name"),
        "phone": _text(form, "phone"),
        "email": _text(form, "email"),
        "noticed": [v for v in form.getlist("noticed") if isinstance(v, str)],
        "note": _text(form, "note"),
    }
    consent = _yes_no(form, "consent")
    if consent is None:
        return await _form_page(request, viewer, entered, {"consent": FORM_FIELD_MESSAGES["consent"]}, 422)
    try:
        body = SignalCreate.model_validate(
            {
                "consent": consent,
                "first_name": entered["first_name"] or None,
                "phone": entered["phone"] or None,
                "email": entered["email"] or None,
                "noticed": entered["noticed"],
                "note": entered["note"] or None,
            }
        )
    except ValidationError as error:
        return await _form_page(request, viewer, entered, _validation_errors(error, FORM_FIELD_MESSAGES), 422)
    async with _session(request) as session:
        try:
            signal = await cases.submit_signal(session, viewer=viewer, body=body, now=svc.clock.now())
        except Refusal as refused:
            return await _form_page(request, viewer, entered, {refused.field or "form": refused.dutch}, 422)
    return RedirectResponse(f"/signalen?bericht={'ontvangen' if signal.consent else 'geteld'}", status_code=303)


async def _signal_page(
    request: Request,
    viewer: Viewer,
    signal_id: UUID,
    *,
    errors: Mapping[str, str] | None = None,
    entered: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    svc = _services(request)
    moment = svc.moment()
    async with _session(request) as session:
        try:
            signal = await cases.visible_signal(session, viewer, signal_id)
        except Refusal as refused:
            raise PageError(refused.http_status, refused.dutch) from None
        public = await _public(session, signal, with_steps=True)
        coaches = await cases.active_coaches(session, viewer.claims.org_id) if viewer.is_admin else []
        offers = await cases.local_offers(session, viewer.claims.org_id)
        frame = await _frame(session, viewer, moment)
    return render(
        request,
        "signal.html.j2",
        {
            **frame,
            **_labels(),
            "signal": public,
            "coaches": coaches,
            "offers": offers,
            "offer_names": _offer_names(offers),
            "may_work": viewer.claims.coach_id is not None and viewer.claims.coach_id == signal.coach_id,
            "today": moment.today.isoformat(),
            "errors": errors or {},
            "entered": entered or {},
            "message": MESSAGES.get(request.query_params.get("bericht", "")),
            "active": "signalen",
        },
        status_code,
    )


@web_router.get("/signalen/{signal_id}")
async def signal_page(request: Request, signal_id: UUID, viewer: PageViewer) -> HTMLResponse:
    return await _signal_page(request, viewer, signal_id)


STEP_FIELD_MESSAGES = {
    "coach_id": "Kies een coach.",
    "contact_date": "Vul een geldige datum in.",
    "discussable": "Geef aan of eenzaamheid bespreekbaar is gemaakt.",
    "own_question": "Gebruik voor de vraag hooguit 4000 tekens.",
    "causes": "Kies oorzaken uit de lijst.",
    "email": "Vul een geldig e-mailadres in.",
    "start_date": "Vul een geldige datum in.",
    "offer_id": "Kies een aanbod uit de lijst.",
    "reason": "Kies een reden uit de lijst.",
    "note": "De toelichting mag hooguit 1000 tekens hebben.",
}


async def _step(
    request: Request,
    viewer: Viewer,
    signal_id: UUID,
    parse: Any,
    run: Any,
    message: str,
) -> Response:
    """A step form: parse it, run the use case, then back to the signal's page (or the page with the errors)."""
    form = await request.form()
    _check_form(request, viewer, form)
    entered: dict[str, Any] = {key: _text(form, key) for key in form if key != "csrf_token"}
    entered["causes"] = [v for v in form.getlist("causes") if isinstance(v, str)]
    try:
        body = parse(form)
    except ValidationError as error:
        return await _signal_page(
            request,
            viewer,
            signal_id,
            errors=_validation_errors(error, STEP_FIELD_MESSAGES),
            entered=entered,
            status_code=422,
        )
    async with _session(request) as session:
        try:
            await run(session, body)
        except Refusal as refused:
            if refused.kind in PAGE_REFUSALS:
                raise PageError(refused.http_status, refused.dutch) from None
            return await _signal_page(
                request,
                viewer,
                signal_id,
                errors={refused.field or "step": refused.dutch},
                entered=entered,
                status_code=422,
            )
        except cases.EnrolmentUnavailable:
            raise PageError(
                503, "Het aanmeldsysteem is nu niet bereikbaar. Er is niets vastgelegd; probeer het zo nog eens."
            ) from None
    return RedirectResponse(f"/signalen/{signal_id}?bericht={message}", status_code=303)


def _yes_no(form: FormData, name: str) -> bool | None:
    return {"ja": True, "nee": False}.get(_text(form, name))


def _date(form: FormData, name: str) -> date | str:
    try:
        return date.fromisoformat(_text(form, name))
    except ValueError:
        return _text(form, name)


@web_router.post("/signalen/{signal_id}/toewijzen")
async def assign_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: AssignmentCreate.model_validate({"coach_id": _text(form, "coach_id")}),
        lambda session, body: cases.assign(session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now()),
        "toegewezen",
    )


@web_router.post("/signalen/{signal_id}/eerste-contact")
async def first_contact_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: FirstContactCreate.model_validate(
            {"discussable": _yes_no(form, "discussable"), "contact_date": _date(form, "contact_date")}
        ),
        lambda session, body: cases.record_first_contact(
            session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now(), tz=svc.moment().tz
        ),
        "contact",
    )


@web_router.post("/signalen/{signal_id}/vraag")
async def question_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: QuestionCreate.model_validate(
            {
                "own_question": _text(form, "own_question") or None,
                "causes": [v for v in form.getlist("causes") if isinstance(v, str)],
            }
        ),
        lambda session, body: cases.record_question(
            session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now()
        ),
        "vraag",
    )


@web_router.post("/signalen/{signal_id}/aanmelden")
async def enrol_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: EnrolmentCreate.model_validate(
            {"email": _text(form, "email") or None, "start_date": _text(form, "start_date") or None}
        ),
        lambda session, body: cases.enrol(
            session,
            viewer=viewer,
            signal_id=signal_id,
            email=body.email,
            now=svc.clock.now(),
            enroller=enroller_of(svc),
            start_date=body.start_date,
        ),
        "aangemeld",
    )


@web_router.post("/signalen/{signal_id}/doorverwijzen")
async def refer_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: ReferralCreate.model_validate({"offer_id": _text(form, "offer_id")}),
        lambda session, body: cases.refer(
            session, viewer=viewer, signal_id=signal_id, offer_id=body.offer_id, now=svc.clock.now()
        ),
        "doorverwezen",
    )


@web_router.post("/signalen/{signal_id}/afsluiten")
async def close_form(request: Request, signal_id: UUID, viewer: PageViewer) -> Response:
    svc = _services(request)
    return await _step(
        request,
        viewer,
        signal_id,
        lambda form: ClosureCreate.model_validate(
            {"reason": _text(form, "reason"), "note": _text(form, "note") or None}
        ),
        lambda session, body: cases.close(session, viewer=viewer, signal_id=signal_id, body=body, now=svc.clock.now()),
        "afgesloten",
    )
