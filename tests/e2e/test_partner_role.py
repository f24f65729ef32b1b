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
    STAFF_PASSWORD,
    client_address,
    create_organisation,
    db_count,
    events_on,
    eventually,
    mailed_link,
    mails_to,
    raw_mail,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack

PARTNER_ORGANISATION = "Woonstichting De Kust"


async def partner_login(
    http: httpx.AsyncClient, org_id: str, admin_headers: dict[str, str], *, name: str = "Petra Signaal"
) -> dict[str, Any]:
    """An admin invites a partner; the partner sets a password with the mailed link and logs in."""
    email = unique_email("partner")
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/staff",
        json={"name": name, "email": email, "role": "partner", "partner_organisation": PARTNER_ORGANISATION},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    partner = dict(response.json())
    url = await mailed_link(http, email, "/set-password/")
    response = await http.post(
        f"{ENROLMENT}/api/auth/set-password", json={"token": url.rsplit("/", 1)[1], "password": STAFF_PASSWORD}
    )
    assert response.status_code == 204, response.text
    response = await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": email, "password": STAFF_PASSWORD}, headers=client_address()
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return {**partner, "token": token, "headers": {"Authorization": f"Bearer {token}"}}


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


async def outbox_empty() -> bool:
    return await db_count("enrolment", "SELECT count(*) FROM outbox") == 0
