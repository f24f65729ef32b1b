"""The intake on the real stack (issue 18): a partner, invited through enrolment, submits a
signal with consent; the coordinator hands it to a coach; the coach records the first contact
and the own question; one click enrols the person through enrolment's normal path, and their
day-1 mail arrives, branded. Around it: what the signaller sees (no follow-up detail), the
events (ids and keys only), the counts, refer and close (personal data blanked), and bad input
that writes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.coaching.auth import SESSION_COOKIE, csrf_token_for
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    coaches_today,
    db_count,
    db_fetch,
    events_on,
    eventually,
    mails_to,
    raw_mail,
    staff_login,
    unique_email,
)
from tests.e2e.test_partner_role import PARTNER_ORGANISATION, partner_login
from tests.support.pdf import pdf_text

pytestmark = pytest.mark.stack

SIGNAL = {
    "consent": True,
    "first_name": "Riek",
    "phone": "06 1234 5678",
    "noticed": ["withdraws", "lost_someone"],
    "note": "Haar man is in de zomer overleden.\nZe komt niet meer naar de koffieochtend.",
}
QUESTION = {"own_question": "Ik wil weer eens met iemand een kopje koffie drinken.", "causes": ["loss_of_partner"]}


async def organisation_with_people(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """An organisation with its coordinator, a coach and a partner, all known to coaching."""
    from tests.e2e.conftest import create_organisation

    organisation = await create_organisation(http, display_name=name)
    org_id = organisation["id"]
    admin = await staff_login(http, org_id, name="Coördinator Cora")
    coach = await staff_login(http, org_id, role="coach", name="Coach Siem")
    partner = await partner_login(http, org_id, admin["headers"])

    async def known() -> bool:
        partners = await db_count(
            "coaching",
            "SELECT count(*) FROM staff_copy WHERE staff_id = $1 AND partner_organisation = $2",
            uuid.UUID(partner["id"]),
            PARTNER_ORGANISATION,
        )
        coaches = await db_count(
            "coaching", "SELECT count(*) FROM coach_view WHERE coach_id = $1 AND active", uuid.UUID(coach["id"])
        )
        organisations = await db_count(
            "coaching", "SELECT count(*) FROM organisation_view WHERE org_id = $1", uuid.UUID(org_id)
        )
        return partners == coaches == organisations == 1

    await eventually(known, what="the partner, the coach and the organisation in coaching")
    return {"org_id": org_id, "admin": admin, "coach": coach, "partner": partner, "name": name}


async def mine(http: httpx.AsyncClient, partner: dict[str, Any]) -> list[dict[str, Any]]:
    response = await http.get(f"{COACHING}/api/signals/mine", headers=partner["headers"])
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_partner_signal_becomes_a_participant_whose_day_one_mail_arrives_branded(
    http: httpx.AsyncClient,
) -> None:
    world = await organisation_with_people(http, "Welzijn Signaalstad")
    admin, coach, partner = world["admin"], world["coach"], world["partner"]
    email = unique_email("riek")

    response = await http.post(f"{COACHING}/api/signals", json={**SIGNAL, "email": email}, headers=partner["headers"])
    assert response.status_code == 201, response.text
    signal_id = response.json()["signal_id"]
    anonymous = await http.post(
        f"{COACHING}/api/signals", json={"consent": False, "noticed": ["says_lonely"]}, headers=partner["headers"]
    )
    assert anonymous.status_code == 201, anonymous.text
    (status,) = [s for s in await mine(http, partner) if s["signal_id"] == signal_id]
    assert (status["status"], status["status_label"]) == ("received", "Ontvangen")

    # The coordinator sees it (with the partner's organisation) and hands it to the coach.
    listed = await http.get(f"{COACHING}/api/signals", headers=admin["headers"])
    assert [(s["signal_id"], s["partner_organisation"], s["phone"]) for s in listed.json()] == [
        (signal_id, PARTNER_ORGANISATION, "+31612345678")
    ]
    assigned = await http.post(
        f"{COACHING}/api/signals/{signal_id}/assignment", json={"coach_id": coach["id"]}, headers=admin["headers"]
    )
    assert assigned.status_code == 200, assigned.text
    assert (await mine(http, partner))[-1]["status"] in ("picked_up", "received")  # the anonymous one stays received
    assert {s["status"] for s in await mine(http, partner)} == {"received", "picked_up"}

    # The coach: first contact, the own question and causes.
    today = coaches_today()
    contact = await http.post(
        f"{COACHING}/api/signals/{signal_id}/first-contact",
        json={"discussable": True, "contact_date": today},
        headers=coach["headers"],
    )
    assert contact.status_code == 200, contact.text
    question = await http.post(f"{COACHING}/api/signals/{signal_id}/question", json=QUESTION, headers=coach["headers"])
    assert question.status_code == 200, question.text
    statuses = await mine(http, partner)
    (status,) = [s for s in statuses if s["signal_id"] == signal_id]
    assert status["status"] == "contact_made"
    seen_by_partner = json.dumps(statuses)
    for secret in ("Siem", coach["id"], "kopje koffie", "loss_of_partner", "discussable"):
        assert secret not in seen_by_partner

    # One click enrols; a retry answers the same participant and makes no second one.
    enrol = {"start_date": today, "send_time": "00:00"}
    enrolled = await http.post(f"{COACHING}/api/signals/{signal_id}/enrolment", json=enrol, headers=coach["headers"])
    assert enrolled.status_code == 200, enrolled.text
    participant_id = enrolled.json()["participant_id"]
    assert participant_id and enrolled.json()["state"] == "enrolled"
    assert (enrolled.json()["phone"], enrolled.json()["email"]) == (None, None)  # enrolment holds them now
    again = await http.post(f"{COACHING}/api/signals/{signal_id}/enrolment", json=enrol, headers=coach["headers"])
    assert again.status_code == 200 and again.json()["participant_id"] == participant_id
    assert (
        await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(world["org_id"]))
        == 1
    )

    # The day-1 mail arrives, with the organisation's name in it.
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    message = await raw_mail(http, mails[0]["id"])
    html = message.get_body(preferencelist=("html",))
    assert html is not None and world["name"] in str(html.get_content())
    assert world["name"] in str(message["From"]) or world["name"] in str(html.get_content())

    # The own question and causes are the first version of the personal plan; the timeline shows the intake.
    async def planned() -> dict[str, Any] | None:
        response = await http.get(f"{COACHING}/api/participants/{participant_id}/plan", headers=coach["headers"])
        return response.json() if response.status_code == 200 else None

    plan = await eventually(planned, what="the participant's plan in coaching")
    assert (plan["current"]["own_question"], plan["current"]["causes"]) == (
        QUESTION["own_question"],
        ["loss_of_partner"],
    )
    detail = await http.get(f"{COACHING}/api/participants/{participant_id}", headers=coach["headers"])
    intake_lines = [e["text"] for e in detail.json()["timeline"] if e["kind"] == "intake"]
    assert "Aangemeld voor Meer contact" in intake_lines and "Signaal ontvangen" in intake_lines

    # The events: keyed by the signal, ids and keys only.
    events = await eventually(
        lambda: _signal_events(signal_id, at_least=5), what="the signal's events on meer.coaching"
    )
    assert [e["type"] for e in events] == [
        "signal.received",
        "signal.assigned",
        "signal.contact_made",
        "signal.question_recorded",
        "signal.enrolled",
    ]
    published = json.dumps(events)
    # The phone in the forms it was given and stored in; a shorter fragment such as "1234" also
    # turns up in timestamps' microseconds and in ids.
    for personal in ("Riek", email, "1234 5678", "612345678", "koffie", "overleden"):
        assert personal not in published

    counts = await http.get(f"{COACHING}/api/signals/counts", headers=admin["headers"])
    assert counts.status_code == 200, counts.text
    assert counts.json()["total"] == {
        "received": 2,
        "picked_up_within_5_working_days": 1,
        "contact_made": 1,
        "enrolled": 1,
        "referred": 0,
        "closed": 0,
    }
    assert [(p["partner_organisation"], p["received"]) for p in counts.json()["by_partner_organisation"]] == [
        (PARTNER_ORGANISATION, 2)
    ]
    assert (await http.get(f"{COACHING}/api/signals/counts", headers=coach["headers"])).status_code == 403


async def _signal_events(signal_id: str, *, at_least: int) -> list[dict[str, Any]] | None:
    found = await events_on("meer.coaching", key=signal_id)
    return found if len(found) >= at_least else None


async def test_refer_and_close_blank_what_is_no_longer_needed(http: httpx.AsyncClient) -> None:
    world = await organisation_with_people(http, "Welzijn Doorverwijsdorp")
    admin, coach, partner = world["admin"], world["coach"], world["partner"]
    offer = await http.post(
        f"{ENROLMENT}/api/organisations/{world['org_id']}/local-offers",
        json={"kind": "walking_group", "name": "Wandelgroep De Duinen", "description": "Elke dinsdag"},
        headers=admin["headers"],
    )
    assert offer.status_code == 201, offer.text
    offer_id = offer.json()["id"] if "id" in offer.json() else offer.json()["offer_id"]

    ids = []
    for _ in range(2):
        response = await http.post(
            f"{COACHING}/api/signals", json={**SIGNAL, "email": unique_email()}, headers=partner["headers"]
        )
        ids.append(response.json()["signal_id"])
        await http.post(
            f"{COACHING}/api/signals/{ids[-1]}/assignment", json={"coach_id": coach["id"]}, headers=admin["headers"]
        )
    to_refer, to_close = ids
    # Referring before the first contact does not fit; an offer of no one's is refused.
    early = await http.post(
        f"{COACHING}/api/signals/{to_refer}/referral", json={"offer_id": offer_id}, headers=coach["headers"]
    )
    assert early.status_code == 409, early.text
    today = coaches_today()
    await http.post(
        f"{COACHING}/api/signals/{to_refer}/first-contact",
        json={"discussable": False, "contact_date": today},
        headers=coach["headers"],
    )
    unknown = await http.post(
        f"{COACHING}/api/signals/{to_refer}/referral", json={"offer_id": str(uuid.uuid4())}, headers=coach["headers"]
    )
    assert unknown.status_code == 422, unknown.text

    async def offer_known() -> bool:
        return (
            await db_count(
                "coaching", "SELECT count(*) FROM local_offers_copy WHERE org_id = $1", uuid.UUID(world["org_id"])
            )
            == 1
        )

    await eventually(offer_known, what="the local offers in coaching")
    referred = await http.post(
        f"{COACHING}/api/signals/{to_refer}/referral", json={"offer_id": offer_id}, headers=coach["headers"]
    )
    assert referred.status_code == 200, referred.text
    page = await http.get(f"{COACHING}/signalen/{to_refer}", headers={"Cookie": f"{SESSION_COOKIE}={coach['token']}"})
    assert "Wandelgroep De Duinen" in page.text

    closed = await http.post(
        f"{COACHING}/api/signals/{to_close}/closure", json={"reason": "not_reached"}, headers=coach["headers"]
    )
    assert closed.status_code == 200, closed.text
    (row,) = await db_fetch(
        "coaching", "SELECT first_name, phone, email, note, state FROM signal WHERE signal_id = $1", uuid.UUID(to_close)
    )
    assert tuple(row) == (None, None, None, None, "closed")
    after = await http.post(
        f"{COACHING}/api/signals/{to_close}/first-contact",
        json={"discussable": True, "contact_date": today},
        headers=coach["headers"],
    )
    assert after.status_code == 409
    assert {s["status"] for s in await mine(http, partner)} == {"closed"}  # referred and closed alike: no outcome


async def test_bad_input_gets_a_clear_message_and_writes_nothing(http: httpx.AsyncClient) -> None:
    world = await organisation_with_people(http, "Welzijn Foutdorp")
    partner = world["partner"]
    before = await db_count("coaching", "SELECT count(*) FROM signal")
    cases = [
        ({"consent": False, "first_name": "Riek", "noticed": ["withdraws"]}, "consent"),
        ({**SIGNAL, "phone": "12345"}, "phone"),
        ({**SIGNAL, "phone": None}, "phone"),
        ({**SIGNAL, "noticed": ["made_up"]}, "noticed"),
        ({**SIGNAL, "note": "x" * 1001}, "note"),
        ({**SIGNAL, "first_name": "Riek\x00"}, "first_name"),
    ]
    for body, field in cases:
        response = await http.post(f"{COACHING}/api/signals", json=body, headers=partner["headers"])
        assert response.status_code == 422, (body, response.text)
        assert field in json.dumps(response.json()["error"]["fields"]), (body, response.text)

    # The form says it in Dutch and keeps what was typed.
    cookie = {"Cookie": f"{SESSION_COOKIE}={partner['token']}"}
    page = await http.post(
        f"{COACHING}/signalen/nieuw",
        data={
            "consent": "nee",
            "first_name": "Riek",
            "noticed": "withdraws",
            "csrf_token": csrf_token_for(partner["token"]),
        },
        headers=cookie,
    )
    assert page.status_code == 422
    assert "Zonder toestemming mag u geen naam" in page.text and 'value="Riek"' in page.text

    # A token of an organisation coaching does not know: refused, nothing written.
    from tests.e2e.conftest import mint_staff_token

    stranger = mint_staff_token("org_admin", uuid.uuid4())
    response = await http.post(f"{COACHING}/api/signals", json=SIGNAL, headers={"Authorization": f"Bearer {stranger}"})
    assert response.status_code == 404, response.text
    assert await db_count("coaching", "SELECT count(*) FROM signal") == before


# --- a partner reaches the signal form and their own statuses, nothing else ----------------------

PARTNER_ROUTES = {
    ("GET", "/api/signals/checklists"),
    ("POST", "/api/signals"),
    ("GET", "/api/signals/mine"),
    ("GET", "/signalen"),
    ("GET", "/signalen/nieuw"),
    ("POST", "/signalen/nieuw"),
    ("POST", "/uitloggen"),
}
PUBLIC_ROUTES = {("GET", "/"), ("GET", "/inloggen"), ("POST", "/inloggen")}


def coaching_routes() -> list[tuple[str, str]]:
    """Every route of coaching's routers (the app includes each of them)."""
    from services.coaching import api, intake_routes, offer_pages, outcome_routes, web

    routers = (
        api.router,
        web.router,
        outcome_routes.api_router,
        outcome_routes.web_router,
        intake_routes.api_router,
        intake_routes.web_router,
        offer_pages.router,
    )
    return sorted(
        (method, route.path)  # type: ignore[attr-defined]
        for router in routers
        for route in router.routes
        for method in route.methods  # type: ignore[attr-defined]
        if method != "HEAD"
    )


async def test_a_partner_token_opens_nothing_but_the_signal_form_and_their_statuses(http: httpx.AsyncClient) -> None:
    world = await organisation_with_people(http, "Welzijn Afgeschermd")
    admin, coach, partner = world["admin"], world["coach"], world["partner"]
    participant = await http.post(
        f"{ENROLMENT}/api/organisations/{world['org_id']}/participants",
        json={"first_name": "Pieternel", "email": unique_email(), "coach_id": coach["id"]},
        headers=admin["headers"],
    )
    assert participant.status_code == 201, participant.text
    submitted = await http.post(
        f"{COACHING}/api/signals", json={**SIGNAL, "email": unique_email()}, headers=partner["headers"]
    )
    signal_id = submitted.json()["signal_id"]
    # Another partner of the same organisation sees nothing of this signal.
    other = await partner_login(http, world["org_id"], admin["headers"], name="Otto Signaal")
    assert await mine(http, other) == []

    # The partner's own status list names their own signal, and nothing of the follow-up.
    page = await http.get(f"{COACHING}/signalen", headers={"Cookie": f"{SESSION_COOKIE}={partner['token']}"})
    assert page.status_code == 200 and "Riek" in page.text and "Ontvangen" in page.text
    assert "Signalen van uw organisatie" not in page.text and "Cijfers van uw organisatie" not in page.text

    # Every route (logging out last: it ends the partner's session).
    routes = sorted(coaching_routes(), key=lambda route: route == ("POST", "/uitloggen"))
    assert ("GET", "/signalen/{signal_id}") in routes and ("GET", "/api/participants") in routes
    values = {
        "participant_id": participant.json()["id"],
        "signal_id": signal_id,
        "coach_id": coach["id"],
        "number": "1",
        "kind": "flyer",
        "offer_id": str(uuid.uuid4()),
    }
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        for method, path in routes:
            if (method, path) in PUBLIC_ROUTES:
                continue
            url = COACHING + path.format(**values).replace("/materialen/flyer", "/materialen/folder")
            where = f"{method} {path}"
            client.cookies.clear()
            if path.startswith("/api/"):
                response = await client.request(method, url, json={}, headers=partner["headers"])
            else:
                form = {"csrf_token": csrf_token_for(partner["token"])}
                cookie = {"Cookie": f"{SESSION_COOKIE}={partner['token']}"}
                if method == "GET":
                    response = await client.get(url, headers=cookie)
                else:
                    response = await client.request(method, url, data=form, headers=cookie)
            body = response.text
            assert "Pieternel" not in body, where
            assert "Riek" not in body or (method, path) in PARTNER_ROUTES, where
            if (method, path) in PARTNER_ROUTES:
                assert response.status_code in (200, 201, 303, 422), (where, response.status_code, body[:200])
            elif path.startswith("/api/licensor"):
                assert response.status_code == 401, where  # the licensor's secret, not any staff token
            else:
                assert response.status_code == 403, (where, response.status_code, body[:200])
                if (
                    not path.startswith("/api/")
                    and method == "GET"
                    and "/kerncijfers" not in path
                    and "/rij/" not in path
                    and path != "/live"
                ):
                    assert "Deze pagina is voor coaches" in body, where


async def test_a_call_and_the_plans_goals_can_name_a_local_offer(http: httpx.AsyncClient) -> None:
    world = await organisation_with_people(http, "Welzijn Aanbodstad")
    admin, coach = world["admin"], world["coach"]
    offer = await http.post(
        f"{ENROLMENT}/api/organisations/{world['org_id']}/local-offers",
        json={"kind": "coffee_morning", "name": "Koffieochtend De Linde", "description": "Elke woensdag"},
        headers=admin["headers"],
    )
    assert offer.status_code == 201, offer.text
    offer_id = offer.json()["id"] if "id" in offer.json() else offer.json()["offer_id"]
    enrolled = await http.post(
        f"{ENROLMENT}/api/organisations/{world['org_id']}/participants",
        json={"first_name": "Bert", "email": unique_email(), "coach_id": coach["id"]},
        headers=admin["headers"],
    )
    assert enrolled.status_code == 201, enrolled.text
    participant = enrolled.json()["id"]

    async def ready() -> bool:
        seen = await http.get(f"{COACHING}/api/participants/{participant}", headers=coach["headers"])
        offers = await db_count(
            "coaching", "SELECT count(*) FROM local_offers_copy WHERE org_id = $1", uuid.UUID(world["org_id"])
        )
        return seen.status_code == 200 and offers == 1

    await eventually(ready, what="the participant and the local offers in coaching")
    base = f"{COACHING}/api/participants/{participant}"
    unknown = await http.post(
        f"{base}/plan", json={"goals": "Koffie drinken", "offer_ids": [str(uuid.uuid4())]}, headers=coach["headers"]
    )
    assert unknown.status_code == 422 and "offer_ids" in unknown.text
    saved = await http.post(
        f"{base}/plan", json={"goals": "Koffie drinken", "offer_ids": [offer_id]}, headers=coach["headers"]
    )
    assert saved.status_code == 201 and saved.json()["offer_ids"] == [offer_id], saved.text
    pdf = await http.get(f"{base}/plan.pdf", headers=coach["headers"])
    assert pdf.status_code == 200 and "(Koffieochtend De Linde) Tj" in pdf_text(pdf.content)  # the participant's copy
    call = {
        "called_at": datetime.now(UTC).isoformat(),
        "reached": True,
        "duration_minutes": 10,
        "offer_id": offer_id,
    }
    wrong = await http.post(f"{base}/calls", json={**call, "offer_id": str(uuid.uuid4())}, headers=coach["headers"])
    assert wrong.status_code == 422 and "offer_id" in wrong.text
    logged = await http.post(f"{base}/calls", json=call, headers=coach["headers"])
    assert logged.status_code == 201 and logged.json()["offer_id"] == offer_id, logged.text
    page = await http.get(
        f"{COACHING}/deelnemers/{participant}", headers={"Cookie": f"{SESSION_COOKIE}={coach['token']}"}
    )
    assert page.status_code == 200
    assert "Doorverwezen naar: Koffieochtend De Linde" in page.text  # the call on the timeline
    assert "Lokaal aanbod</dt><dd>Koffieochtend De Linde" in page.text  # the plan version
