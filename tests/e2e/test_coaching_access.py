"""Who may see what, on every coaching endpoint, on the real stack: a coach only their own
participants, an organisation admin their whole organisation, nobody anything of another
organisation; no token, a forged or an expired one gets nothing; forms need their CSRF token.

The list of endpoints is checked against the service's own routers, so a new endpoint
without a line here fails the test.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.local.stack import KEYS_DIR
from services.coaching import api, web
from services.coaching.auth import SESSION_COOKIE, csrf_token_for
from shared.events import (
    Branding,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    MailOpened,
    MailSent,
    OrganisationLicensed,
    ParticipantEnrolled,
)
from shared.staff_tokens import StaffClaims, issue_staff_token
from tests.e2e.conftest import COACHING, db_fetch, eventually, mint_staff_token, publish

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class World:
    """Two organisations: A with coaches A1 (owns participant P) and A2 (owns R); B with coach B1 (owns Q)."""

    org_a: UUID
    org_b: UUID
    coach_a1: UUID
    coach_a2: UUID
    coach_b1: UUID
    p: UUID
    q: UUID
    r: UUID
    tokens: dict[str, str | None]


def org_events(org: UUID, name: str, coaches: dict[UUID, str]) -> list[Envelope]:
    today = date.today()
    licensed = OrganisationLicensed(
        name=name,
        branding=Branding(display_name=name),
        licence_valid_from=today - timedelta(days=1),
        licence_valid_until=today + timedelta(days=300),
        max_active_participants=10,
        variants=("standard",),
    )
    return [Envelope.wrap(licensed, org_id=org)] + [
        envelope
        for coach, coach_name in coaches.items()
        for envelope in (
            Envelope.wrap(CoachAdded(coach_id=coach), org_id=org),
            Envelope.wrap(ContactDetailsSet(person_id=coach, kind="staff", name=coach_name), org_id=org),
        )
    ]


def participant_events(org: UUID, coach: UUID, participant: UUID, name: str) -> list[Envelope]:
    now = datetime.now(UTC)
    contact = ContactDetailsSet(
        person_id=participant,
        kind="participant",
        name=name,
        email=f"{participant.hex[:8]}@example.org",
        phone="06 5555 0000",
    )
    enrolled = ParticipantEnrolled(
        coach_id=coach,
        start_date=(now + timedelta(days=3)).date(),  # the real mailer sends nothing while the test runs
        send_time=time(23, 59),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    delivery = uuid4()
    sent = MailSent(
        delivery_id=delivery,
        day=1,
        lesson_title="Les 1",
        pack="meer-contact",
        pack_version="v1",
        message_id=f"<{delivery}@x>",
        sent_at=now - timedelta(hours=2),
    )
    return [
        Envelope.wrap(contact, org_id=org, participant_id=participant, occurred_at=now - timedelta(days=1)),
        Envelope.wrap(enrolled, org_id=org, participant_id=participant, occurred_at=now - timedelta(days=1)),
        Envelope.wrap(sent, org_id=org, participant_id=participant, occurred_at=now - timedelta(hours=2)),
    ]


def forged_token(org: UUID, coach: UUID) -> str:
    """A well-formed token for the right people, signed with a key that is not enrolment's."""
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return issue_staff_token(
        StaffClaims(staff_id=uuid4(), role="coach", org_id=org, coach_id=coach), key, ttl=timedelta(hours=1)
    )


def expired_token(org: UUID, coach: UUID) -> str:
    return issue_staff_token(
        StaffClaims(staff_id=uuid4(), role="coach", org_id=org, coach_id=coach),
        (KEYS_DIR / "staff-token.pem").read_bytes(),
        ttl=timedelta(minutes=5),
        now=datetime.now(UTC) - timedelta(hours=1),
    )


@pytest.fixture(scope="module")
async def world(stack: None) -> World:
    org_a, org_b, a1, a2, b1, p, q, r = (uuid4() for _ in range(8))
    events = org_events(org_a, "Organisatie A", {a1: "Coach A1", a2: "Coach A2"})
    events += org_events(org_b, "Organisatie B", {b1: "Coach B1"})
    events += participant_events(org_a, a1, p, "Pieter") + participant_events(org_a, a2, r, "Roos")
    events += participant_events(org_b, b1, q, "Quirijn")
    await publish(events)
    tokens: dict[str, str | None] = {
        "none": None,
        "forged": forged_token(org_a, a1),
        "expired": expired_token(org_a, a1),
        "coach_a1": mint_staff_token("coach", org_a, a1),
        "coach_a2": mint_staff_token("coach", org_a, a2),
        "admin_a": mint_staff_token("org_admin", org_a),
        "admin_b": mint_staff_token("org_admin", org_b),
        "coach_b1": mint_staff_token("coach", org_b, b1),
    }
    found = World(org_a, org_b, a1, a2, b1, p, q, r, tokens)
    async with httpx.AsyncClient(timeout=10) as http:
        headers = {"Authorization": f"Bearer {tokens['coach_a1']}"}

        async def p_is_there() -> bool:
            response = await http.get(f"{COACHING}/api/participants/{p}", headers=headers)
            return response.status_code == 200

        await eventually(p_is_there, what="participant P on coach A1's dashboard")
        plan = {"own_question": "Meer mensen zien", "causes": ["moved_house"]}
        response = await http.post(f"{COACHING}/api/participants/{p}/plan", json=plan, headers=headers)
        assert response.status_code == 201, response.text
        for token, who in ((tokens["coach_a2"], r), (tokens["coach_b1"], q)):

            async def visible(token: str | None = token, who: UUID = who) -> bool:
                response = await http.get(
                    f"{COACHING}/api/participants/{who}", headers={"Authorization": f"Bearer {token}"}
                )
                return response.status_code == 200

            await eventually(visible, what="R and Q on their coaches' dashboards")
    return found


# --- the endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One route, how to call it about participant P, and what kind of access it has."""

    method: str
    path: str
    kind: str  # api | page | fragment | stream-api | stream-page | public
    scope: str  # participant | list | admin | self | any
    body: dict[str, Any] | None = None

    def url(self, world: World) -> str:
        kind = "folder" if self.path.startswith("/materialen") else "flyer"
        return COACHING + self.path.format(participant_id=world.p, coach_id=world.coach_a1, number=1, kind=kind)


CALL = {
    "called_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    "reached": True,
    "duration_minutes": 10,
    "planned_call": 1,
    "lessons_discussed": [1],
    "notes": "Geheim gesprek",
}
CALL_FORM = {
    "called_date": date.today().isoformat(),
    "called_time": "00:01",
    "reached": "ja",
    "duration": "5",
    "planned_call": "1",
    "notes": "x",
}
ENDPOINTS = [
    Endpoint("GET", "/api/me", "api", "self"),
    Endpoint("GET", "/api/participants", "api", "list"),
    Endpoint("GET", "/api/coaches/{coach_id}/participants", "api", "participant"),
    Endpoint("GET", "/api/participants/{participant_id}", "api", "participant"),
    Endpoint("GET", "/api/participants/{participant_id}/calls", "api", "participant"),
    Endpoint("POST", "/api/participants/{participant_id}/calls", "api", "participant", CALL),
    Endpoint(
        "PUT",
        "/api/participants/{participant_id}/planned-calls/{number}",
        "api",
        "participant",
        {"due_date": date.today().isoformat()},
    ),
    Endpoint("GET", "/api/participants/{participant_id}/plan", "api", "participant"),
    Endpoint("POST", "/api/participants/{participant_id}/plan", "api", "participant", {"goals": "Iets nieuws"}),
    Endpoint("GET", "/api/participants/{participant_id}/plan.pdf", "api", "participant"),
    Endpoint("GET", "/api/participants/{participant_id}/call-guide/{number}", "api", "participant"),
    Endpoint("GET", "/api/call-guide", "api", "any"),
    Endpoint("GET", "/api/organisation", "api", "admin"),
    Endpoint("GET", "/api/organisation/recruitment-kit/{kind}.pdf", "api", "admin"),
    Endpoint("GET", "/api/live", "stream-api", "list"),
    Endpoint("GET", "/", "public", "any"),
    Endpoint("GET", "/inloggen", "public", "any"),
    Endpoint("POST", "/inloggen", "public", "any"),
    Endpoint("POST", "/uitloggen", "page", "self", {}),
    Endpoint("GET", "/overzicht", "page", "list"),
    Endpoint("GET", "/overzicht/rij/{participant_id}", "fragment", "participant"),
    Endpoint("GET", "/live", "stream-page", "list"),
    Endpoint("GET", "/deelnemers/{participant_id}", "page", "participant"),
    Endpoint("GET", "/deelnemers/{participant_id}/kerncijfers", "fragment", "participant"),
    Endpoint("POST", "/deelnemers/{participant_id}/gesprekken", "page", "participant", CALL_FORM),
    Endpoint(
        "POST",
        "/deelnemers/{participant_id}/geplande-gesprekken/{number}",
        "page",
        "participant",
        {"due_date": date.today().isoformat()},
    ),
    Endpoint("POST", "/deelnemers/{participant_id}/plan", "page", "participant", {"steps": "Een stap"}),
    Endpoint("GET", "/deelnemers/{participant_id}/plan.pdf", "page", "participant"),
    Endpoint("GET", "/organisatie", "page", "admin"),
    Endpoint("GET", "/materialen", "page", "any"),
    Endpoint("GET", "/materialen/{kind}.pdf", "page", "admin"),
]


# Where an endpoint sends someone who may use it. A 303 is also the answer "log in first"
# (to /inloggen?next=…), so getting through means this exact Location, or the page itself.
REDIRECTS_WHEN_ALLOWED = {
    ("GET", "/"): "/overzicht",
    ("POST", "/uitloggen"): "/inloggen?reden=uitgelogd",
    ("POST", "/deelnemers/{participant_id}/gesprekken"): "/deelnemers/{participant_id}?bericht=gesprek#gesprekken",
    (
        "POST",
        "/deelnemers/{participant_id}/geplande-gesprekken/{number}",
    ): "/deelnemers/{participant_id}?bericht=verplaatst#gesprekken",
    ("POST", "/deelnemers/{participant_id}/plan"): "/deelnemers/{participant_id}?bericht=plan#plan",
}


def redirect_when_allowed(endpoint: Endpoint, world: World) -> str | None:
    target = REDIRECTS_WHEN_ALLOWED.get((endpoint.method, endpoint.path))
    return None if target is None else target.format(participant_id=world.p)


def test_every_coaching_endpoint_is_in_the_access_table() -> None:
    served = {
        (method, route.path)
        for router in (api.router, web.router)
        for route in router.routes
        for method in route.methods
    }  # type: ignore[attr-defined]
    assert served == {(e.method, e.path) for e in ENDPOINTS}


async def call(http: httpx.AsyncClient, endpoint: Endpoint, world: World, viewer: str) -> httpx.Response:
    token = world.tokens[viewer]
    url = endpoint.url(world)
    headers: dict[str, str] = {}
    if endpoint.kind in ("api", "stream-api"):
        if token:
            headers["Authorization"] = f"Bearer {token}"
    elif token:
        headers["Cookie"] = f"{SESSION_COOKIE}={token}"
    http.cookies.clear()
    if endpoint.kind.startswith("stream"):
        async with http.stream("GET", url, headers=headers) as response:
            return response
    if endpoint.method == "GET":
        return await http.get(url, headers=headers)
    if endpoint.kind == "api":
        return await http.request(endpoint.method, url, json=endpoint.body, headers=headers)
    form = {**(endpoint.body or {}), "csrf_token": csrf_token_for(token) if token else ""}
    return await http.request(endpoint.method, url, data=form, headers=headers)


@pytest.fixture
async def client(stack: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
        yield http


WITHOUT_A_VALID_LOGIN = ("none", "forged", "expired")


@pytest.mark.parametrize("viewer", WITHOUT_A_VALID_LOGIN)
async def test_without_a_valid_login_every_endpoint_refuses(
    client: httpx.AsyncClient, world: World, viewer: str
) -> None:
    for endpoint in ENDPOINTS:
        if endpoint.kind == "public":
            continue
        response = await call(client, endpoint, world, viewer)
        where = f"{endpoint.method} {endpoint.path} as {viewer}"
        if endpoint.kind in ("api", "stream-api", "fragment", "stream-page"):
            assert response.status_code == 401, where
        else:
            assert response.status_code == 303, where
            location = response.headers["location"]
            assert location.startswith("/inloggen?next="), where
            assert ("reden=verlopen" in location) == (viewer != "none"), where


OUTSIDERS = ("coach_a2", "admin_b", "coach_b1")


@pytest.mark.parametrize("viewer", OUTSIDERS)
async def test_another_coach_or_organisation_gets_nothing_of_participant_p(
    client: httpx.AsyncClient, world: World, viewer: str
) -> None:
    calls_before = await db_fetch("coaching", "SELECT count(*) FROM call_log WHERE participant_id = $1", world.p)
    for endpoint in ENDPOINTS:
        if endpoint.kind == "public":
            continue
        response = await call(client, endpoint, world, viewer)
        where = f"{endpoint.method} {endpoint.path} as {viewer}"
        body = "" if endpoint.kind.startswith("stream") else response.text
        assert str(world.p) not in body and "Pieter" not in body, where
        if endpoint.scope == "participant":
            if endpoint.path == "/api/coaches/{coach_id}/participants":
                assert response.status_code == (403 if viewer.startswith("coach") else 404), where
            else:
                assert response.status_code == 404, where
        elif endpoint.scope == "admin":
            expected = 200 if viewer == "admin_b" else 403  # admin B gets organisation B's, never A's
            assert response.status_code == expected, where
        elif endpoint.method == "POST":
            assert response.status_code == 303, where  # logging out is always allowed
            assert response.headers["location"] == redirect_when_allowed(endpoint, world), where
        else:
            assert response.status_code == 200, where
    assert (
        await db_fetch("coaching", "SELECT count(*) FROM call_log WHERE participant_id = $1", world.p) == calls_before
    )
    overview = await client.get(
        f"{COACHING}/api/organisation", headers={"Authorization": f"Bearer {world.tokens['admin_b']}"}
    )
    assert [c["coach_name"] for c in overview.json()["coaches"]] == ["Coach B1"]


async def test_the_own_coach_and_the_admin_of_the_organisation_get_through(
    client: httpx.AsyncClient, world: World
) -> None:
    for endpoint in ENDPOINTS:
        for viewer in ("coach_a1", "admin_a"):
            response = await call(client, endpoint, world, viewer)
            where = f"{endpoint.method} {endpoint.path} as {viewer}"
            if endpoint.path == "/inloggen" and endpoint.method == "POST":
                assert response.status_code == 403, where  # no login form token: refused, see the CSRF test
            elif endpoint.scope == "admin" and viewer == "coach_a1":
                assert response.status_code == 403, where
            elif endpoint.method in ("POST", "PUT") and viewer == "admin_a" and endpoint.scope == "participant":
                assert response.status_code == 403, where  # an admin without a coach id does not log calls or plans
            elif (location := redirect_when_allowed(endpoint, world)) is not None:
                assert response.status_code == 303, f"{where}: {response.status_code} {response.text[:200]}"
                assert response.headers["location"] == location, where
            else:
                assert response.status_code in (200, 201), f"{where}: {response.status_code} {response.text[:200]}"


async def test_forms_without_their_csrf_token_or_from_another_site_are_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    token = world.tokens["coach_a1"]
    assert token
    url = f"{COACHING}/deelnemers/{world.p}/plan"
    before = await db_fetch("coaching", "SELECT count(*) FROM plan_version WHERE participant_id = $1", world.p)
    cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    refused = [
        await client.post(url, data={"steps": "zonder token"}, headers=cookie),
        await client.post(url, data={"steps": "fout token", "csrf_token": csrf_token_for("other")}, headers=cookie),
        await client.post(
            url,
            data={"steps": "andere site", "csrf_token": csrf_token_for(token)},
            headers={**cookie, "Origin": "https://evil.example"},
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert "Dit formulier is verlopen" in refused[0].text
    assert await db_fetch("coaching", "SELECT count(*) FROM plan_version WHERE participant_id = $1", world.p) == before
    login = await client.post(
        f"{COACHING}/inloggen", data={"email": "a@b.example", "password": "x", "login_token": "t"}
    )
    assert login.status_code == 403


class EventStream:
    """One open Server-Sent Events stream, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self) -> tuple[str, str]:
        event = "message"
        async for line in self.lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                return event, line.split(":", 1)[1].strip()
        raise AssertionError("the stream ended")

    async def next_participant(self) -> str:
        while True:
            event, data = await self.next()
            if event == "participant":
                return str(json.loads(data)["participant_id"])


def opened(org: UUID, participant: UUID) -> Envelope:
    now = datetime.now(UTC)
    payload = MailOpened(delivery_id=uuid4(), day=1, opened_at=now, first_open=True, likely_automated=False)
    return Envelope.wrap(payload, org_id=org, participant_id=participant, occurred_at=now)


async def test_live_updates_reach_only_those_who_may_see_the_participant(world: World) -> None:
    """P's open reaches coach A1 and admin A. Coach A2 and admin B first hear of their own participants'
    opens, published after P's open was pushed to every stream at once: so P's open never reached them."""
    viewers = ("coach_a1", "admin_a", "coach_a2", "admin_b")
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        streams = []
        for viewer in viewers:
            headers = {"Authorization": f"Bearer {world.tokens[viewer]}"}
            response = await stack.enter_async_context(http.stream("GET", f"{COACHING}/api/live", headers=headers))
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = EventStream(response)
            assert (await stream.next())[0] == "ready"  # subscribed: nothing published from now on is missed
            streams.append(stream)
        await publish([opened(world.org_a, world.p)])
        assert await streams[0].next_participant() == str(world.p)
        assert await streams[1].next_participant() == str(world.p)
        await publish([opened(world.org_a, world.r), opened(world.org_b, world.q)])
        assert await streams[2].next_participant() == str(world.r)
        assert await streams[3].next_participant() == str(world.q)
