"""Staff login (throttled), logout, setting a password with an invitation link, and who is logged in."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from services.enrolment import domain, login_limits, security, storage
from services.enrolment.api.common import Caller, SessionDep, SettingsDep, errors, unauthorised
from services.enrolment.schemas import LoginRequest, Me, SetPasswordRequest, TokenResponse
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases import staff_accounts
from shared.db import utcnow
from shared.errors import Refusal
from shared.runtime import api_error

router = APIRouter(prefix="/api")


DEVICE_COOKIE = "meer_device"


def login_policy(settings: EnrolmentSettings) -> login_limits.LoginPolicy:
    """The login limits of the settings."""
    return login_limits.LoginPolicy(
        failures_per_source=settings.login_failures_per_source,
        failures_per_subnet=settings.login_failures_per_subnet,
        failures_per_account_source=settings.login_failures_before_lock,
        failures_per_account=settings.login_failures_per_account,
        failures_per_device=settings.login_failures_before_lock,
        longest_delay=timedelta(minutes=settings.login_lock_minutes),
    )


def client_address(request: Request) -> str:
    """The client's address as uvicorn determined it: X-Forwarded-For counts only from the
    trusted proxies (uvicorn's forwarded_allow_ips; coaching's login form forwards its client's)."""
    return request.client.host if request.client else "unknown"


@router.post("/auth/login", tags=["auth"], responses=errors(401, 429, 503))
async def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Log in with e-mail address and password; returns a short-lived staff access token.

    Failed logins are limited per client address, per network, per account and address,
    and per account; a browser that logged in before (device token or cookie) is held only
    to its own limit, so others' failures cannot lock it out."""
    now = utcnow()
    keys: security.TokenKeys = request.app.state.token_keys
    outcome = await staff_accounts.login(
        session=session,
        email=body.email,
        password=body.password,
        source=client_address(request),
        device_token=body.device_token or request.cookies.get(DEVICE_COOKIE),
        keys=keys,
        now=now,
        policy=login_policy(settings),
    )
    await session.commit()
    if outcome.claims is None:
        error = api_error(outcome.status, outcome.message)
        if outcome.retry_at is not None:
            error.headers = {"Retry-After": str(max(1, int((outcome.retry_at - now).total_seconds()) + 1))}
        raise error
    try:
        token = keys.issue(outcome.claims, timedelta(seconds=settings.staff_token_ttl_s))
        device_ttl = timedelta(days=settings.device_cookie_days)
        device_token = keys.issue_device(outcome.email_key, device_ttl)
    except security.KeysMissingError:
        raise api_error(503, "Staff login is not configured: the signing key is missing.") from None
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=int(device_ttl.total_seconds()),
        path="/api/auth",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return TokenResponse(access_token=token, expires_in=settings.staff_token_ttl_s, device_token=device_token)


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=errors(401, 403))
async def logout(caller: Caller, session: SessionDep) -> Response:
    """End every session of the logged-in staff member: their tokens stop working here and,
    through staff.access_changed, in coaching and the mailer."""
    if caller.staff_id is None:
        raise Refusal("forbidden", "Only a staff token can be logged out.")
    staff = await storage.get_staff(session=session, staff_id=caller.staff_id, for_update=True)
    if staff is None:
        raise unauthorised("This account no longer exists.")
    staff_accounts.revoke_sessions(session=session, staff=staff)
    await session.commit()
    return Response(status_code=204)


@router.post("/auth/set-password", status_code=204, tags=["auth"], responses=errors(404, 410, 422))
async def set_password(body: SetPasswordRequest, session: SessionDep) -> Response:
    """Set the password with the one-time token from an invitation link."""
    await staff_accounts.set_password(session=session, token=body.token, password=body.password, now=utcnow())
    await session.commit()
    return Response(status_code=204)


@router.get("/auth/me", tags=["auth"], responses=errors(401, 403))
async def me(caller: Caller, session: SessionDep) -> Me:
    """The logged-in staff member (a partner too: it is only their own account)."""
    if caller.staff_id is None:
        raise Refusal("forbidden", "Only a staff token belongs to a person.")
    staff = await storage.get_staff(session=session, staff_id=caller.staff_id)
    if staff is None:
        raise api_error(401, "This account no longer exists.")
    return Me(
        staff_id=staff.id,
        org_id=staff.org_id,
        role=domain.staff_role(staff.role),
        coach_id=staff.id if staff.role == "coach" else None,
        partner_organisation=staff.partner_organisation,
        name=staff.name or "",
        email=staff.email or "",
    )
