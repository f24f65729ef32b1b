"""Enrolling from a signal (issue 18) on the real stack: the coach's one click at the end of an
intake calls enrolment's normal POST …/participants with their own token and the consent
(given_at, via signal, signal_id). Consent is recorded, the same signal enrols once (a repeat
or a parallel double click answers the first participant), and the day-1 mail goes out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    ENROLMENT,
    create_organisation,
    db_count,
    db_fetch,
    events_on,
    eventually,
    mails_to,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack


def enrolment(coach_id: str | None, signal_id: uuid.UUID | None, **consent: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Gerda",
        "email": unique_email("signaal"),
        "phone": "0612345678",
        "start_date": str(date.today()),
        "send_time": "00:00",
        "timezone": "UTC",
    }
    if coach_id is not None:
        body["coach_id"] = coach_id
    if signal_id is not None:
        given_at = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
        body["consent"] = {"given_at": given_at, "via": "signal", "signal_id": str(signal_id), **consent}
    return body


async def rows_of_signal(org_id: str, signal_id: uuid.UUID) -> int:
    return await db_count(
        "enrolment",
        "SELECT count(*) FROM participant WHERE org_id = $1 AND consent_signal_id = $2",
        uuid.UUID(org_id),
        signal_id,
    )


async def test_a_coach_enrols_from_a_signal_once_with_consent_recorded(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Eenklik")
    org_id = organisation["id"]
    coach = await staff_login(http, org_id, role="coach", name="Coach Carla")
    url = f"{ENROLMENT}/api/organisations/{org_id}/participants"
    signal = uuid.uuid4()
    body = enrolment(coach["id"], signal)

    first = await http.post(url, json=body, headers=coach["headers"])
    assert first.status_code == 201, first.text
    participant = first.json()
    assert (participant["coach_id"], participant["source"], participant["status"]) == (
        coach["id"],
        "signal",
        "enrolled",
    )
    assert (participant["consent_via"], participant["consent_signal_id"]) == ("signal", str(signal))
    assert datetime.fromisoformat(participant["consented_at"]) == datetime.fromisoformat(body["consent"]["given_at"])

    # A retry of the same click, and the same signal with other details: the first participant, 200.
    again = await http.post(url, json=body, headers=coach["headers"])
    assert (again.status_code, again.json()) == (200, participant)
    other = await http.post(url, json=enrolment(None, signal), headers=coach["headers"])
    assert (other.status_code, other.json()["id"]) == (200, participant["id"])
    assert await rows_of_signal(org_id, signal) == 1

    # participant.enrolled names the signal, once; the day-1 mail arrives.
    enrolled = await eventually(
        lambda: events_on("meer.participant", key=participant["id"], event_type="participant.enrolled"),
        what="participant.enrolled",
    )
    assert [e["payload"]["signal_id"] for e in enrolled] == [str(signal)]
    assert await eventually(lambda: mails_to(http, body["email"]), what="the day-1 mail")

    # A coach left out coach_id: they become the coach themselves.
    own = await http.post(url, json=enrolment(None, uuid.uuid4()), headers=coach["headers"])
    assert own.status_code == 201 and own.json()["coach_id"] == coach["id"], own.text


async def test_a_double_click_in_parallel_enrols_once(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await staff_login(http, org_id, role="coach")
    url = f"{ENROLMENT}/api/organisations/{org_id}/participants"
    signal = uuid.uuid4()
    body = enrolment(coach["id"], signal)
    answers = await asyncio.gather(*(http.post(url, json=body, headers=coach["headers"]) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await rows_of_signal(org_id, signal) == 1


async def test_who_may_enrol_from_a_signal(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id)
    coach = await staff_login(http, org_id, role="coach", name="Coach Carla")
    colleague = await staff_login(http, org_id, role="coach", name="Coach Kees")
    url = f"{ENROLMENT}/api/organisations/{org_id}/participants"
    before = await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(org_id))

    refusals = {
        "a coach without a signal": (enrolment(coach["id"], None), coach, 403, "consent"),
        "a coach for a colleague": (enrolment(colleague["id"], uuid.uuid4()), coach, 403, "coach_id"),
        "consent in the future": (
            enrolment(coach["id"], uuid.uuid4(), given_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
            coach,
            422,
            "consent.given_at",
        ),
        "consent without a time zone": (
            enrolment(coach["id"], uuid.uuid4(), given_at="2026-11-30T10:00:00"),
            coach,
            422,
            "consent.given_at",
        ),
        "consent another way": (enrolment(coach["id"], uuid.uuid4(), via="telefoon"), coach, 422, "consent.via"),
    }
    for what, (body, who, status, field) in refusals.items():
        response = await http.post(url, json=body, headers=who["headers"])
        assert response.status_code == status, (what, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], (what, response.text)
    assert (
        await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(org_id)) == before
    )

    # The admin may enrol from a signal for any coach; the signal's coach can repeat it, a colleague cannot.
    signal = uuid.uuid4()
    by_admin = await http.post(url, json=enrolment(coach["id"], signal), headers=admin["headers"])
    assert by_admin.status_code == 201 and by_admin.json()["source"] == "signal", by_admin.text
    repeated = await http.post(url, json=enrolment(coach["id"], signal), headers=coach["headers"])
    assert (repeated.status_code, repeated.json()["id"]) == (200, by_admin.json()["id"])
    colleague_repeat = await http.post(url, json=enrolment(colleague["id"], signal), headers=colleague["headers"])
    assert colleague_repeat.status_code == 409, colleague_repeat.text
    assert "Gerda" not in colleague_repeat.text
    # Without consent the admin's enrolment is as it always was.
    plain = await http.post(url, json=enrolment(coach["id"], None), headers=admin["headers"])
    assert plain.status_code == 201 and plain.json()["source"] == "admin" and plain.json()["consent_via"] is None
    (row,) = await db_fetch(
        "enrolment", "SELECT consent_via, consented_at FROM participant WHERE id = $1", uuid.UUID(plain.json()["id"])
    )
    assert (row["consent_via"], row["consented_at"]) == (None, None)
