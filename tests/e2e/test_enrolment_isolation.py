"""Organisations are sealed off from each other: the credentials of organisation A (an
admin's token, a coach's token, its API key) read and change nothing of organisation B,
on every endpoint. The endpoint list is checked against the OpenAPI spec, so a new
endpoint without a case here fails this test."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    add_coach,
    create_organisation,
    db_fetch,
    events_on,
    eventually,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack

P = "/api/organisations/{org_id}/participants/{participant_id}"


def logo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


# Every endpoint that names an organisation, with a request that would read or change it.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/organisations/{org_id}", {}),
    ("GET", "/api/organisations/{org_id}/licence", {}),
    ("PATCH", "/api/organisations/{org_id}/licence", {"json": {"max_active_participants": 999}}),
    ("GET", "/api/organisations/{org_id}/branding", {}),
    ("PATCH", "/api/organisations/{org_id}/branding", {"json": {"display_name": "Gekaapt"}}),
    ("PUT", "/api/organisations/{org_id}/logo", {"files": {"file": ("x.png", logo(), "image/png")}}),
    ("DELETE", "/api/organisations/{org_id}/logo", {}),
    ("PUT", "/api/organisations/{org_id}/slug", {"json": {"slug": "gekaapt-adres"}}),
    ("GET", "/api/organisations/{org_id}/api-key", {}),
    ("POST", "/api/organisations/{org_id}/api-key", {}),
    ("DELETE", "/api/organisations/{org_id}/api-key", {}),
    (
        "POST",
        "/api/organisations/{org_id}/staff",
        {"json": {"name": "Indringer", "email": "EMAIL", "role": "org_admin"}},
    ),
    ("GET", "/api/organisations/{org_id}/staff", {}),
    ("POST", "/api/organisations/{org_id}/staff/{staff_id}/invitation", {}),
    ("POST", "/api/organisations/{org_id}/staff/{staff_id}/deactivate", {}),
    ("POST", "/api/organisations/{org_id}/staff/{staff_id}/reactivate", {}),
    ("DELETE", "/api/organisations/{org_id}/staff/{staff_id}", {}),
    ("GET", "/api/organisations/{org_id}/participants-to-reassign", {}),
    ("POST", "/api/organisations/{org_id}/coaches", {"json": {"name": "Indringer", "email": "EMAIL"}}),
    ("GET", "/api/organisations/{org_id}/coaches", {}),
    ("POST", "/api/organisations/{org_id}/participants", {"json": {"first_name": "Indringer", "email": "EMAIL"}}),
    (
        "POST",
        "/api/organisations/{org_id}/participants/import",
        {"files": {"file": ("l.csv", b"voornaam;email\nIndringer;EMAIL\n", "text/csv")}},
    ),
    ("GET", "/api/organisations/{org_id}/participants", {}),
    ("GET", P, {}),
    ("PATCH", P, {"json": {"first_name": "Gekaapt"}}),
    ("POST", P + "/pause", {"json": {"reason": "x"}}),
    ("POST", P + "/resume", {}),
    ("POST", P + "/stop", {"json": {"reason": "x"}}),
    ("PUT", P + "/coach", {"json": {"coach_id": "COACH"}}),
    ("POST", P + "/erase", {}),
    ("DELETE", P, {}),
    ("POST", P + "/exports", {}),
    ("GET", "/api/organisations/{org_id}/exports/{export_id}", {}),
    ("GET", "/api/organisations/{org_id}/exports/{export_id}.json", {}),
    ("GET", "/api/organisations/{org_id}/exports/{export_id}.html", {}),
    ("GET", "/api/organisations/{org_id}/local-offers", {}),
    ("POST", "/api/organisations/{org_id}/local-offers", {"json": {"kind": "library", "name": "Gekaapt"}}),
    ("PUT", "/api/organisations/{org_id}/local-offers/{offer_id}", {"json": {"kind": "library", "name": "Gekaapt"}}),
    ("DELETE", "/api/organisations/{org_id}/local-offers/{offer_id}", {}),
]
# Not about one organisation: only the licensor may use them.
LICENSOR_ONLY: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/organisations", {}),
    (
        "POST",
        "/api/organisations",
        {
            "json": {
                "name": "Eigen licentie",
                "display_name": "Eigen licentie",
                "licence_valid_from": "2026-01-01",
                "licence_valid_until": "2030-01-01",
                "max_active_participants": 99999,
            }
        },
    ),
]


async def test_every_organisation_endpoint_is_covered(http: httpx.AsyncClient) -> None:
    spec = (await http.get(f"{ENROLMENT}/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if "{org_id}" in path and path.startswith("/api/")
        for method in operations
    }
    assert documented == {(method, path) for method, path, _ in CASES}


async def snapshot(org_id: str) -> dict[str, list[dict[str, Any]]]:
    """Everything enrolment holds about one organisation."""
    org = uuid.UUID(org_id)
    queries = {
        "organisation": "SELECT * FROM organisation WHERE id = $1",
        "staff": "SELECT * FROM staff WHERE org_id = $1 ORDER BY id",
        "participant": "SELECT * FROM participant WHERE org_id = $1 ORDER BY id",
        "api_key": "SELECT * FROM api_key WHERE org_id = $1 ORDER BY id",
        "logo": "SELECT org_id, sha256 FROM logo WHERE org_id = $1 ORDER BY sha256",
        "invitation": "SELECT i.* FROM invitation i JOIN staff s ON s.id = i.staff_id WHERE s.org_id = $1 ORDER BY 1",
        "export_request": "SELECT id, participant_id FROM export_request WHERE org_id = $1 ORDER BY id",
        "local_offer": "SELECT * FROM local_offer WHERE org_id = $1 ORDER BY id",
    }
    return {name: [dict(row) for row in await db_fetch("enrolment", query, org)] for name, query in queries.items()}


async def events_of(org_id: str, participant_id: str) -> int:
    return (
        len(await events_on("meer.organisation", key=org_id))
        + len(await events_on("meer.staff", key=org_id))
        + len(await events_on("meer.participant", key=participant_id))
    )


async def outbox_empty() -> bool:
    return not await db_fetch("enrolment", "SELECT 1 FROM outbox LIMIT 1")


def request(
    case: tuple[str, str, dict[str, Any]],
    *,
    org: str,
    participant: str,
    staff: str,
    coach: str,
    export: str = "",
    offer: str = "",
) -> dict[str, Any]:
    method, template, options = case
    url = ENROLMENT + template.format(
        org_id=org, participant_id=participant, staff_id=staff, export_id=export, offer_id=offer
    )
    options = {**options}
    if "json" in options:
        body = {
            k: (unique_email() if v == "EMAIL" else coach if v == "COACH" else v) for k, v in options["json"].items()
        }
        options["json"] = body
    if "files" in options:
        name, data, kind = options["files"]["file"]
        options["files"] = {"file": (name, data.replace(b"EMAIL", unique_email().encode()), kind)}
    return {"method": method, "url": url, **options}


async def test_credentials_of_organisation_a_read_and_change_nothing_of_organisation_b(
    http: httpx.AsyncClient,
) -> None:
    org_a, org_b = await create_organisation(http), await create_organisation(http, name="Organisatie B geheim")
    a, b = org_a["id"], org_b["id"]
    admin_a = await staff_login(http, a)
    coach_a = await staff_login(http, a, role="coach")
    key_a = (await http.post(f"{ENROLMENT}/api/organisations/{a}/api-key", headers=admin_a["headers"])).json()
    participant_a = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{a}/participants",
            json={"first_name": "Annie", "email": unique_email(), "coach_id": coach_a["id"]},
            headers=admin_a["headers"],
        )
    ).json()

    coach_b = await add_coach(http, b, name="Coach Bertus")
    secret_email = unique_email("geheim")
    participant_b = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{b}/participants",
            json={"first_name": "Berendina", "email": secret_email, "phone": "0612345678"},
            headers=LICENSOR,
        )
    ).json()
    key_b = (await http.post(f"{ENROLMENT}/api/organisations/{b}/api-key", headers=LICENSOR)).json()["api_key"]
    exports_b = f"{ENROLMENT}/api/organisations/{b}/participants/{participant_b['id']}/exports"
    export_b = (await http.post(exports_b, headers=LICENSOR)).json()["id"]
    assert (
        await http.put(f"{ENROLMENT}/api/organisations/{b}/logo", files={"file": ("b.png", logo())}, headers=LICENSOR)
    ).status_code == 200
    offer_b = (
        await http.post(
            f"{ENROLMENT}/api/organisations/{b}/local-offers",
            json={"kind": "coffee_morning", "name": "Koffie bij Bertus thuis"},
            headers=LICENSOR,
        )
    ).json()["id"]

    await eventually(outbox_empty, what="enrolment's outbox published")
    before, events_before = await snapshot(b), await events_of(b, participant_b["id"])
    secrets = ("Berendina", secret_email, "Organisatie B geheim", "Coach Bertus", "+31612345678", "Koffie bij Bertus")

    credentials = {
        "admin of A": admin_a["headers"],
        "coach of A": coach_a["headers"],
        "API key of A": {"X-Api-Key": key_a["api_key"]},
    }
    targets = {
        "B's ids": {
            "org": b,
            "participant": participant_b["id"],
            "staff": coach_b["id"],
            "coach": coach_b["id"],
            "export": export_b,
            "offer": offer_b,
        },
        # A's own organisation in the path, B's participant or staff member behind it.
        "A's path, B's ids": {
            "org": a,
            "participant": participant_b["id"],
            "staff": coach_b["id"],
            "coach": coach_a["id"],
            "export": export_b,
            "offer": offer_b,
        },
    }
    failures = []
    for who, headers in credentials.items():
        for what, ids in targets.items():
            for case in CASES:
                if what == "A's path, B's ids" and not any(
                    f"{{{name}}}" in case[1] for name in ("participant_id", "staff_id", "export_id", "offer_id")
                ):
                    continue  # the same as A using its own organisation: allowed where the role allows it
                response = await http.request(**request(case, **ids), headers=headers)
                leaked = [s for s in secrets if s in response.text]
                if response.status_code not in (403, 404) or leaked:
                    failures.append(f"{who}, {what}: {case[0]} {case[1]} -> {response.status_code} {leaked}")
        for case in LICENSOR_ONLY:
            response = await http.request(**request(case, org=a, participant="", staff="", coach=""), headers=headers)
            if response.status_code != 403 or any(s in response.text for s in secrets):
                failures.append(f"{who}: {case[0]} {case[1]} -> {response.status_code}")
    assert not failures, "\n".join(failures)

    # Nothing of B changed, nothing was published about B, and B's own key still works.
    await eventually(outbox_empty, what="enrolment's outbox published")
    assert await snapshot(b) == before
    assert await events_of(b, participant_b["id"]) == events_before
    own = await http.get(f"{ENROLMENT}/api/organisations/{b}/licence", headers={"X-Api-Key": key_b})
    assert own.status_code == 200
    # The same credentials do work on A, so the refusals above are about B, not broken credentials.
    for headers in credentials.values():
        mine = await http.get(f"{ENROLMENT}/api/organisations/{a}/participants/{participant_a['id']}", headers=headers)
        assert mine.status_code == 200, mine.text
