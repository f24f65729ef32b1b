"""Licensing on the real stack: the licensor licenses an organisation (API and CLI), its
use is visible, and a full or expired licence refuses new enrolments with a reason while
running participants go on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    PG_SERVER,
    add_coach,
    create_organisation,
    db_count,
    db_fetch,
    events_on,
    eventually,
    unique_email,
)

pytestmark = pytest.mark.stack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The enrolment CLI, with the settings the local stack gives the enrolment service."""
    env = {
        **os.environ,
        "MEER_DATABASE_URL": PG_SERVER.replace("postgresql://", "postgresql+asyncpg://", 1) + "/meer_enrolment",
        "MEER_ENROLMENT_BASE_URL": ENROLMENT,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.enrolment.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


async def enrol(http: httpx.AsyncClient, org_id: str, **body: Any) -> httpx.Response:
    return await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Ans", "email": unique_email(), **body},
        headers=LICENSOR,
    )


async def licence(http: httpx.AsyncClient, org_id: str) -> dict[str, Any]:
    response = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/licence", headers=LICENSOR)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_licensing_publishes_the_organisation_and_shows_its_use(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(
        http,
        max_active_participants=2,
        variants=["standaard"],
        contact_person="Joke Smit",
        sender_name="Team Meer contact Testdorp",
        reply_to="coach@testdorp.example",
    )
    org_id = organisation["id"]
    assert organisation["variants"] == ["standaard"] and organisation["contact_person"] == "Joke Smit"

    (licensed,) = await eventually(
        lambda: events_on("meer.organisation", key=org_id, event_type="organisation.licensed"),
        what="organisation.licensed on Kafka",
    )
    payload = licensed["payload"]
    assert payload["max_active_participants"] == 2 and payload["variants"] == ["standaard"]
    assert payload["branding"]["display_name"] == "Welzijn Testdorp"
    assert payload["branding"]["sender_name"] == "Team Meer contact Testdorp"
    assert payload["branding"]["reply_to"] == "coach@testdorp.example"
    assert payload["branding"]["contact_phone"] == "020 123 4567"

    use = await licence(http, org_id)
    assert (use["state"], use["active_participants"], use["max_active_participants"], use["available"]) == (
        "valid",
        0,
        2,
        2,
    )
    await add_coach(http, org_id)
    assert (await enrol(http, org_id)).status_code == 201
    use = await licence(http, org_id)
    assert (use["active_participants"], use["available"]) == (1, 1)

    listed = await http.get(f"{ENROLMENT}/api/organisations", params={"limit": 200}, headers=LICENSOR)
    assert listed.status_code == 200 and listed.json()["total"] >= 1
    anonymous = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/licence")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["message"]


async def test_a_full_licence_refuses_new_enrolments_until_it_grows(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, max_active_participants=1)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    first = await enrol(http, org_id)
    assert first.status_code == 201

    refused = await enrol(http, org_id)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert "full" in error["message"] and "1 of 1" in error["message"]
    assert error["fields"] == [{"field": "licence", "reason": error["message"]}]
    assert await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(org_id)) == 1

    # The public sign-up page says so in Dutch instead of taking a sign-up it cannot honour.
    page = await http.get(f"{ENROLMENT}/aanmelden/{org_id}")
    assert page.status_code == 409 and "Aanmelden kan op dit moment niet" in page.text

    grown = await http.patch(
        f"{ENROLMENT}/api/organisations/{org_id}/licence", json={"max_active_participants": 2}, headers=LICENSOR
    )
    assert grown.status_code == 200 and grown.json()["available"] == 1
    changed = await eventually(
        lambda: events_on("meer.organisation", key=org_id, event_type="organisation.licence_changed"),
        what="organisation.licence_changed on Kafka",
    )
    assert changed[-1]["payload"]["max_active_participants"] == 2
    assert (await enrol(http, org_id)).status_code == 201


async def test_an_expired_licence_refuses_new_enrolments_but_running_participants_finish(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    running = await enrol(http, org_id)
    assert running.status_code == 201
    ended_on = date.today() - timedelta(days=2)
    ended = await http.patch(
        f"{ENROLMENT}/api/organisations/{org_id}/licence",
        json={"licence_valid_from": str(ended_on - timedelta(days=30)), "licence_valid_until": str(ended_on)},
        headers=LICENSOR,
    )
    assert ended.status_code == 200 and ended.json()["state"] == "expired" and ended.json()["available"] == 0

    refused = await enrol(http, org_id)
    assert refused.status_code == 409
    assert f"ended on {ended_on.isoformat()}" in refused.json()["error"]["message"]
    upload = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/import",
        files={"file": ("lijst.csv", f"voornaam;email\nBep;{unique_email()}\n".encode())},
        headers=LICENSOR,
    )
    assert upload.status_code == 409 and upload.json()["error"]["fields"][0]["field"] == "licence"

    # The participant who was already running is not touched.
    (row,) = await db_fetch(
        "enrolment", "SELECT status FROM participant WHERE id = $1", uuid.UUID(running.json()["id"])
    )
    assert row["status"] == "enrolled"
    assert not await events_on("meer.participant", key=running.json()["id"], event_type="participant.stopped")


async def test_a_licence_that_ends_before_it_starts_is_refused(http: httpx.AsyncClient) -> None:
    today = date.today()
    response = await http.post(
        f"{ENROLMENT}/api/organisations",
        json={
            "name": "Omgekeerd",
            "display_name": "Omgekeerd",
            "licence_valid_from": str(today),
            "licence_valid_until": str(today - timedelta(days=1)),
            "max_active_participants": 5,
        },
        headers=LICENSOR,
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "licence_valid_until"


async def test_the_cli_licenses_an_organisation(http: httpx.AsyncClient) -> None:
    name = f"CLI-organisatie {uuid.uuid4().hex[:6]}"
    today = date.today()
    done = cli(
        "license-org",
        "--name",
        name,
        "--valid-from",
        str(today),
        "--valid-until",
        str(today + timedelta(days=365)),
        "--max-participants",
        "25",
        "--variant",
        "standaard",
        "--contact-phone",
        "0223 123 456",
    )
    assert done.returncode == 0, done.stderr
    org_id = done.stdout.split(": ")[1].split()[0]
    assert f"{ENROLMENT}/aanmelden/{org_id}" in done.stdout
    use = await licence(http, org_id)
    assert use["max_active_participants"] == 25 and use["variants"] == ["standaard"]
    # The running service's relay publishes what the CLI committed to the outbox.
    await eventually(
        lambda: events_on("meer.organisation", key=org_id, event_type="organisation.licensed"),
        what="organisation.licensed from the CLI",
    )

    bad = cli(
        "license-org",
        "--name",
        "X",
        "--valid-from",
        "2026-13-01",
        "--valid-until",
        "2027-01-01",
        "--max-participants",
        "0",
    )
    assert bad.returncode == 1
    assert "licence_valid_from" in bad.stderr and "max_active_participants" in bad.stderr


async def test_parallel_enrolments_fill_a_licence_exactly_and_never_beyond(http: httpx.AsyncClient) -> None:
    """Enrolments into one organisation that arrive together commit together in batches, and
    the licence count holds exactly across the batches and at the end."""
    organisation = await create_organisation(http, max_active_participants=330)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    rows = ["Voornaam;E-mailadres"] + [f"Bestaand {i};{unique_email()}" for i in range(20)]
    imported = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/import",
        headers=LICENSOR,
        files={"file": ("deelnemers.csv", "\n".join(rows).encode(), "text/csv")},
    )
    assert imported.status_code == 200, imported.text
    assert (await licence(http, org_id))["available"] == 310

    answers: list[httpx.Response] = []

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as own:
            for _ in range(20):
                answers.append(await enrol(own, org_id))

    await asyncio.gather(*(client() for _ in range(16)))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(201) == 310 and statuses.count(409) == 10, statuses
    assert all("full" in a.json()["error"]["message"] for a in answers if a.status_code == 409)
    stored = await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(org_id))
    assert stored == 330
    assert (await licence(http, org_id))["available"] == 0


async def test_enrolments_that_arrive_together_are_each_answered_for_themselves(http: httpx.AsyncClient) -> None:
    """Enrolments sent at the same moment go in together; within them the same address twice is
    enrolled once, a coach of another organisation is refused alone, and another organisation's
    enrolments at the same moment are not held up or mixed in."""
    first, second = (await create_organisation(http), await create_organisation(http))
    await add_coach(http, first["id"])
    await add_coach(http, second["id"])
    stranger = await add_coach(http, second["id"], name="Coach Elders")
    twice = unique_email()
    requests = [enrol(http, first["id"], email=twice) for _ in range(4)]
    requests += [enrol(http, first["id"]) for _ in range(12)]
    requests += [enrol(http, first["id"], coach_id=stranger["id"])]
    requests += [enrol(http, second["id"]) for _ in range(8)]
    answers = await asyncio.gather(*requests)

    twice_answers = sorted(answer.status_code for answer in answers[:4])
    assert twice_answers == [201, 409, 409, 409], [a.text for a in answers[:4]]
    assert all(a.json()["error"]["fields"][0]["field"] == "email" for a in answers[:4] if a.status_code == 409)
    assert [answer.status_code for answer in answers[4:16]] == [201] * 12
    assert answers[16].status_code == 422 and answers[16].json()["error"]["fields"][0]["field"] == "coach_id"
    assert [answer.status_code for answer in answers[17:]] == [201] * 8
    assert {answer.json()["org_id"] for answer in answers[17:]} == {second["id"]}
    ids = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert len(ids) == 21
    stored = await db_fetch(
        "enrolment",
        "SELECT org_id::text, count(*) AS n FROM participant WHERE org_id = ANY($1::uuid[]) GROUP BY org_id",
        [uuid.UUID(first["id"]), uuid.UUID(second["id"])],
    )
    assert {row["org_id"]: row["n"] for row in stored} == {first["id"]: 13, second["id"]: 8}

    async def all_enrolled_on_kafka() -> bool:
        events = await events_on("meer.participant", event_type="participant.enrolled")
        return ids <= {event["participant_id"] for event in events}

    await eventually(all_enrolled_on_kafka, what="participant.enrolled of each enrolment on Kafka")
