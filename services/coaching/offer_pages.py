"""The organisation admin's pages for the local offers (library, walking group, coffee
morning, …) that the lessons name: list, add, change and remove them in the browser.

Enrolment owns the offers; these pages call its local-offers API with the viewer's own
token, so enrolment's rules and rights decide (a coach's token is refused there too). Its
422 reasons come back in Dutch next to the field; when it cannot be reached the page says
so (503), never a 500."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from services.coaching.auth import LoginRequired, PageViewer, Viewer
from services.coaching.web import PageError, _admin, _check_form, _frame, _services, _session, render
from shared.events import LOCAL_OFFER_KINDS
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)

PAGE = "/organisatie/aanbod"
FIELDS = ("kind", "name", "description", "location", "schedule", "phone", "website")
KIND_LABELS = {kind: label for kind, (_, label) in LOCAL_OFFER_KINDS.items()}
FIELD_PROBLEMS = {
    "kind": "Kies wat voor aanbod het is.",
    "name": "Vul een naam in van hoogstens 100 tekens, op één regel.",
    "description": "De beschrijving mag hoogstens 1000 tekens hebben.",
    "location": "Vul de plaats in op één regel, hoogstens 300 tekens.",
    "schedule": "Vul in wanneer het is, op één regel, hoogstens 300 tekens.",
    "phone": "Dit telefoonnummer klopt niet. Schrijf het bijvoorbeeld als 010 123 45 67.",
    "website": "Dit webadres klopt niet. Het begint met https://, bijvoorbeeld https://www.bibliotheek.nl.",
}
"""Enrolment names the field at fault (in English, for developers); the admin reads why in Dutch."""
MESSAGES = {
    "toegevoegd": "Het aanbod is toegevoegd. De lessen noemen het vanaf de volgende mail.",
    "bewaard": "De wijziging is bewaard.",
    "verwijderd": "Het aanbod is verwijderd. De lessen noemen het niet meer.",
}
UNREACHABLE = (
    "Het lokaal aanbod kan nu even niet worden opgehaald of bewaard. Probeer het over een paar minuten opnieuw."
)


class Enrolment:
    """Enrolment's local-offers API with the viewer's token: every answer it cannot be
    expected to give (unreachable, a 5xx, an expired session) becomes a Dutch page."""

    def __init__(self, *, enrolment_base_url: str, org_id: UUID, token: str, timeout_s: float) -> None:
        self.base = f"{enrolment_base_url.rstrip('/')}/api/organisations/{org_id}/local-offers"
        self.timeout = timeout_s
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def of(cls, request: Request, viewer: Viewer) -> Enrolment:
        """With the viewer's token and the same timeout as the login (both wait on enrolment)."""
        settings = _services(request).settings
        return cls(
            enrolment_base_url=settings.enrolment_base_url,
            org_id=viewer.claims.org_id,
            token=viewer.token,
            timeout_s=settings.login_timeout_s,
        )

    async def call(self, method: str, path: str = "", body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.request(method, self.base + path, json=body, headers=self.headers)
        except httpx.HTTPError as error:
            log.warning("enrolment unreachable for local offers", error=type(error).__name__)
            raise PageError(503, UNREACHABLE) from None
        if answer.status_code == 401:
            raise LoginRequired(next_path=PAGE, expired=True)
        if answer.status_code == 403:
            raise PageError(403, "Het lokaal aanbod beheert de beheerder van uw organisatie.")
        if answer.status_code == 404:
            raise PageError(404, "Dit aanbod bestaat niet (meer). Misschien heeft iemand anders het net verwijderd.")
        if answer.status_code >= 500:
            log.warning("enrolment failed on local offers", status=answer.status_code)
            raise PageError(503, UNREACHABLE)
        return answer

    async def offers(self) -> list[dict[str, Any]]:
        answer = await self.call("GET")
        found = answer.json() if answer.status_code == 200 else None
        if not isinstance(found, list):
            log.warning("enrolment answered local offers unexpectedly", status=answer.status_code)
            raise PageError(503, UNREACHABLE)
        return found


def field_errors(answer: httpx.Response) -> dict[str, str]:
    """Enrolment's 422 as a Dutch reason per form field (a reason without a known field: on 'form')."""
    try:
        fields = answer.json()["error"]["fields"]
    except (ValueError, KeyError, TypeError):
        fields = []
    errors: dict[str, str] = {}
    for problem in fields if isinstance(fields, list) else []:
        name = str(problem.get("field", "")).split(".")[0] if isinstance(problem, dict) else ""
        errors[name if name in FIELD_PROBLEMS else "form"] = FIELD_PROBLEMS.get(name, "Kijk het formulier nog eens na.")
    return errors or {"form": "Kijk het formulier nog eens na."}


def form_values(form: FormData) -> dict[str, str]:
    return {name: str(form.get(name) or "") for name in FIELDS}


async def _page(
    request: Request,
    viewer: Viewer,
    offers: list[dict[str, Any]],
    *,
    editing: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with _session(request) as session:
        frame = await _frame(session, viewer, _services(request).moment())
    blank = {name: "" for name in FIELDS}
    shown = values or ({name: editing.get(name) or "" for name in FIELDS} if editing else blank)
    return render(
        request,
        "offers.html.j2",
        {
            **frame,
            "active": "organisatie",
            "offers": offers,
            "editing": editing,
            "values": shown,
            "errors": errors or {},
            "message": message,
            "kinds": KIND_LABELS,
        },
        status_code,
    )


@router.get(PAGE)
async def offers_page(request: Request, viewer: PageViewer, bericht: str | None = None) -> HTMLResponse:
    _admin(viewer)
    offers = await Enrolment.of(request, viewer).offers()
    return await _page(request, viewer, offers, message=MESSAGES.get(bericht or ""))


@router.get(PAGE + "/{offer_id}")
async def offer_page(request: Request, offer_id: UUID, viewer: PageViewer) -> HTMLResponse:
    _admin(viewer)
    offers = await Enrolment.of(request, viewer).offers()
    editing = next((o for o in offers if o.get("id") == str(offer_id)), None)
    if editing is None:
        raise PageError(404, "Dit aanbod bestaat niet (meer). Misschien heeft iemand anders het net verwijderd.")
    return await _page(request, viewer, offers, editing=editing)


async def _save(request: Request, viewer: Viewer, offer_id: UUID | None) -> Response:
    _admin(viewer)
    form = await request.form()
    _check_form(request, viewer, form)
    values = form_values(form)
    enrolment = Enrolment.of(request, viewer)
    if offer_id is None:
        answer = await enrolment.call("POST", body=values)
    else:
        answer = await enrolment.call("PUT", f"/{offer_id}", body=values)
    if answer.status_code in (200, 201):
        return RedirectResponse(f"{PAGE}?bericht={'toegevoegd' if offer_id is None else 'bewaard'}", status_code=303)
    if answer.status_code == 409:
        errors = {"form": "Er staan al 50 aanbiedingen op de lijst. Verwijder er eerst een."}
    elif answer.status_code == 422:
        errors = field_errors(answer)
    else:
        log.warning("enrolment answered a local offer unexpectedly", status=answer.status_code)
        raise PageError(503, UNREACHABLE)
    offers = await enrolment.offers()
    editing = None if offer_id is None else {"id": str(offer_id), **values}
    return await _page(request, viewer, offers, editing=editing, values=values, errors=errors, status_code=422)


@router.post(PAGE)
async def add_offer(request: Request, viewer: PageViewer) -> Response:
    return await _save(request, viewer, None)


@router.post(PAGE + "/{offer_id}")
async def change_offer(request: Request, offer_id: UUID, viewer: PageViewer) -> Response:
    return await _save(request, viewer, offer_id)


@router.post(PAGE + "/{offer_id}/verwijderen")
async def remove_offer(request: Request, offer_id: UUID, viewer: PageViewer) -> Response:
    _admin(viewer)
    _check_form(request, viewer, await request.form())
    answer = await Enrolment.of(request, viewer).call("DELETE", f"/{offer_id}")
    if answer.status_code != 204:
        log.warning("enrolment answered a removal unexpectedly", status=answer.status_code)
        raise PageError(503, UNREACHABLE)
    return RedirectResponse(f"{PAGE}?bericht=verwijderd", status_code=303)
