"""Staff accounts on the real stack: invitation by mail, the one-time set-password link,
login with signed tokens that coaching can check with the public key only (login limits:
test_login_limits.py), and organisation API keys that are shown once and can be rotated."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest

from deploy.local.stack import KEYS_DIR
from shared.staff_tokens import verify_staff_token
from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    PG_SERVER,
    STAFF_PASSWORD,
    add_coach,
    client_address,
    contact_of,
    create_organisation,
    db_fetch,
    events_on,
    eventually,
    mailed_link,
    mails_to,
    raw_mail,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack
# The mailer holds a mail up to 30 s while the organisation's or coach's events (another
# topic) have not reached it yet; a mail may take that long plus a scheduler round.


def body_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"the mail has no {kind} part"
    return str(part.get_content())


async def invite(http: httpx.AsyncClient, org_id: str, role: str = "org_admin") -> tuple[dict[str, Any], str]:
    """Invite someone as the licensor; returns the staff member and their set-password URL."""
    email = unique_email(role.replace("_", "-"))
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/staff",
        json={"name": "Fatima el Amrani", "email": email, "role": role},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text

    return response.json(), await mailed_link(http, email, "/set-password/")


async def login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": email, "password": password}, headers=client_address()
    )


async def execute(query: str, *args: Any) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_enrolment")
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


def claims_without_checking(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_an_invited_admin_sets_a_password_once_and_logs_in(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Wachtwoorddorp")
    staff, url = await invite(http, organisation["id"])
    assert staff["role"] == "org_admin" and staff["has_password"] is False
    assert url.startswith(f"{ENROLMENT}/set-password/")

    # The link came by mail: the mailer opened what staff.invited carries sealed.
    (mail,) = await mails_to(http, staff["email"])
    assert "Kies hier je wachtwoord" in body_of(await raw_mail(http, mail["id"]), "plain")

    form = await http.get(url)
    assert form.status_code == 200 and 'lang="nl"' in form.text and "Kies je wachtwoord" in form.text
    assert "Welzijn Wachtwoorddorp" in form.text and '<label for="password">' in form.text

    short = await http.post(url, data={"password": "kort", "password_again": "kort"})
    assert short.status_code == 422 and "minstens" in short.text
    different = await http.post(url, data={"password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD + "!"})
    assert different.status_code == 422 and "niet hetzelfde" in different.text
    assert (await login(http, staff["email"], "kort")).status_code == 401

    saved = await http.post(url, data={"password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD})
    assert saved.status_code == 200 and "Je wachtwoord is opgeslagen" in saved.text
    for again in (await http.get(url), await http.post(url, data={"password": "x" * 20, "password_again": "x" * 20})):
        assert again.status_code == 410 and "al gebruikt" in again.text

    # Stored as an argon2 hash; the link token only as its SHA-256.
    (row,) = await db_fetch("enrolment", "SELECT password_hash FROM staff WHERE id = $1", uuid.UUID(staff["id"]))
    assert row["password_hash"].startswith("$argon2id$")
    token = url.rsplit("/", 1)[1]
    assert not await db_fetch("enrolment", "SELECT 1 FROM invitation WHERE token_hash = $1", token)
    assert await db_fetch(
        "enrolment", "SELECT 1 FROM invitation WHERE token_hash = $1", hashlib.sha256(token.encode()).hexdigest()
    )

    response = await login(http, staff["email"].upper(), STAFF_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    # Coaching checks tokens with the public key alone.
    claims = verify_staff_token(body["access_token"], (KEYS_DIR / "staff-token.pub").read_bytes())
    assert (str(claims.staff_id), claims.role, str(claims.org_id), claims.coach_id) == (
        staff["id"],
        "org_admin",
        organisation["id"],
        None,
    )
    raw = json.dumps(claims_without_checking(body["access_token"]))
    assert staff["email"] not in raw and "Fatima" not in raw, "tokens carry no name or address"
    me = await http.get(f"{ENROLMENT}/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["email"] == staff["email"]


async def test_a_coach_logs_in_with_their_coach_id_in_the_token(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    coach = await staff_login(http, organisation["id"], role="coach", name="Coach Kees")
    claims = verify_staff_token(coach["token"], (KEYS_DIR / "staff-token.pub").read_bytes())
    assert claims.role == "coach" and str(claims.coach_id) == coach["id"] == str(claims.staff_id)
    added = await eventually(
        lambda: events_on("meer.organisation", key=organisation["id"], event_type="coach.added"),
        what="coach.added on Kafka",
    )
    assert [event["payload"]["coach_id"] for event in added] == [coach["id"]]
    assert "name" not in added[0]["payload"], "the name travels on meer.contact only"
    contact = await eventually(lambda: contact_of(coach["id"]), what="the coach's details on meer.contact")
    assert (contact["kind"], contact["name"], contact["email"]) == ("staff", "Coach Kees", coach["email"])


async def test_expired_unknown_and_replaced_invitation_links_get_a_clear_page(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    staff, url = await invite(http, organisation["id"], role="coach")
    await execute(
        "UPDATE invitation SET expires_at = now() - interval '1 minute' WHERE staff_id = $1", uuid.UUID(staff["id"])
    )
    expired = await http.get(url)
    assert expired.status_code == 410 and "werkt niet meer" in expired.text
    api = await http.post(
        f"{ENROLMENT}/api/auth/set-password", json={"token": url.rsplit("/", 1)[1], "password": STAFF_PASSWORD}
    )
    assert api.status_code == 410 and api.json()["error"]["fields"][0]["field"] == "token"
    unknown = await http.get(f"{ENROLMENT}/set-password/niet-een-echte-link")
    assert unknown.status_code == 404 and "klopt niet" in unknown.text

    resent = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/staff/{staff['id']}/invitation", headers=LICENSOR
    )
    assert resent.status_code == 201
    newest = await mailed_link(http, staff["email"], "/set-password/", count=2)
    assert newest != url
    assert (await http.get(newest)).status_code == 200


async def test_an_address_can_have_one_account_only(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    coach = await add_coach(http, organisation["id"])
    again = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/staff",
        json={"name": "Dubbel", "email": coach["email"].upper(), "role": "org_admin"},
        headers=LICENSOR,
    )
    assert again.status_code == 409 and again.json()["error"]["fields"][0]["field"] == "email"


async def test_an_api_key_is_shown_once_stored_hashed_and_rotatable(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    admin = await staff_login(http, org_id)
    created = await http.post(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=admin["headers"])
    assert created.status_code == 201
    key = created.json()["api_key"]
    shown = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=admin["headers"])
    assert shown.status_code == 200 and key not in shown.text and key.startswith(shown.json()["prefix"])
    rows = await db_fetch("enrolment", "SELECT key_hash, prefix FROM api_key WHERE org_id = $1", uuid.UUID(org_id))
    assert all(key not in (row["key_hash"], row["prefix"]) for row in rows)

    system = {"X-Api-Key": key}
    enrolled = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Ans", "email": unique_email()},
        headers=system,
    )
    assert enrolled.status_code == 201 and enrolled.json()["source"] == "api"
    branding = await http.patch(
        f"{ENROLMENT}/api/organisations/{org_id}/branding", json={"display_name": "Overgenomen"}, headers=system
    )
    assert branding.status_code == 403

    rotated = await http.post(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=admin["headers"])
    new_key = rotated.json()["api_key"]
    assert new_key != key
    old = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/licence", headers=system)
    assert old.status_code == 401 and "rotated" in old.json()["error"]["message"]
    fresh = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/licence", headers={"X-Api-Key": new_key})
    assert fresh.status_code == 200

    revoked = await http.delete(f"{ENROLMENT}/api/organisations/{org_id}/api-key", headers=admin["headers"])
    assert revoked.status_code == 204
    gone = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/licence", headers={"X-Api-Key": new_key})
    assert gone.status_code == 401


async def test_forged_and_expired_tokens_are_refused(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    admin = await staff_login(http, organisation["id"])
    header, _, signature = admin["token"].split(".")
    claims = claims_without_checking(admin["token"])
    claims["role"] = "licensor"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for token in (f"{header}.{forged_body}.{signature}", "not-a-token", admin["token"][:-4] + "AAAA"):
        response = await http.get(
            f"{ENROLMENT}/api/organisations/{organisation['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token
