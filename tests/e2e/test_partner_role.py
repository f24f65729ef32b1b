"""Partner signallers (issue 18) on the real stack: an organisation admin invites a partner
with their own organisation, the partner logs in through the normal login and gets a token
with role partner, and that token opens nothing in enrolment (every endpoint, from the
OpenAPI spec) nor coaching's staff pages, except their own login, logout and password."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from deploy.local.stack import KEYS_DIR
from shared.staff_tokens import verify_staff_token
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    create_organisation,
    db_count,
    events_on,
    eventually,
    mails_to,
    raw_mail,
    staff_login,
    unique_email,
)
from tests.e2e.test_enrolment_isolation import CASES, LICENSOR_ONLY, events_of, outbox_empty, request, snapshot

pytestmark = pytest.mark.stack

PARTNER_ORGANISATION = "Woonstichting De Kust"


async def partner_login(
    http: httpx.AsyncClient, org_id: str, admin_headers: dict[str, str], *, name: str = "Petra Signaal"
) -> dict[str, Any]:
    """An admin invites a partner; the partner sets a password with the mailed link and logs in."""
    return await staff_login(
        http, org_id, role="partner", name=name, partner_organisation=PARTNER_ORGANISATION, invited_by=admin_headers
    )


def plain_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


async def test_an_admin_invites_a_partner_who_logs_in_as_partner(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Signaaldorp")
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    partner = await partner_login(http, org_id, admin["headers"])
    assert (partner["role"], partner["partner_organisation"]) == ("partner", PARTNER_ORGANISATION)

    (mail,) = await mails_to(http, partner["email"])
    assert "zorgen over iemand die eenzaam is" in plain_body(await raw_mail(http, mail["id"]))

    claims = verify_staff_token(partner["token"], (KEYS_DIR / "staff-token.pub").read_bytes())
    assert (claims.role, str(claims.staff_id), str(claims.org_id), claims.coach_id) == (
        "partner",
        partner["id"],
        org_id,
        None,
    )
    me = await http.get(f"{ENROLMENT}/api/auth/me", headers=partner["headers"])
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["partner_organisation"], me.json()["coach_id"]) == (
        "partner",
        PARTNER_ORGANISATION,
        None,
    )

    # The admin sees the partner among the staff, also when filtering on the role.
    listed = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/staff", headers=admin["headers"])
    assert [(s["id"], s["partner_organisation"]) for s in listed.json()["items"] if s["role"] == "partner"] == [
        (partner["id"], PARTNER_ORGANISATION)
    ]
    only = await http.get(
        f"{ENROLMENT}/api/organisations/{org_id}/staff", params={"role": "partner"}, headers=admin["headers"]
    )
    assert [s["id"] for s in only.json()["items"]] == [partner["id"]]
    # A partner is no coach: not offered when enrolling.
    coaches = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/coaches", headers=admin["headers"])
    assert partner["id"] not in {c["id"] for c in coaches.json()["items"]}

    # staff.invited carries the role and the partner's organisation (no name, no address).
    invited = await eventually(
        lambda: events_on("meer.staff", key=org_id, event_type="staff.invited"), what="staff.invited"
    )
    (payload,) = [e["payload"] for e in invited if e["payload"]["staff_id"] == partner["id"]]
    assert (payload["role"], payload["partner_organisation"]) == ("partner", PARTNER_ORGANISATION)
    assert partner["email"] not in str(payload) and "Petra" not in str(payload)

    # Coaching's staff API refuses a partner token: its scope would be the whole organisation.
    for path in ("/api/me", "/api/participants"):
        refused = await http.get(f"{COACHING}{path}", headers=partner["headers"])
        assert refused.status_code == 403, (path, refused.status_code, refused.text)


@pytest.mark.parametrize(
    ("role", "partner_organisation", "reason"),
    [
        ("partner", None, "needs partner_organisation"),
        ("partner", "", "at least 1 character"),
        ("partner", "Woonstichting\nDe Kust", "one line"),
        ("partner", "Woonstichting\x00De Kust", "one line"),
        ("partner", "W" * 121, "at most 120"),
        ("coach", PARTNER_ORGANISATION, "Only a partner"),
        ("org_admin", PARTNER_ORGANISATION, "Only a partner"),
    ],
)
async def test_a_wrong_partner_invitation_names_the_field_and_writes_nothing(
    http: httpx.AsyncClient, role: str, partner_organisation: str | None, reason: str
) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    email = unique_email("fout")
    body: dict[str, Any] = {"name": "Petra Signaal", "email": email, "role": role}
    if partner_organisation is not None:
        body["partner_organisation"] = partner_organisation
    response = await http.post(f"{ENROLMENT}/api/organisations/{org_id}/staff", json=body, headers=LICENSOR)
    assert response.status_code == 422, response.text
    (field,) = response.json()["error"]["fields"]
    assert field["field"] == "partner_organisation" and reason in field["reason"], field
    assert await db_count("enrolment", "SELECT count(*) FROM staff WHERE org_id = $1", uuid.UUID(org_id)) == 0
    await eventually(outbox_empty, what="enrolment's outbox published")
    assert not await events_on("meer.staff", key=org_id)


# --- least rights: every endpoint ---------------------------------------------------------------

# What a partner may do in enrolment: only their own login, logout, password and account.
PARTNER_OWN = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/set-password"),
    ("GET", "/api/auth/me"),
}
# Without credentials for anyone: a partner's token adds nothing there.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/logos/{org_id}/{filename}")}


def routes_taking_credentials() -> set[tuple[str, str]]:
    """Every route of the enrolment app (documented or not) that looks at who is asking."""
    from fastapi.routing import APIRoute

    from services.enrolment.api import public_router, router
    from services.enrolment.api.common import principal
    from services.enrolment.export_api import router as export_router
    from services.enrolment.pages import router as pages_router

    def asks(route: APIRoute) -> bool:
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            if dependant.call is principal:
                return True
            pending += dependant.dependencies
        return False

    def walk(routes: list[Any], prefix: str) -> set[tuple[str, str]]:
        found = set()
        for route in routes:
            if isinstance(route, APIRoute):
                if asks(route):
                    found |= {(method, prefix + route.path.replace(":uuid", "")) for method in route.methods}
            elif hasattr(route, "original_router"):  # an included router (FastAPI keeps it as it was)
                found |= walk(route.original_router.routes, prefix + route.include_context.prefix)
        return found

    found = walk([*router.routes, *public_router.routes, *export_router.routes, *pages_router.routes], "")
    assert len(found) > 30, "the walk over the routers found the routes"
    return found


async def test_every_endpoint_is_judged_for_partners(http: httpx.AsyncClient) -> None:
    spec = (await http.get(f"{ENROLMENT}/openapi.json")).json()
    documented = {(method.upper(), path) for path, operations in spec["paths"].items() for method in operations}
    judged = {(m, p) for m, p, _ in CASES} | {(m, p) for m, p, _ in LICENSOR_ONLY} | PARTNER_OWN | PUBLIC
    assert documented == judged
    # A route that takes credentials but is left out of the spec would escape the test below.
    assert routes_taking_credentials() <= documented


async def test_a_partner_token_opens_nothing_of_its_own_organisation(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Geheimhouding")
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach", name="Coach Cornelis")
    partner = await partner_login(http, org_id, admin["headers"])
    secret_email = unique_email("geheim")
    participant = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{org_id}/participants",
            json={"first_name": "Wilhelmina", "email": secret_email, "phone": "0687654321", "coach_id": coach["id"]},
            headers=admin["headers"],
        )
    ).json()
    export = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant['id']}/exports", headers=admin["headers"]
        )
    ).json()["id"]
    offer = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{org_id}/local-offers",
            json={"kind": "walking_group", "name": "Wandelen met Wilhelmina"},
            headers=admin["headers"],
        )
    ).json()["id"]
    key = (await http.post(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=admin["headers"])).json()

    await eventually(outbox_empty, what="enrolment's outbox published")
    before = await snapshot(org_id)
    events_before = await events_of(org_id, participant["id"])
    secrets = (
        "Wilhelmina",
        secret_email,
        "+31687654321",
        "Coach Cornelis",
        coach["email"],
        admin["email"],
        key["api_key"],
    )

    ids = {
        "org": org_id,
        "participant": participant["id"],
        "staff": coach["id"],
        "coach": coach["id"],
        "export": export,
        "offer": offer,
    }
    failures = []
    for case in [*CASES, *LICENSOR_ONLY]:
        response = await http.request(**request(case, **ids), headers=partner["headers"])
        leaked = [s for s in secrets if s in response.text]
        reason = response.json().get("error", {}).get("message", "") if response.status_code == 403 else ""
        if response.status_code != 403 or not reason or leaked:
            failures.append(f"{case[0]} {case[1]} -> {response.status_code} {reason!r} {leaked}")
    # Aimed at the partner's own staff id, the staff routes refuse too (no self-service but the password).
    for action in ("invitation", "deactivate", "reactivate"):
        own = await http.post(
            f"{ENROLMENT}/api/organisations/{org_id}/staff/{partner['id']}/{action}", headers=partner["headers"]
        )
        if own.status_code != 403:
            failures.append(f"own {action} -> {own.status_code}")
    assert not failures, "\n".join(failures)

    await eventually(outbox_empty, what="enrolment's outbox published")
    assert await snapshot(org_id) == before, "a partner's requests changed nothing"
    assert await events_of(org_id, participant["id"]) == events_before

    # What a partner may do: see their own account and log out (which ends the token).
    me = await http.get(f"{ENROLMENT}/api/auth/me", headers=partner["headers"])
    assert me.status_code == 200 and not [s for s in secrets if s in me.text]
    assert (await http.post(f"{ENROLMENT}/api/auth/logout", headers=partner["headers"])).status_code == 204
    assert (await http.get(f"{ENROLMENT}/api/auth/me", headers=partner["headers"])).status_code == 401
    # The coach and the admin keep what they have.
    assert (
        await http.get(
            f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant['id']}", headers=coach["headers"]
        )
    ).status_code == 200
    assert (
        await http.get(f"{ENROLMENT}/api/organisations/{org_id}/staff", headers=admin["headers"])
    ).status_code == 200


async def test_a_partner_is_never_a_coach_and_is_offboarded_like_staff(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach")
    partner = await partner_login(http, org_id, admin["headers"])
    participants = f"{ENROLMENT}/api/organisations/{org_id}/participants"

    # Enrolments without a coach go to the coach, never the partner; naming the partner is refused.
    for _ in range(3):
        enrolled = await http.post(
            participants, json={"first_name": "Ans", "email": unique_email()}, headers=admin["headers"]
        )
        assert enrolled.status_code == 201 and enrolled.json()["coach_id"] == coach["id"], enrolled.text
    named = await http.post(
        participants,
        json={"first_name": "Ans", "email": unique_email(), "coach_id": partner["id"]},
        headers=admin["headers"],
    )
    assert named.status_code == 422 and named.json()["error"]["fields"][0]["field"] == "coach_id"
    moved = await http.put(
        f"{participants}/{enrolled.json()['id']}/coach", json={"coach_id": partner["id"]}, headers=admin["headers"]
    )
    assert moved.status_code == 422, moved.text

    # Deactivated: the token stops, nobody needs another coach; reactivated; removed: name and address go.
    staff = f"{ENROLMENT}/api/organisations/{org_id}/staff/{partner['id']}"
    assert (await http.post(f"{staff}/deactivate", headers=admin["headers"])).status_code == 200
    assert (await http.get(f"{ENROLMENT}/api/auth/me", headers=partner["headers"])).status_code == 401
    to_reassign = await http.get(
        f"{ENROLMENT}/api/organisations/{org_id}/participants-to-reassign", headers=admin["headers"]
    )
    assert to_reassign.json()["total"] == 0
    assert (await http.post(f"{staff}/reactivate", headers=admin["headers"])).status_code == 200
    removed = await http.delete(staff, headers=admin["headers"])
    assert removed.status_code == 200 and (removed.json()["name"], removed.json()["email"]) == (None, None)
    assert removed.json()["partner_organisation"] == PARTNER_ORGANISATION

    async def partner_removed() -> list[dict[str, Any]]:
        changes = await events_on("meer.staff", key=org_id, event_type="staff.access_changed")
        mine = [e["payload"] for e in changes if e["payload"]["staff_id"] == partner["id"]]
        return mine if any(p["removed"] for p in mine) else []

    mine = await eventually(partner_removed, what="staff.access_changed of the partner's removal")
    assert {(p["role"], p["partner_organisation"]) for p in mine} == {("partner", PARTNER_ORGANISATION)}
