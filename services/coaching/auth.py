"""Who is asking: staff tokens from enrolment, as a bearer header (JSON API) or as the
login cookie (web pages), and the CSRF checks of the web forms.

A signature alone is not enough: a token older than the member's last logout, password
reset or deactivation (staff.access_changed, kept in staff_access) is refused.

A coach sees only their own participants, an organisation admin the whole organisation,
nobody anything of another organisation: every read goes through the viewer's Scope.
A partner (a signaller from outside, the role with the least rights) gets past only the
dependencies that say so (`SignallerApiViewer`, `SignallerPageViewer`): the intake's signal
form and their own status list; every other route answers them 403.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.coaching.storage import Scope
from services.coaching.tables import StaffAccessCopy
from shared.runtime import Runtime
from shared.staff_tokens import InvalidStaffTokenError, StaffAccess, StaffClaims, token_allowed, verify_staff_token

SESSION_COOKIE = "meer_coaching_session"
DEVICE_COOKIE = "meer_coaching_device"
LOGIN_CSRF_COOKIE = "meer_coaching_login"
CSRF_FIELD = "csrf_token"

bearer = HTTPBearer(auto_error=False, description="A staff token from enrolment's POST /api/auth/login.")


class StaffAuthNotConfigured(RuntimeError):
    """MEER_STAFF_TOKEN_PUBLIC_KEY_PATH is not set or unreadable: nobody can be let in."""


class StaffTokenVerifier:
    """Verifies staff tokens with enrolment's public key (read once, on first use)."""

    def __init__(self, public_key_path: Path | None) -> None:
        self.public_key_path = public_key_path
        self._public_key: bytes | None = None

    def verify(self, token: str) -> StaffClaims:
        if self._public_key is None:
            if self.public_key_path is None:
                raise StaffAuthNotConfigured("MEER_STAFF_TOKEN_PUBLIC_KEY_PATH is not set")
            try:
                self._public_key = self.public_key_path.read_bytes()
            except OSError as error:
                raise StaffAuthNotConfigured(f"cannot read the staff token key: {type(error).__name__}") from None
        claims = verify_staff_token(token, self._public_key)
        if claims.role == "coach" and claims.coach_id is None:
            raise InvalidStaffTokenError("a coach token without coach_id")
        return claims


@dataclass(frozen=True)
class Viewer:
    """A verified staff member and the token they came with."""

    claims: StaffClaims
    token: str

    @property
    def is_admin(self) -> bool:
        return self.claims.role == "org_admin"

    @property
    def is_partner(self) -> bool:
        return self.claims.role == "partner"

    @property
    def scope(self) -> Scope:
        if self.is_partner:  # a partner reads no participant: a route that lets one through is a bug
            raise PermissionError("a partner has no scope of participants")
        return Scope(org_id=self.claims.org_id, coach_id=None if self.is_admin else self.claims.coach_id)

    @property
    def csrf_token(self) -> str:
        return csrf_token_for(self.token)


def csrf_token_for(session_token: str) -> str:
    """The form token of a login session: only someone who holds the (HttpOnly) cookie can know it."""
    return hashlib.sha256(b"meer-coaching-csrf\0" + session_token.encode()).hexdigest()[:40]


def _verifier(request: Request) -> StaffTokenVerifier:
    verifier: StaffTokenVerifier = request.app.state.staff_tokens
    return verifier


async def still_allowed(request: Request, claims: StaffClaims) -> bool:
    """The member is not deactivated and the token is not older than their last revocation
    (one primary-key lookup in coaching's own copy)."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session() as session:
        known = await session.get(StaffAccessCopy, claims.staff_id)
    return token_allowed(claims, None if known is None else StaffAccess(known.token_version, known.active))


PARTNER_REFUSED = "A partner may only submit signals and follow their status."
PARTNER_REFUSED_DUTCH = (
    "Met uw account kunt u signalen doorgeven en zien hoe het ermee staat. Deze pagina is voor coaches."
)


class PartnerPageRefused(Exception):
    """A partner opened a page that is not theirs: the app shows the Dutch 403 page."""


async def signaller_api_viewer(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Viewer:
    """The JSON API's caller, from `Authorization: Bearer <staff token>`, partners included."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "A staff token is required.", headers=challenge)
    try:
        claims = _verifier(request).verify(credentials.credentials)
    except StaffAuthNotConfigured:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Staff login is not configured here.") from None
    except InvalidStaffTokenError:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "The staff token is not valid or has expired.", headers=challenge
        ) from None
    if not await still_allowed(request, claims):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "This session has ended (logged out, password reset or account deactivated).",
            headers=challenge,
        )
    return Viewer(claims=claims, token=credentials.credentials)


def staff_only(claims: StaffClaims) -> None:
    """A partner signaller's token opens none of the staff's routes (their scope would otherwise
    be the whole organisation): only the routes made for signallers accept it."""
    if claims.role == "partner":
        raise HTTPException(status.HTTP_403_FORBIDDEN, PARTNER_REFUSED)


async def api_viewer(viewer: Annotated[Viewer, Depends(signaller_api_viewer)]) -> Viewer:
    """The JSON API's caller, a coach or organisation admin (a partner: 403)."""
    staff_only(viewer.claims)
    return viewer


ApiViewer = Annotated[Viewer, Depends(api_viewer)]
SignallerApiViewer = Annotated[Viewer, Depends(signaller_api_viewer)]


class LoginRequired(Exception):
    """A page needs a login (again): the app sends the browser to the login page."""

    def __init__(self, *, next_path: str, expired: bool) -> None:
        super().__init__("login required")
        self.next_path = next_path
        self.expired = expired

    @property
    def location(self) -> str:
        reason = "&reden=verlopen" if self.expired else ""
        return f"/inloggen?next={quote(self.next_path, safe='/')}{reason}"


async def _cookie_viewer(request: Request) -> Viewer | bool | None:
    """The viewer from the login cookie; None without a cookie, False when it is no longer valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = _verifier(request).verify(token)
    except StaffAuthNotConfigured:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Inloggen is hier nog niet ingesteld.") from None
    except InvalidStaffTokenError:
        return False
    if not await still_allowed(request, claims):
        return False
    return Viewer(claims=claims, token=token)


async def signaller_page_viewer(request: Request) -> Viewer:
    """The viewer of a web page, partners included; without a valid login cookie, off to the login page."""
    found = await _cookie_viewer(request)
    if isinstance(found, Viewer):
        return found
    raise LoginRequired(next_path=request.url.path, expired=found is False)


async def page_viewer(viewer: Annotated[Viewer, Depends(signaller_page_viewer)]) -> Viewer:
    """The viewer of a coach's or admin's web page (a partner: the Dutch 403 page)."""
    if viewer.is_partner:
        raise PartnerPageRefused()
    return viewer


async def fragment_viewer(request: Request) -> Viewer:
    """The viewer of a piece of page fetched by script (live updates): a 401, no redirect."""
    found = await _cookie_viewer(request)
    if isinstance(found, Viewer):
        if found.is_partner:
            raise HTTPException(status.HTTP_403_FORBIDDEN, PARTNER_REFUSED_DUTCH)
        return found
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Log opnieuw in.")


PageViewer = Annotated[Viewer, Depends(page_viewer)]
SignallerPageViewer = Annotated[Viewer, Depends(signaller_page_viewer)]
FragmentViewer = Annotated[Viewer, Depends(fragment_viewer)]


def same_origin(request: Request) -> bool:
    """A form post from our own pages: Origin (or else Referer), when the browser sends one, is us."""
    ours = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin == ours
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == ours
    return True


def check_form(request: Request, viewer: Viewer, submitted: str | None) -> None:
    """Refuse a cross-site form post: the origin must be ours and the form token must match."""
    if not same_origin(request) or not submitted or not hmac.compare_digest(submitted, viewer.csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Dit formulier is verlopen. Laad de pagina opnieuw.")


def check_login_form(request: Request, submitted: str | None) -> None:
    """The login form: origin, and the token that the login page put in a cookie (double submit)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not same_origin(request) or not submitted or not expected or not hmac.compare_digest(submitted, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Dit formulier is verlopen. Laad de pagina opnieuw.")


def safe_next(path: str | None) -> str:
    """Only a path on this site after login (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/overzicht"
    return path
