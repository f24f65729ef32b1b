"""Enrolment's public Dutch pages: the branded sign-up form with double opt-in, its
confirmation link, and the set-password page of staff invitations. Server-rendered;
every failure is a clear Dutch page with a 4xx status, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, signup_limits, storage
from services.enrolment.api.common import SessionDep, SettingsDep
from services.enrolment.domain import ParticipantFields
from services.enrolment.tables import Organisation
from services.enrolment.use_cases import organisations, signups, staff_accounts
from shared.branding import DEFAULT_BRAND_COLOUR, PLATFORM_NAME, readable_text_colour
from shared.db import utcnow
from shared.errors import Refusal
from shared.templating import template_environment

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(env=template_environment(Path(__file__).parent / "templates"))
SEND_TIMES = [f"{hour:02d}:00" for hour in range(7, 22)]
NEUTRAL_BRAND = {
    "display_name": PLATFORM_NAME,
    "brand_colour": DEFAULT_BRAND_COLOUR,
    "text_colour": readable_text_colour(DEFAULT_BRAND_COLOUR),
    "logo_url": None,
    "contact_person": None,
    "contact_phone": None,
    "contact_email": None,
    "address": None,
}
DUTCH_FIELD_ERRORS = {
    "first_name": "Vul je voornaam in.",
    "email": "Vul een geldig e-mailadres in, bijvoorbeeld naam@voorbeeld.nl.",
    "phone": "Dit telefoonnummer klopt niet. Vul een Nederlands nummer in, zoals 06 12345678, of laat het veld leeg.",
    "send_time": "Kies een tijd uit de lijst.",
    "consent": "Zet een vinkje als je toestemming geeft. Zonder toestemming kunnen we je niet aanmelden.",
}


def consent_text(display_name: str) -> str:
    """The consent the participant gives on the sign-up page (B1 Dutch)."""
    return (
        f"Ik geef {display_name} toestemming om mijn voornaam, e-mailadres en telefoonnummer te gebruiken "
        "voor de training Meer contact. Ik krijg 60 dagen lang één e-mail per dag, en mijn coach mag mij bellen. "
        "Mijn coach ziet of ik de e-mails open en hoe de opdrachten gaan. Ik kan altijd stoppen met de link "
        "onderaan elke e-mail. Als ik dat vraag, worden mijn gegevens gewist."
    )


def brand_of(organisation: Organisation | None, base_url: str) -> dict[str, Any]:
    """The template values for an organisation's look, or the neutral look."""
    if organisation is None:
        return NEUTRAL_BRAND
    branding = organisations.branding_of(organisation, base_url).model_dump()
    return {
        **branding,
        "contact_person": organisation.contact_person,
        "text_colour": readable_text_colour(organisation.brand_colour),
    }


def page(request: Request, template: str, brand: dict[str, Any], status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the brand, never cached."""
    return templates.TemplateResponse(
        request, template, {"brand": brand, **values}, status_code=status_code, headers={"Cache-Control": "no-store"}
    )


def message(
    request: Request,
    brand: dict[str, Any],
    heading: str,
    *paragraphs: str,
    status_code: int = 200,
    form_action: str | None = None,
    button: str = "",
) -> HTMLResponse:
    """A page with a heading, paragraphs and optionally one button."""
    return page(
        request,
        "message.html.j2",
        brand,
        status_code,
        heading=heading,
        paragraphs=paragraphs,
        form_action=form_action,
        button=button,
    )


async def _organisation(session: AsyncSession, org_id: str) -> Organisation | None:
    """The organisation of a sign-up address: its short slug, or its id (the old links)."""
    try:
        parsed = UUID(org_id)
    except ValueError:
        if len(org_id) > domain.SLUG_MAX or not domain.SLUG_PATTERN.match(org_id):
            return None
        return await storage.organisation_by_slug(session=session, slug=org_id)
    return await storage.get_organisation(session=session, org_id=parsed)


def _address(organisation: Organisation) -> str:
    """The path of the sign-up page as the organisation prints it."""
    return f"/aanmelden/{organisation.slug or organisation.id}"


def _closed(request: Request, brand: dict[str, Any], status_code: int) -> HTMLResponse:
    return message(
        request,
        brand,
        "Aanmelden kan op dit moment niet",
        f"{brand['display_name']} kan op dit moment geen nieuwe deelnemers aanmelden. Dat ligt niet aan jou.",
        "Neem contact op met de organisatie. Zij vertellen je wanneer aanmelden weer kan.",
        status_code=status_code,
    )


def _not_found(request: Request) -> HTMLResponse:
    return message(
        request,
        NEUTRAL_BRAND,
        "Deze pagina bestaat niet",
        "Controleer het adres. Heb je het van een organisatie gekregen? Vraag dan om het goede adres.",
        status_code=404,
    )


@router.get("/aanmelden/{org_id}", response_class=HTMLResponse)
async def signup_form(org_id: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The organisation's public, branded sign-up form."""
    organisation = await _organisation(session, org_id)
    if organisation is None:
        return _not_found(request)
    brand = brand_of(organisation, settings.enrolment_base_url)
    use = await organisations.licence_use(session=session, organisation=organisation, now=utcnow())
    if use.available == 0:
        return _closed(request, brand, 409)
    return page(
        request,
        "signup.html.j2",
        brand,
        action=_address(organisation),
        values={"first_name": "", "email": "", "phone": "", "send_time": "08:00", "consent": False},
        errors={},
        send_times=SEND_TIMES,
        consent_text=consent_text(organisation.display_name),
    )


@router.post("/aanmelden/{org_id}", response_class=HTMLResponse)
async def signup(
    org_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    first_name: str = Form(""),
    email: str = Form(""),
    phone: str = Form(""),
    send_time: str = Form("08:00"),
    consent: str = Form(""),
    website: str = Form(""),
) -> Response:
    """A sign-up waits for the confirmation link; nothing starts before that."""
    organisation = await _organisation(session, org_id)
    if organisation is None:
        return _not_found(request)
    brand = brand_of(organisation, settings.enrolment_base_url)
    check_mail = RedirectResponse(f"{_address(organisation)}/check-je-mail", status_code=303)
    if website:
        # Only robots fill in the hidden field; they get the same answer and nothing is sent.
        return check_mail
    values = {
        "first_name": first_name,
        "email": email,
        "phone": phone,
        "send_time": send_time,
        "consent": bool(consent),
    }
    errors: dict[str, str] = {}
    fields: ParticipantFields | None = None
    try:
        if send_time not in SEND_TIMES:
            raise ValueError("send_time")
        fields = ParticipantFields(
            first_name=first_name,
            email=email,
            phone=phone or None,
            send_time=domain.parse_clock_time(send_time),
        )
    except ValidationError as error:
        for problem in domain.problems_from_validation(error):
            errors[problem.field] = DUTCH_FIELD_ERRORS.get(problem.field, "Dit veld klopt niet.")
    except ValueError:
        errors["send_time"] = DUTCH_FIELD_ERRORS["send_time"]
    if consent != "ja":
        errors["consent"] = DUTCH_FIELD_ERRORS["consent"]
    if errors or fields is None:
        return page(
            request,
            "signup.html.j2",
            brand,
            422,
            action=_address(organisation),
            values=values,
            errors=errors,
            send_times=SEND_TIMES,
            consent_text=consent_text(organisation.display_name),
        )
    now = utcnow()
    try:
        source = signup_limits.source_of(request.client.host if request.client else None)
        await signups.count_signup(session=session, kind="source", value=source, settings=settings, now=now)
        organisation = await storage.get_organisation(session=session, org_id=organisation.id, for_update=True)
        assert organisation is not None
        await signups.sign_up(session=session, organisation=organisation, fields=fields, settings=settings, now=now)
    except Refusal as refused:
        return _closed(request, brand, refused.http_status)
    except signups.SignupLimited as limited:
        await session.commit()  # the count itself stays, so that trying again does not help
        return _too_many(request, brand, limited)
    await session.commit()
    return check_mail


def _too_many(request: Request, brand: dict[str, Any], limited: signups.SignupLimited) -> HTMLResponse:
    """Over a sign-up limit: a clear page, nothing stored and no mail sent."""
    if limited.kind == "source":
        paragraphs = (
            "Vanaf deze internetverbinding zijn net veel aanmeldingen gedaan. Daarom kan aanmelden hier even niet.",
            "Probeer het over een uur nog eens. Er is nu geen e-mail verstuurd.",
        )
    else:
        paragraphs = (
            "Voor dit e-mailadres zijn vandaag al een paar aanmeldingen gedaan. "
            "Kijk in je mail, ook bij de ongewenste e-mail (spam). Daar staat een link om je aanmelding te bevestigen.",
            "Geen e-mail gevonden? Probeer het morgen nog eens. Er is nu geen nieuwe e-mail verstuurd.",
        )
    response = message(
        request,
        brand,
        "Even geduld",
        *paragraphs,
        f"Lukt het niet? Neem dan contact op met {brand['display_name']}.",
        status_code=429,
    )
    response.headers["Retry-After"] = str(limited.retry_after_s)
    return response


@router.get("/aanmelden/{org_id}/check-je-mail", response_class=HTMLResponse)
async def check_your_mail(org_id: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """After signing up: look for the confirmation mail."""
    organisation = await _organisation(session, org_id)
    if organisation is None:
        return _not_found(request)
    return message(
        request,
        brand_of(organisation, settings.enrolment_base_url),
        "Kijk in je mail",
        "Dank je wel voor je aanmelding! We hebben je een e-mail gestuurd.",
        "Klik op de link in die e-mail om je aanmelding te bevestigen. Pas daarna begint de training.",
        "Geen e-mail gekregen? Kijk ook even bij de ongewenste e-mail (spam). "
        f"De link werkt {lifetime(settings.confirmation_ttl_hours)}.",
    )


def lifetime(hours: int) -> str:
    """How long a link works, in words (3 dagen, 1 dag, 12 uur)."""
    if hours % 24:
        return f"{hours} uur"
    days = hours // 24
    return "1 dag" if days == 1 else f"{days} dagen"


def _link_problem(
    request: Request, brand: dict[str, Any], outcome: signups.ConfirmOutcome, ttl_hours: int
) -> HTMLResponse:
    if outcome == "used":
        return message(
            request,
            brand,
            "Deze link is al gebruikt",
            "Je aanmelding is al bevestigd. Je hoeft niets meer te doen.",
            "De e-mails van de training komen vanzelf. Vragen? Neem contact op met de organisatie.",
            status_code=410,
        )
    if outcome == "expired":
        return message(
            request,
            brand,
            "Deze link werkt niet meer",
            f"De link in de e-mail werkte {lifetime(ttl_hours)}. Die tijd is voorbij.",
            "Wil je toch meedoen? Meld je dan opnieuw aan. Je krijgt dan een nieuwe e-mail.",
            status_code=410,
        )
    if outcome == "already_enrolled":
        return message(
            request,
            brand,
            "Je bent al aangemeld",
            "Met dit e-mailadres doe je al mee aan de training. Je hoeft niets meer te doen.",
            status_code=409,
        )
    if outcome == "licence":
        return _closed(request, brand, 409)
    return message(
        request,
        NEUTRAL_BRAND,
        "Deze link klopt niet",
        "We kunnen deze link niet vinden. Misschien is hij niet helemaal goed gekopieerd.",
        "Klik nog eens op de link in de e-mail, of meld je opnieuw aan.",
        status_code=404,
    )


async def _brand_of_participant(session: AsyncSession, org_id: UUID, base_url: str) -> dict[str, Any]:
    return brand_of(await storage.get_organisation(session=session, org_id=org_id), base_url)


@router.get("/bevestigen/{token}", response_class=HTMLResponse)
async def confirm_page(token: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The link from the mail shows a button: mail scanners that open links confirm nothing."""
    participant, outcome = await signups.pending_sign_up(session=session, token=token, now=utcnow())
    if participant is None or outcome != "confirmed":
        brand = NEUTRAL_BRAND
        if participant is not None:
            brand = await _brand_of_participant(session, participant.org_id, settings.enrolment_base_url)
        return _link_problem(request, brand, outcome, settings.confirmation_ttl_hours)
    brand = await _brand_of_participant(session, participant.org_id, settings.enrolment_base_url)
    return message(
        request,
        brand,
        "Bevestig je aanmelding",
        # No name here: it was typed by whoever filled in the form, maybe not the owner of the mailbox.
        "Fijn dat je mee wilt doen met Meer contact.",
        "Klik op de knop hieronder. Dan is je aanmelding klaar en begint de training morgen.",
        form_action=f"/bevestigen/{token}",
        button="Ja, ik doe mee",
    )


@router.post("/bevestigen/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Confirm the sign-up: only now is the participant enrolled (participant.enrolled)."""
    participant, outcome = await signups.confirm_sign_up(session=session, token=token, now=utcnow())
    brand = NEUTRAL_BRAND
    if participant is not None:
        brand = await _brand_of_participant(session, participant.org_id, settings.enrolment_base_url)
    if participant is None or outcome != "confirmed":
        return _link_problem(request, brand, outcome, settings.confirmation_ttl_hours)
    await session.commit()
    return message(
        request,
        brand,
        f"Welkom, {participant.first_name}!",
        "Je aanmelding is bevestigd. Wat fijn dat je meedoet.",
        f"Morgen krijg je de eerste e-mail, om {participant.send_time.strftime('%H:%M')} uur. "
        "Neem er rustig de tijd voor. Het lezen duurt nooit langer dan tien minuten.",
        f"Binnenkort belt je coach van {brand['display_name']} je om kennis te maken.",
    )


@router.get("/set-password/{token}", response_class=HTMLResponse)
async def set_password_form(token: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The set-password form of an invitation link."""
    try:
        _, staff = await staff_accounts.check_invitation(session=session, token=token, now=utcnow())
    except Refusal as refused:
        return _invitation_problem(request, refused)
    brand = await _brand_of_participant(session, staff.org_id, settings.enrolment_base_url)
    return page(
        request,
        "set_password.html.j2",
        brand,
        action=f"/set-password/{token}",
        name=staff.name,
        email=staff.email,
        error=None,
        min_length=domain.MIN_PASSWORD_LENGTH,
    )


@router.post("/set-password/{token}", response_class=HTMLResponse)
async def set_password(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    password: str = Form(""),
    password_again: str = Form(""),
) -> Response:
    """Set the password with an invitation link (the link then stops working)."""
    try:
        _, staff = await staff_accounts.check_invitation(session=session, token=token, now=utcnow())
    except Refusal as refused:
        return _invitation_problem(request, refused)
    brand = await _brand_of_participant(session, staff.org_id, settings.enrolment_base_url)
    error = None
    if password != password_again:
        error = "De twee wachtwoorden zijn niet hetzelfde. Probeer het nog een keer."
    else:
        try:
            await staff_accounts.set_password(session=session, token=token, password=password, now=utcnow())
        except Refusal:
            error = f"Kies een wachtwoord van minstens {domain.MIN_PASSWORD_LENGTH} tekens."
    if error is not None:
        return page(
            request,
            "set_password.html.j2",
            brand,
            422,
            action=f"/set-password/{token}",
            name=staff.name,
            email=staff.email,
            error=error,
            min_length=domain.MIN_PASSWORD_LENGTH,
        )
    await session.commit()
    return message(
        request,
        brand,
        "Je wachtwoord is opgeslagen",
        f"Je kunt nu inloggen met {staff.email} en je nieuwe wachtwoord.",
    )


def _invitation_problem(request: Request, refused: Refusal) -> HTMLResponse:
    if refused.kind == "gone" and "used" in refused.message:
        return message(
            request,
            NEUTRAL_BRAND,
            "Deze link is al gebruikt",
            "Met deze link is al een wachtwoord gekozen. Je kunt inloggen met je e-mailadres en dat wachtwoord.",
            "Wachtwoord vergeten? Vraag de beheerder van je organisatie om een nieuwe uitnodiging.",
            status_code=410,
        )
    if refused.kind == "gone":
        return message(
            request,
            NEUTRAL_BRAND,
            "Deze link werkt niet meer",
            "De link werkte maar een paar dagen. Die tijd is voorbij.",
            "Vraag de beheerder van je organisatie om een nieuwe uitnodiging.",
            status_code=410,
        )
    return message(
        request,
        NEUTRAL_BRAND,
        "Deze link klopt niet",
        "We kunnen deze link niet vinden. Misschien is hij niet helemaal goed gekopieerd.",
        status_code=404,
    )
