"""Offboarding staff on the real stack: deactivation, removal, logout and password reset
end every session in every service that accepts staff tokens (enrolment at once; coaching
and the mailer as soon as staff.access_changed reached them), and a deactivated coach's
participants wait for the admin to give them another coach."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    MAILER,
    STAFF_PASSWORD,
    client_address,
    contact_of,
    create_organisation,
    db_fetch,
    events_on,
    eventually,
    mailed_link,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack
NEW_PASSWORD = "een heel ander wachtwoord"


async def statuses(http: httpx.AsyncClient, org_id: str, token: str) -> dict[str, int]:
    """What each service answers to this token on a route it guards."""
    bearer = {"Authorization": f"Bearer {token}"}
    return {
        "enrolment": (
            await http.get(f"{ENROLMENT}/api/organisations/{org_id}/participants", headers=bearer)
        ).status_code,
        "coaching": (await http.get(f"{COACHING}/api/participants", headers=bearer)).status_code,
        "coaching page": (
            await http.get(f"{COACHING}/overzicht", headers={"Cookie": f"meer_coaching_session={token}"})
        ).status_code,
        "mailer": (await http.get(f"{MAILER}/api/organisations/{org_id}/preview", headers=bearer)).status_code,
    }


ALL_IN = {"enrolment": 200, "coaching": 200, "coaching page": 200, "mailer": 200}
ALL_OUT = {"enrolment": 401, "coaching": 401, "coaching page": 303, "mailer": 401}


async def refused_everywhere(http: httpx.AsyncClient, org_id: str, token: str) -> bool:
    return await statuses(http, org_id, token) == ALL_OUT


async def accepted_everywhere(http: httpx.AsyncClient, org_id: str, token: str) -> bool:
    # The mailer answers 404 for an organisation whose organisation.licensed it has not seen yet.
    return await statuses(http, org_id, token) == ALL_IN


async def login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": email, "password": password}, headers=client_address()
    )


async def enrol(http: httpx.AsyncClient, org_id: str, coach_id: str) -> dict[str, Any]:
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Ans", "email": unique_email(), "coach_id": coach_id},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def access_events(org_id: str, staff_id: str) -> list[dict[str, Any]]:
    events = await events_on("meer.staff", key=org_id, event_type="staff.access_changed")
    return [e for e in events if e["payload"]["staff_id"] == staff_id]


async def test_a_deactivated_coach_is_refused_everywhere_and_their_participants_wait_for_another_coach(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach", name="Coach Vertrekt")
    other = await staff_login(http, org_id, role="coach", name="Coach Blijft")
    participant = await enrol(http, org_id, coach["id"])
    for _ in range(2):  # the coach who stays is the busier one
        await enrol(http, org_id, other["id"])
    await eventually(lambda: accepted_everywhere(http, org_id, coach["token"]), what="the coach's token accepted")

    staff_url = f"{ENROLMENT}/api/organisations/{org_id}/staff/{coach['id']}"
    deactivated = await http.post(f"{staff_url}/deactivate", headers=admin["headers"])
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False and deactivated.json()["deactivated_at"]

    # Enrolment refuses at once; coaching and the mailer once the event reached them.
    bearer = {"Authorization": f"Bearer {coach['token']}"}
    mine = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/participants", headers=bearer)
    assert mine.status_code == 401 and "deactivated" in mine.json()["error"]["message"]
    await eventually(lambda: refused_everywhere(http, org_id, coach["token"]), what="the token refused everywhere")
    assert (await login(http, coach["email"], STAFF_PASSWORD)).status_code == 401

    # The event says who and which version, nothing personal.
    (event,) = await eventually(lambda: access_events(org_id, coach["id"]), what="staff.access_changed")
    assert event["payload"] == {
        "staff_id": coach["id"],
        "role": "coach",
        "token_version": 2,
        "active": False,
        "removed": False,
        "partner_organisation": None,
    }
    assert coach["email"] not in str(event) and "Vertrekt" not in str(event)

    # The admin sees whom to give another coach; the deactivated coach can no longer be chosen.
    to_reassign = f"{ENROLMENT}/api/organisations/{org_id}/participants-to-reassign"
    waiting = await http.get(to_reassign, headers=admin["headers"])
    assert waiting.status_code == 200 and [p["id"] for p in waiting.json()["items"]] == [participant["id"]]

    # Coaching's organisation page shows them too, in Dutch, for the admin.
    async def on_the_organisation_page() -> bool:
        page = await http.get(f"{COACHING}/organisatie", headers={"Cookie": f"meer_coaching_session={admin['token']}"})
        return (
            page.status_code == 200
            and "nieuwe coach nodig" in page.text
            and f"/deelnemers/{participant['id']}" in page.text
        )

    await eventually(on_the_organisation_page, what="the participant on coaching's organisation page")
    overview = await http.get(f"{COACHING}/api/organisation", headers=admin["headers"])
    assert [p["participant_id"] for p in overview.json()["to_reassign"]] == [participant["id"]]
    coaches = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/coaches", headers=admin["headers"])
    assert [c["id"] for c in coaches.json()["items"]] == [other["id"]]
    # New participants go to active coaches only: named, the deactivated coach is refused; unnamed,
    # the coach who stays gets them although the deactivated one has fewer.
    participants_url = f"{ENROLMENT}/api/organisations/{org_id}/participants"
    named = {"first_name": "Ans", "email": unique_email(), "coach_id": coach["id"]}
    refused = await http.post(participants_url, json=named, headers=admin["headers"])
    assert refused.status_code == 422 and refused.json()["error"]["fields"][0]["field"] == "coach_id", refused.text
    unnamed = await http.post(
        participants_url, json={"first_name": "Ans", "email": unique_email()}, headers=admin["headers"]
    )
    assert unnamed.status_code == 201 and unnamed.json()["coach_id"] == other["id"], unnamed.text
    coach_url = f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant['id']}/coach"
    back = await http.put(coach_url, json={"coach_id": coach["id"]}, headers=admin["headers"])
    assert back.status_code in (404, 409, 422), back.text
    moved = await http.put(coach_url, json={"coach_id": other["id"]}, headers=admin["headers"])
    assert moved.status_code == 200 and moved.json()["coach_id"] == other["id"]
    assert (await http.get(to_reassign, headers=admin["headers"])).json()["total"] == 0

    async def reassigned_in_coaching() -> bool:
        overview = await http.get(f"{COACHING}/api/organisation", headers=admin["headers"])
        return overview.json()["to_reassign"] == []

    await eventually(reassigned_in_coaching, what="coaching seeing the new coach")

    # Reactivation lets the coach log in again; the token from before stays refused.
    assert (await http.post(f"{staff_url}/reactivate", headers=admin["headers"])).status_code == 200
    again = await login(http, coach["email"], STAFF_PASSWORD)
    assert again.status_code == 200
    await eventually(
        lambda: accepted_everywhere(http, org_id, again.json()["access_token"]), what="the new token accepted"
    )
    assert await refused_everywhere(http, org_id, coach["token"])


async def test_logout_ends_the_session_in_every_service(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await staff_login(http, org_id, role="coach")
    await eventually(lambda: accepted_everywhere(http, org_id, coach["token"]), what="the coach's token accepted")

    out = await http.post(f"{ENROLMENT}/api/auth/logout", headers=coach["headers"])
    assert out.status_code == 204
    assert (await http.get(f"{ENROLMENT}/api/auth/me", headers=coach["headers"])).status_code == 401
    await eventually(lambda: refused_everywhere(http, org_id, coach["token"]), what="the logged-out token refused")


async def test_logging_out_of_the_coaching_pages_ends_the_session_too(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await staff_login(http, org_id, role="coach")
    async with httpx.AsyncClient(base_url=COACHING, timeout=10, headers=client_address()) as browser:
        form = await browser.get("/inloggen")
        login_token = form.cookies["meer_coaching_login"]
        logged_in = await browser.post(
            "/inloggen", data={"email": coach["email"], "password": STAFF_PASSWORD, "login_token": login_token}
        )
        assert logged_in.status_code == 303, logged_in.text
        session_token = browser.cookies["meer_coaching_session"]
        assert browser.cookies.get("meer_coaching_device"), "the browser is remembered for later logins"
        page = await browser.get("/overzicht")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        out = await browser.post("/uitloggen", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/inloggen?reden=uitgelogd"
    # Someone who kept a copy of the cookie gets nowhere with it.
    gone = await http.get(f"{ENROLMENT}/api/auth/me", headers={"Authorization": f"Bearer {session_token}"})
    assert gone.status_code == 401
    await eventually(lambda: refused_everywhere(http, org_id, session_token), what="the cookie's token refused")


async def test_a_password_reset_ends_the_old_password_and_every_session(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach")
    await eventually(lambda: accepted_everywhere(http, org_id, coach["token"]), what="the coach's token accepted")

    reset = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/staff/{coach['id']}/invitation", headers=admin["headers"]
    )
    assert reset.status_code == 201
    assert (await login(http, coach["email"], STAFF_PASSWORD)).status_code == 401
    await eventually(lambda: refused_everywhere(http, org_id, coach["token"]), what="the old session refused")

    url = await mailed_link(http, coach["email"], "/set-password/", count=2)
    saved = await http.post(
        f"{ENROLMENT}/api/auth/set-password", json={"token": url.rsplit("/", 1)[1], "password": NEW_PASSWORD}
    )
    assert saved.status_code == 204
    fresh = await login(http, coach["email"], NEW_PASSWORD)
    assert fresh.status_code == 200
    await eventually(
        lambda: accepted_everywhere(http, org_id, fresh.json()["access_token"]), what="the new session accepted"
    )


async def test_removal_erases_name_and_address_but_keeps_the_id(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach", name="Coach Weg")
    await eventually(
        lambda: db_fetch("mailer", "SELECT 1 FROM coach_copy WHERE coach_id = $1", uuid.UUID(coach["id"])),
        what="the mailer's copy of the coach",
    )
    assert await eventually(lambda: contact_of(coach["id"]), what="the coach's details on meer.contact")

    removed = await http.delete(f"{ENROLMENT}/api/organisations/{org_id}/staff/{coach['id']}", headers=admin["headers"])
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert (body["id"], body["name"], body["email"], body["active"]) == (coach["id"], None, None, False)
    (row,) = await db_fetch("enrolment", "SELECT * FROM staff WHERE id = $1", uuid.UUID(coach["id"]))
    assert row["name"] is None and row["email"] is None and row["password_hash"] is None
    await eventually(lambda: refused_everywhere(http, org_id, coach["token"]), what="the token refused everywhere")

    async def mailer_forgot() -> bool:
        rows = await db_fetch("mailer", "SELECT email FROM coach_copy WHERE coach_id = $1", uuid.UUID(coach["id"]))
        return bool(rows) and rows[0]["email"] is None

    await eventually(mailer_forgot, what="the mailer forgetting the coach's address")
    # meer.contact: a tombstone, and every copy made from it is gone.
    person = uuid.UUID(coach["id"])

    async def tombstoned() -> bool:
        return await contact_of(coach["id"]) is None

    await eventually(tombstoned, what="a tombstone for the coach on meer.contact")

    async def copies_gone() -> bool:
        mailer = await db_fetch("mailer", "SELECT 1 FROM contact_copy WHERE person_id = $1", person)
        coaching = await db_fetch("coaching", "SELECT 1 FROM contact_view WHERE person_id = $1", person)
        return not mailer and not coaching

    await eventually(copies_gone, what="the mailer's and coaching's copies of the coach's details gone")
    # The address is free for a new account.
    again = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/staff",
        json={"name": "Coach Terug", "email": coach["email"], "role": "coach"},
        headers=admin["headers"],
    )
    assert again.status_code == 201


async def test_an_admin_cannot_lock_themselves_or_the_organisation_out(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    own = f"{ENROLMENT}/api/organisations/{org_id}/staff/{admin['id']}"
    assert (await http.post(f"{own}/deactivate", headers=admin["headers"])).status_code == 409
    last = await http.post(f"{own}/deactivate", headers=LICENSOR)
    assert last.status_code == 409 and "last active admin" in last.json()["error"]["message"]
    elsewhere = await create_organisation(http)
    stranger = await staff_login(http, elsewhere["id"])
    foreign = await http.post(f"{own}/deactivate", headers=stranger["headers"])
    assert foreign.status_code == 403
    assert (await http.get(f"{ENROLMENT}/api/auth/me", headers=admin["headers"])).status_code == 200


async def test_an_open_live_stream_ends_when_the_coach_is_deactivated(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach")
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=40)) as client,
        client.stream("GET", f"{COACHING}/api/live", headers=coach["headers"]) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == "event: ready"
        url = f"{ENROLMENT}/api/organisations/{org_id}/staff/{coach['id']}/deactivate"
        assert (await http.post(url, headers=admin["headers"])).status_code == 200

        async def ended() -> bool:
            async for line in lines:
                if line == "event: expired":
                    return True
            return False

        # The stream rechecks the login every few seconds; the event must reach coaching first.
        assert await asyncio.wait_for(ended(), timeout=40), "the stream ended without saying why"
