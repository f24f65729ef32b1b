"""Tracking's public endpoints, hit from mail clients: the pixel, signed links, the
assignment report page and the unsubscribe page (RFC 8058 one-click and a confirmation).

The pixel is a pure ASGI endpoint that runs before the framework's middleware and
routing, because every open of every mail goes through it. The other routes are
ordinary FastAPI routes; they answer Dutch pages, never a 500.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking import questionnaire, storage, use_cases
from services.tracking.domain import (
    NOTE_MAX_LENGTH,
    PAGE_CONFIRM_FIELD,
    REPORT_SCALE,
    JudgeRules,
    ReportRefused,
    Verdict,
    judge_hit,
    mail_facts,
    page_branding,
    pixel_token,
    read_hit_facts,
    read_report_form,
    request_signal_bits,
    safe_redirect_url,
    unsubscribe_via,
)
from services.tracking.questionnaire import FormRefused, FormStep, read_step
from services.tracking.recorder import HitLog, HitNotKept
from shared.db import utcnow
from shared.logging import get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS
from shared.runtime import Runtime
from shared.templating import template_environment
from shared.tracking_tokens import InvalidTokenError, QuestionnaireToken, TokenKind, TokenSigner, TrackingToken

log = get_logger(__name__)
router = APIRouter()

TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}
# A page reached by a capability link must not hand that link to the next site, nor be cached.
PAGE_HEADERS = {**NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}

HITS = Counter("meer_tracking_hits_total", "Tracking hits by kind and outcome.", ["kind", "outcome"])
INVALID_TOKENS = Counter(
    "meer_tracking_invalid_tokens_total",
    "Hits with a forged, tampered, expired-key, malformed or wrong-kind token.",
    ["kind", "reason"],
)
LIKELY_AUTOMATED = Counter(
    "meer_tracking_likely_automated_total", "Recorded hits judged likely made by a machine.", ["kind"]
)

_templates = template_environment(Path(__file__).parent / "templates")


@dataclass(frozen=True)
class TrackingContext:
    """What the routes share: adapters and rules, set once by the composition root."""

    runtime: Runtime
    signer: TokenSigner
    hit_log: HitLog
    rules: JudgeRules
    burst_window: timedelta


def _context(request: Request) -> TrackingContext:
    context: TrackingContext = request.app.state.tracking
    return context


# --- the pixel -------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PIXEL_ROUTE = "/o/{token}.gif"
_METHODS = ("GET", "HEAD")
_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(TRANSPARENT_GIF)).encode()),
    *[(name.lower().encode(), value.encode()) for name, value in NO_CACHE.items()],
]


class PixelEndpoint:
    """GET /o/<token>.gif: always the same transparent GIF; a valid token's hit is made durable
    (the hit log, or the journal while PostgreSQL is away) before the GIF goes out."""

    _OUTCOMES = ("logged", "journaled", "invalid", "head", "lost")

    def __init__(self, signer: TokenSigner, hit_log: HitLog, *, service: str) -> None:
        self.signer = signer
        self.hit_log = hit_log
        # Every open of every mail passes here: metric children are looked up once, not per hit.
        self._hits = {outcome: HITS.labels("open", outcome) for outcome in self._OUTCOMES}
        self._requests = {method: HTTP_REQUESTS.labels(service, _PIXEL_ROUTE, method, "200") for method in _METHODS}
        self._latency = HTTP_LATENCY.labels(service, _PIXEL_ROUTE)

    async def answer(self, scope: Scope, send: Send, token: str) -> None:
        """Answer a pixel request whose path held this token (see pixel_token)."""
        started = time.perf_counter()
        outcome = await self._record(scope, token)
        self._hits[outcome].inc()
        await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_HEADERS})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else TRANSPARENT_GIF})
        self._requests[scope["method"]].inc()
        self._latency.observe(time.perf_counter() - started)

    async def _record(self, scope: Scope, token: str) -> str:
        try:
            claims = self.signer.verify_kind(token, "open")
        except InvalidTokenError as error:
            INVALID_TOKENS.labels("open", error.reason).inc()
            return "invalid"
        if scope["method"] == "HEAD":
            return "head"  # a HEAD fetches no image: nobody saw the mail
        # Only the signals of the request are kept; its user agent is forgotten here.
        bits = request_signal_bits(scope["headers"])
        try:
            return await self.hit_log.submit((claims, bits, utcnow()))
        except HitNotKept:
            return "lost"  # counted (and logged once per group by the hit log), never a line per hit


class PixelFastPath:
    """The service's outermost ASGI app: pixel requests go straight to the pixel endpoint,
    everything else (other routes, lifespan) to the FastAPI app, so a pixel hit pays for
    no framework routing, middleware or telemetry."""

    def __init__(self, app: ASGIApp, pixel: PixelEndpoint) -> None:
        self.app = app
        self.pixel = pixel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _METHODS:
            token = pixel_token(scope["path"])
            if token is not None:
                await self.pixel.answer(scope, send, token)
                return
        await self.app(scope, receive, send)


# --- links and pages ---------------------------------------------------------------------------

Responses = dict[int | str, dict[str, Any]]
_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
_TEXT: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
_JSON_ERROR: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_PAGE: Responses = {200: {"description": "A Dutch page in the organisation's branding.", "content": _HTML}}
_PAGE_ERRORS: Responses = {
    404: {"description": "A Dutch page: the link is not valid (forged, tampered or unknown).", "content": _HTML},
    503: {"description": "A Dutch page: try again later (the database is away).", "content": _HTML},
}
_FORM: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        },
    }
}


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**values), status_code=status, headers=PAGE_HEADERS)


def _not_found() -> HTMLResponse:
    return _page("not_found.html.j2", 404, brand=page_branding(None))


def _unavailable(brand: dict[str, str | None]) -> HTMLResponse:
    return _page("unavailable.html.j2", 503, brand=brand)


def _verify(context: TrackingContext, token: str, kind: TokenKind, metric_kind: str) -> TrackingToken | None:
    try:
        return context.signer.verify_kind(token, kind)
    except InvalidTokenError as error:
        INVALID_TOKENS.labels(kind, error.reason).inc()
        HITS.labels(metric_kind, "invalid").inc()
        return None


async def _judge_link(
    context: TrackingContext, request: Request, claims: TrackingToken, target: str, now: datetime
) -> tuple[Verdict, dict[str, Any] | None]:
    """Judge a link hit in its own short read, and fetch the branding for the page."""
    async with context.runtime.database.session() as session:
        known = (
            await storage.mails_known(
                session=session, delivery_ids=[claims.delivery_id], since=now - context.burst_window
            )
        ).get(claims.delivery_id)
        branding = await storage.get_branding(session=session, org_id=claims.org_id)
    facts = mail_facts(
        hit_at=now,
        sent_at=known.sent_at if known else None,
        token_sent_at=claims.sent_at,
        recent_links=known.recent_links if known else (),
        this_link=target,
    )
    verdict = judge_hit(read_hit_facts(request.method, request.headers.raw), facts, context.rules, kind="link")
    return verdict, branding


async def _record_link_hit(
    context: TrackingContext, claims: TrackingToken, target: str, verdict: Verdict, now: datetime
) -> None:
    async with context.runtime.database.session() as session:
        await use_cases.record_link_hit(session, token=claims, target=target, verdict=verdict, now=now)
        await session.commit()
    if verdict.likely_automated:
        LIKELY_AUTOMATED.labels(claims.kind).inc()


_LINK_RESPONSES: Responses = {
    302: {
        "description": "To the URL the mailer signed into the token.",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    404: _PAGE_ERRORS[404],
}
_LINK_SUMMARY = "Signed link: records a click and redirects"


@router.get(
    "/c/{token}",
    tags=["tracking"],
    summary=_LINK_SUMMARY,
    status_code=302,
    response_class=Response,
    responses=_LINK_RESPONSES,
)
@router.head(
    "/c/{token}",
    tags=["tracking"],
    summary=_LINK_SUMMARY,
    status_code=302,
    response_class=Response,
    responses=_LINK_RESPONSES,
)
async def follow_link(token: str, request: Request) -> Response:
    """Redirect to the URL the mailer signed into the token, and nowhere else."""
    context = _context(request)
    claims = _verify(context, token, "click", "click")
    if claims is None:
        return _not_found()
    url = safe_redirect_url(claims.url)
    if url is None:
        HITS.labels("click", "refused_url").inc()
        return _not_found()
    now = utcnow()
    try:
        verdict, _ = await _judge_link(context, request, claims, url, now)
        await _record_link_hit(context, claims, url, verdict, now)
        HITS.labels("click", "recorded").inc()
    except (SQLAlchemyError, OSError) as error:
        # The participant still gets where the link goes; only the count misses one click.
        log.warning("click not recorded", delivery_id=str(claims.delivery_id), error=type(error).__name__)
        HITS.labels("click", "error").inc()
    return RedirectResponse(url, status_code=302, headers=PAGE_HEADERS)


def _report_values(claims: TrackingToken, brand: dict[str, str | None], **values: Any) -> dict[str, Any]:
    return {"brand": brand, "day": claims.day, "scale": REPORT_SCALE, "note_max": NOTE_MAX_LENGTH, **values}


@router.get(
    "/r/{token}",
    tags=["pages"],
    summary="Assignment report page",
    response_class=HTMLResponse,
    responses={**_PAGE, **_PAGE_ERRORS},
)
@router.head(
    "/r/{token}",
    tags=["pages"],
    summary="Assignment report page",
    response_class=HTMLResponse,
    responses={**_PAGE, **_PAGE_ERRORS},
)
async def report_page(token: str, request: Request) -> Response:
    """The branded page where the participant says how the day's assignment went."""
    context = _context(request)
    claims = _verify(context, token, "report", "report_page")
    if claims is None:
        return _not_found()
    now = utcnow()
    try:
        verdict, branding = await _judge_link(context, request, claims, "report", now)
        await _record_link_hit(context, claims, "report", verdict, now)
        async with context.runtime.database.session() as session:
            previous = await storage.get_report(session=session, participant_id=claims.participant_id, day=claims.day)
    except (SQLAlchemyError, OSError) as error:
        log.warning("report page unavailable", error=type(error).__name__)
        HITS.labels("report_page", "error").inc()
        return _unavailable(page_branding(None))
    HITS.labels("report_page", "shown").inc()
    brand = page_branding(branding)
    return _page(
        "report.html.j2",
        **_report_values(
            claims,
            brand,
            previous=previous,
            score=previous.score if previous else None,
            note=previous.note if previous else "",
            error=None,
        ),
    )


@router.post(
    "/r/{token}",
    tags=["pages"],
    summary="Record an assignment report",
    response_class=HTMLResponse,
    openapi_extra=_FORM,
    responses={
        **_PAGE,
        400: {"description": "The form data could not be read.", "content": _JSON_ERROR},
        422: {"description": "A Dutch page: the form again, with what to correct.", "content": _HTML},
        **_PAGE_ERRORS,
    },
)
async def submit_report(token: str, request: Request) -> Response:
    """Store the answer (a second answer for the same day replaces the first) and publish it."""
    context = _context(request)
    claims = _verify(context, token, "report", "report")
    if claims is None:
        return _not_found()
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    now = utcnow()
    try:
        async with context.runtime.database.session() as session:
            brand = page_branding(await storage.get_branding(session=session, org_id=claims.org_id))
            try:
                answer = read_report_form(form)
            except ReportRefused as refused:
                HITS.labels("report", "refused").inc()
                score = form.get("score", "")
                return _page(
                    "report.html.j2",
                    422,
                    **_report_values(
                        claims,
                        brand,
                        previous=None,
                        score=int(score) if score.isdigit() else None,
                        note=form.get("note", ""),
                        error=str(refused),
                    ),
                )
            saved = await use_cases.submit_report(session, token=claims, answer=answer, now=now)
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.warning("report not recorded", error=type(error).__name__)
        HITS.labels("report", "error").inc()
        return _unavailable(page_branding(None))
    HITS.labels("report", "recorded" if saved.changed else "unchanged").inc()
    return _page(
        "report_thanks.html.j2", brand=brand, day=claims.day, answer=answer, label=REPORT_SCALE[answer.score],
        updated=saved.previous is not None,
    )  # fmt: skip


@router.get(
    "/u/{token}",
    tags=["pages"],
    summary="Unsubscribe: asks to confirm",
    response_class=HTMLResponse,
    responses={**_PAGE, **_PAGE_ERRORS},
)
@router.head(
    "/u/{token}",
    tags=["pages"],
    summary="Unsubscribe: asks to confirm",
    response_class=HTMLResponse,
    responses={**_PAGE, **_PAGE_ERRORS},
)
async def unsubscribe_page(token: str, request: Request) -> Response:
    """Ask before stopping anything: a link scanner's GET must never unsubscribe anyone."""
    context = _context(request)
    claims = _verify(context, token, "unsubscribe", "unsubscribe_page")
    if claims is None:
        return _not_found()
    now = utcnow()
    try:
        verdict, branding = await _judge_link(context, request, claims, "unsubscribe", now)
        await _record_link_hit(context, claims, "unsubscribe", verdict, now)
        async with context.runtime.database.session() as session:
            already = await storage.unsubscribe_requested(session=session, participant_id=claims.participant_id)
    except (SQLAlchemyError, OSError) as error:
        log.warning("unsubscribe page unavailable", error=type(error).__name__)
        HITS.labels("unsubscribe_page", "error").inc()
        return _unavailable(page_branding(None))
    HITS.labels("unsubscribe_page", "shown").inc()
    return _page("unsubscribe.html.j2", brand=page_branding(branding), already=already, field=PAGE_CONFIRM_FIELD)


@router.post(
    "/u/{token}",
    tags=["pages"],
    summary="Unsubscribe (RFC 8058 one-click, or the page's button)",
    response_class=HTMLResponse,
    openapi_extra=_FORM,
    responses={
        200: {"description": "A Dutch page, or plain text for a one-click request.", "content": {**_HTML, **_TEXT}},
        400: {
            "description": "Neither 'List-Unsubscribe=One-Click' nor the page's confirmation (plain text), "
            "or form data that could not be read (the error shape).",
            "content": {**_TEXT, **_JSON_ERROR},
        },
        **_PAGE_ERRORS,
    },
)
async def unsubscribe(token: str, request: Request) -> Response:
    """Record the request and publish it once; enrolment stops the participant and confirms by mail."""
    context = _context(request)
    claims = _verify(context, token, "unsubscribe", "unsubscribe")
    if claims is None:
        return _not_found()
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    via = unsubscribe_via(form)
    if via is None:
        HITS.labels("unsubscribe", "refused").inc()
        return PlainTextResponse(
            "Dit verzoek mist 'List-Unsubscribe=One-Click' of de bevestiging van de afmeldpagina.",
            status_code=400,
            headers=NO_CACHE,
        )
    now = utcnow()
    try:
        async with context.runtime.database.session() as session:
            brand = page_branding(await storage.get_branding(session=session, org_id=claims.org_id))
            first = await use_cases.request_unsubscribe(session, token=claims, via=via, now=now)
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.warning("unsubscribe not recorded", error=type(error).__name__)
        HITS.labels("unsubscribe", "error").inc()
        # 503 tells a mail client's one-click POST to try again later.
        return _unavailable(page_branding(None))
    HITS.labels("unsubscribe", "recorded" if first else "repeat").inc()
    if via == "one_click":
        # RFC 8058: answer the mail client with 200 and no redirect.
        return PlainTextResponse("Je bent afgemeld. Je krijgt geen mails meer.", headers=NO_CACHE)
    return _page("unsubscribed.html.j2", brand=brand)


# --- the loneliness questionnaire ------------------------------------------------------------

MOMENT_WORDS = {"intake": "bij de start", "end": "aan het eind van de training", "follow_up": "drie maanden later"}


def _verify_questionnaire(context: TrackingContext, token: str, metric_kind: str) -> QuestionnaireToken | None:
    try:
        return context.signer.verify_questionnaire(token)
    except InvalidTokenError as error:
        INVALID_TOKENS.labels("questionnaire", error.reason).inc()
        HITS.labels(metric_kind, "invalid").inc()
        return None


def _questionnaire_page(
    claims: QuestionnaireToken, brand: dict[str, str | None], step: FormStep, *, status: int = 200, **values: Any
) -> HTMLResponse:
    return _page(
        "questionnaire.html.j2",
        status,
        brand=brand,
        moment=claims.moment,
        moment_words=MOMENT_WORDS[claims.moment],
        items=questionnaire.ITEMS,
        item_order=questionnaire.ITEM_ORDER,
        choices=questionnaire.ANSWERS,
        count=questionnaire.QUESTION_COUNT,
        answers=step.answers,
        show=step.show,
        error=step.error,
        **{"previous": False, "refused": None, **values},
    )


async def _closed_page(
    session: AsyncSession, claims: QuestionnaireToken, brand: dict[str, str | None], now: datetime, metric_kind: str
) -> HTMLResponse | None:
    """The page that says this link takes no answer (erased, or an intake after day 1), else None."""
    if await storage.questionnaire_closed(session=session, participant_id=claims.participant_id):
        HITS.labels(metric_kind, "closed").inc()
        return _page("questionnaire_closed.html.j2", 410, brand=brand)
    if claims.moment == "intake":
        sent_at = await storage.next_lesson_sent_at(session=session, participant_id=claims.participant_id)
        if questionnaire.intake_closed(claims.moment, now, sent_at):
            HITS.labels(metric_kind, "late").inc()
            return _page("questionnaire_late.html.j2", 410, brand=brand)
    return None


_QUESTIONNAIRE_CLOSED: Responses = {
    410: {
        "description": "A Dutch page: the participant's data was erased, or the intake is over (the day-2 "
        "lesson was sent); nothing is stored.",
        "content": _HTML,
    },
}


@router.api_route(
    "/q/{token}",
    methods=["GET", "HEAD"],
    tags=["pages"],
    summary="Loneliness questionnaire",
    response_class=HTMLResponse,
    responses={**_PAGE, **_QUESTIONNAIRE_CLOSED, **_PAGE_ERRORS},
)
async def questionnaire_page(token: str, request: Request) -> Response:
    """The branded introduction to the six questions (voluntary, under two minutes)."""
    context = _context(request)
    claims = _verify_questionnaire(context, token, "questionnaire_page")
    if claims is None:
        return _not_found()
    try:
        async with context.runtime.database.session() as session:
            brand = page_branding(await storage.get_branding(session=session, org_id=claims.org_id))
            closed = await _closed_page(session, claims, brand, utcnow(), "questionnaire_page")
            if closed is not None:
                return closed
            previous = await storage.get_questionnaire_answer(
                session=session, participant_id=claims.participant_id, moment=claims.moment
            )
    except (SQLAlchemyError, OSError) as error:
        log.warning("questionnaire page unavailable", error=type(error).__name__)
        HITS.labels("questionnaire_page", "error").inc()
        return _unavailable(page_branding(None))
    HITS.labels("questionnaire_page", "shown").inc()
    empty = FormStep(dict.fromkeys(questionnaire.ITEM_ORDER), 0)
    return _questionnaire_page(claims, brand, empty, previous=previous is not None)


@router.post(
    "/q/{token}",
    tags=["pages"],
    summary="One step of the loneliness questionnaire",
    response_class=HTMLResponse,
    openapi_extra=_FORM,
    responses={
        **_PAGE,
        400: {
            "description": "A Dutch page: the form data could not be read; the first question again.",
            "content": _HTML,
        },
        409: {"description": "A Dutch page: this form is for another moment; nothing changed.", "content": _HTML},
        422: {"description": "A Dutch page: the question again, with what to correct.", "content": _HTML},
        **_QUESTIONNAIRE_CLOSED,
        **_PAGE_ERRORS,
    },
)
async def questionnaire_step(token: str, request: Request) -> Response:
    """Show the next question; after the sixth, store the answers (replacing earlier ones for
    this moment) and publish questionnaire.answered."""
    context = _context(request)
    claims = _verify_questionnaire(context, token, "questionnaire")
    if claims is None:
        return _not_found()
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    now = utcnow()
    try:
        async with context.runtime.database.session() as session:
            brand = page_branding(await storage.get_branding(session=session, org_id=claims.org_id))
            closed = await _closed_page(session, claims, brand, now, "questionnaire")
            if closed is not None:
                return closed
            if form.get("moment") != claims.moment:
                HITS.labels("questionnaire", "wrong_moment").inc()
                return _page(
                    "questionnaire_refused.html.j2", 409, brand=brand, moment_words=MOMENT_WORDS[claims.moment]
                )
            try:
                step = read_step(form)
            except FormRefused as refused:
                HITS.labels("questionnaire", "refused").inc()
                empty = FormStep(dict.fromkeys(questionnaire.ITEM_ORDER), 0)
                return _questionnaire_page(claims, brand, empty, status=400, refused=str(refused))
            if not step.done:
                return _questionnaire_page(claims, brand, step, status=422 if step.error else 200)
            replaced = await use_cases.submit_questionnaire(session, token=claims, answers=step.answers, now=now)
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.warning("questionnaire not recorded", error=type(error).__name__)
        HITS.labels("questionnaire", "error").inc()
        return _unavailable(page_branding(None))
    HITS.labels("questionnaire", "replaced" if replaced else "recorded").inc()
    answered = sum(answer is not None for answer in step.answers.values())
    return _page("questionnaire_thanks.html.j2", brand=brand, replaced=replaced, answered=answered)
