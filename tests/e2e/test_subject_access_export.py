"""The subject-access export on the real stack: a participant's enrolment, mail, open,
report, call and plan come back in one complete JSON file and a Dutch page, assembled
through meer.export with every part sealed (nothing readable on the topic); only the
organisation's admin (or the licensor) gets it, and erasure deletes it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from shared.events import Envelope, ExportPartProvided, ExportRequested, Topic
from shared.export_parts import new_key_pair, unseal
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    MAIL_CLIENT,
    add_coach,
    create_organisation,
    db_count,
    db_fetch,
    enrol_starting_now,
    eventually,
    mails_to,
    mint_staff_token,
    publish,
    raw_mail,
    read_topic,
    staff_login,
    tracking_links,
)

pytestmark = pytest.mark.stack

FIRST_NAME = "Quirijntje"
PHONE = "06 1298 7654"
CALL_NOTES = "Praatte over haar kleinzoon in Deventer."
PLAN_GOALS = "Elke donderdag naar de zangochtend in het wijkcentrum."
REPORT_NOTE = "Ik heb de buurman bij de brievenbus gegroet."


async def _journey(http: httpx.AsyncClient) -> dict[str, Any]:
    """Enrol, receive and open the day-1 mail, report the assignment, log a call, write a plan."""
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await add_coach(http, org_id)
    participant_id, email = await enrol_starting_now(http, org_id, first_name=FIRST_NAME)
    response = await http.patch(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}", json={"phone": PHONE}, headers=LICENSOR
    )
    assert response.status_code == 200, response.text
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    links = tracking_links(await raw_mail(http, mails[0]["id"]))
    assert (await http.get(links["o"], headers=MAIL_CLIENT)).status_code == 200
    reported = await http.post(links["r"], data={"score": "4", "note": REPORT_NOTE}, headers=MAIL_CLIENT)
    assert reported.status_code == 200, reported.text

    coach_headers = {"Authorization": f"Bearer {mint_staff_token('coach', UUID(org_id), UUID(coach['id']))}"}
    call = {
        "called_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "reached": True,
        "duration_minutes": 20,
        "planned_call": 1,
        "lessons_discussed": [1],
        "notes": CALL_NOTES,
        "next_agreement": "Volgende week weer bellen.",
    }

    async def call_logged() -> bool:
        # Coaching accepts a call once the enrolment reached its projection.
        url = f"{COACHING}/api/participants/{participant_id}/calls"
        response = await http.post(url, json=call, headers=coach_headers)
        return response.status_code == 201

    await eventually(call_logged, what="coaching accepting the call")
    plan = {
        "noticed_how": "Haar dochter belde de organisatie.",
        "own_question": "Ik wil weer mensen om me heen.",
        "causes": ["loss_of_partner"],
        "goals": PLAN_GOALS,
        "steps": "Eerst samen met de coach gaan.",
    }
    response = await http.post(f"{COACHING}/api/participants/{participant_id}/plan", json=plan, headers=coach_headers)
    assert response.status_code == 201, response.text

    async def open_recorded() -> bool:
        count = "SELECT count(*) FROM open_record WHERE participant_id = $1"
        return await db_count("tracking", count, participant_id) > 0

    await eventually(open_recorded, what="tracking recording the open")
    return {"org_id": org_id, "participant_id": participant_id, "email": email}


async def test_an_export_holds_what_every_service_keeps_and_the_log_holds_it_sealed(http: httpx.AsyncClient) -> None:
    journey = await _journey(http)
    org_id, participant_id, email = journey["org_id"], journey["participant_id"], journey["email"]
    admin = await staff_login(http, org_id, role="org_admin")

    requested = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/exports", headers=admin["headers"]
    )
    assert requested.status_code == 202, requested.text
    export = requested.json()
    assert export["status"] == "pending" and export["parts_received"] == ["enrolment"]
    assert export["missing"] == ["mailer", "tracking", "coaching"]
    status_url = f"{ENROLMENT}/api/organisations/{org_id}/exports/{export['id']}"

    async def complete() -> dict[str, Any] | None:
        response = await http.get(status_url, headers=admin["headers"])
        assert response.status_code == 200, response.text
        return dict(response.json()) if response.json()["status"] == "complete" else None

    done = await eventually(complete, what="every part of the export")
    assert done["missing"] == [] and done["json_url"] == f"/api/organisations/{org_id}/exports/{export['id']}.json"

    response = await http.get(f"{status_url}.json", headers=admin["headers"])
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    bundle = response.json()
    parts = bundle["parts"]
    assert list(parts) == ["enrolment", "mailer", "tracking", "coaching"]
    (enrolled,) = parts["enrolment"]["tables"]["participant"]
    assert (enrolled["first_name"], enrolled["email"], enrolled["id"]) == (FIRST_NAME, email, str(participant_id))
    assert enrolled["phone"] is not None and "confirm_token_hash" not in enrolled
    deliveries = parts["mailer"]["tables"]["delivery"]
    assert [(d["day"], d["status"]) for d in deliveries if d["status"] == "sent"] == [(1, "sent")]
    assert parts["mailer"]["tables"]["recipient"][0]["email"] == email
    tracking = parts["tracking"]["tables"]
    assert [o["day"] for o in tracking["open_record"]] == [1]
    assert [(r["day"], r["score"], r["note"]) for r in tracking["assignment_report"]] == [(1, 4, REPORT_NOTE)]
    coaching = parts["coaching"]["tables"]
    assert [(c["reached"], c["notes"]) for c in coaching["call_log"]] == [(True, CALL_NOTES)]
    assert [(p["version"], p["goals"]) for p in coaching["plan_version"]] == [(1, PLAN_GOALS)]
    assert coaching["dashboard_row"][0]["first_name"] == FIRST_NAME
    assert bundle["questionnaires"] == []

    page = await http.get(f"{status_url}.html", headers=admin["headers"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for dutch in (
        '<html lang="nl">',
        f"Jouw gegevens bij Meer contact: {FIRST_NAME}",
        "Je aanmelding en toestemming",
        "Mails die we je stuurden",
        "Mails die je opende",
        "Hoe de opdrachten gingen",
        "Gesprekken met je coach",
        "Je persoonlijke plan",
        CALL_NOTES,
        PLAN_GOALS,
        email,
    ):
        assert dutch in page.text, dutch

    # The private key is gone and so are the sealed parts: what is on Kafka stays unreadable.
    (row,) = await db_fetch("enrolment", "SELECT private_key FROM export_request WHERE id = $1", UUID(export["id"]))
    assert row["private_key"] is None
    assert await db_count("enrolment", "SELECT count(*) FROM export_part WHERE export_id = $1", UUID(export["id"])) == 0

    records = [r for r in await read_topic(Topic.EXPORT) if r.key == str(participant_id).encode()]
    kinds = sorted(
        (envelope["type"], envelope["payload"].get("service", ""))
        for envelope in (json.loads(r.value or b"{}") for r in records)
    )
    assert kinds == [
        ("export.part_provided", "coaching"),
        ("export.part_provided", "mailer"),
        ("export.part_provided", "tracking"),
        ("export.requested", ""),
    ]
    everything = b"".join((r.value or b"") + b"".join(v for _, v in r.headers) for r in records)
    for detail in (email, FIRST_NAME, "12987654", CALL_NOTES, PLAN_GOALS, REPORT_NOTE):
        assert detail.encode() not in everything, f"{detail!r} readable on {Topic.EXPORT}"

    # Erasure deletes the export, bundle and all.
    erased = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/erase", headers=admin["headers"]
    )
    assert erased.status_code == 200, erased.text
    assert (await http.get(status_url, headers=admin["headers"])).status_code == 404
    left = "SELECT count(*) FROM export_request WHERE participant_id = $1"
    assert await db_count("enrolment", left, participant_id) == 0


async def test_only_the_organisations_admin_gets_an_export(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    participant_id, _ = await enrol_starting_now(http, org_id, first_name="Annigje")
    request_path = f"/api/organisations/{org_id}/participants/{participant_id}/exports"
    requested = await http.post(f"{ENROLMENT}{request_path}", headers=LICENSOR)
    assert requested.status_code == 202, requested.text
    export_id = requested.json()["id"]

    coach = await staff_login(http, org_id, role="coach")
    assert (await http.post(f"{ENROLMENT}{request_path}", headers=coach["headers"])).status_code == 403
    for suffix in ("", ".json", ".html"):
        url = f"{ENROLMENT}/api/organisations/{org_id}/exports/{export_id}{suffix}"
        assert (await http.get(url, headers=coach["headers"])).status_code == 403

    other = await create_organisation(http)
    other_admin = await staff_login(http, other["id"], role="org_admin")
    foreign = f"{ENROLMENT}/api/organisations/{other['id']}/participants/{participant_id}/exports"
    assert (await http.post(foreign, headers=other_admin["headers"])).status_code == 404
    for suffix in ("", ".json", ".html"):
        url = f"{ENROLMENT}/api/organisations/{other['id']}/exports/{export_id}{suffix}"
        assert (await http.get(url, headers=other_admin["headers"])).status_code == 404
    # Naming the other organisation itself is refused as everywhere.
    assert (await http.post(f"{ENROLMENT}{request_path}", headers=other_admin["headers"])).status_code == 403
    missing = f"{ENROLMENT}/api/organisations/{org_id}/exports/not-an-id"
    assert (await http.get(missing, headers=LICENSOR)).status_code == 422


async def _parts_of(export_id: UUID, private_key: bytes) -> dict[str, dict[str, Any]] | None:
    """The opened parts of an export on the topic, once mailer, tracking and coaching answered."""
    found = {}
    for record in await read_topic(Topic.EXPORT):
        envelope = Envelope.model_validate_json(record.value or b"{}")
        if envelope.type == ExportPartProvided.TYPE and envelope.payload["export_id"] == str(export_id):
            found[envelope.payload["service"]] = unseal(private_key, envelope.payload["sealed"])
    return found if len(found) == 3 else None


async def test_a_service_answers_with_an_empty_part_for_whom_it_does_not_know_in_that_organisation(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http)
    org_id = UUID(organisation["id"])
    await add_coach(http, str(org_id))
    participant_id, _ = await enrol_starting_now(http, str(org_id), first_name="Marijke")

    async def known_to_mailer_and_coaching() -> bool:
        mailer = await db_count("mailer", "SELECT count(*) FROM recipient WHERE participant_id = $1", participant_id)
        coaching = "SELECT count(*) FROM dashboard_row WHERE participant_id = $1"
        return mailer == 1 and await db_count("coaching", coaching, participant_id) == 1

    await eventually(known_to_mailer_and_coaching, what="the enrolment at the mailer and coaching")
    private_key, public_key = new_key_pair()
    never_known, other_org = uuid4(), uuid4()
    requests = {
        uuid4(): (never_known, org_id),  # nobody knows this participant
        uuid4(): (participant_id, other_org),  # known, but in another organisation than the request says
        uuid4(): (participant_id, org_id),  # the real thing, for contrast
    }
    await publish(
        Envelope.wrap(ExportRequested(export_id=export_id, public_key=public_key), org_id=org, participant_id=person)
        for export_id, (person, org) in requests.items()
    )
    answers = {}
    for export_id in requests:
        answers[export_id] = await eventually(
            lambda export_id=export_id: _parts_of(export_id, private_key), timeout=60, what="three parts"
        )
    never, foreign, real = (answers[export_id] for export_id in requests)
    for parts in (never, foreign):
        assert {service: part["tables"] for service, part in parts.items()} == {
            "mailer": {},
            "tracking": {},
            "coaching": {},
        }
    assert real["mailer"]["tables"]["recipient"][0]["first_name"] == "Marijke"
    assert real["coaching"]["tables"]["dashboard_row"][0]["first_name"] == "Marijke"
    # The copies of the contact details (meer.contact) are the participant's data too.
    assert real["mailer"]["tables"]["contact_copy"][0]["name"] == "Marijke"
    assert real["coaching"]["tables"]["contact_view"][0]["name"] == "Marijke"


async def test_an_export_past_its_retention_is_deleted_with_its_key(http: httpx.AsyncClient) -> None:
    from deploy.local.stack import database_url
    from services.enrolment.exports import delete_expired_exports
    from shared.db import Database, utcnow

    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    participant_id, _ = await enrol_starting_now(http, org_id, first_name="Hendrika")
    requested = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/exports", headers=LICENSOR
    )
    assert requested.status_code == 202, requested.text
    kept = requested.json()["id"]
    requested = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/exports", headers=LICENSOR
    )
    assert requested.status_code == 202, requested.text
    expired = requested.json()["id"]
    await db_fetch(
        "enrolment", "UPDATE export_request SET delete_after = now() - interval '1 second' WHERE id = $1", UUID(expired)
    )

    database = Database(database_url("enrolment"), pool_size=1)
    try:
        async with database.session() as session:
            assert await delete_expired_exports(session=session, now=utcnow()) >= 1
            await session.commit()
    finally:
        await database.dispose()
    rows = await db_fetch("enrolment", "SELECT id FROM export_request WHERE participant_id = $1", participant_id)
    assert [str(row["id"]) for row in rows] == [kept]
    url = f"{ENROLMENT}/api/organisations/{org_id}/exports"
    assert (await http.get(f"{url}/{expired}", headers=LICENSOR)).status_code == 404
    assert (await http.get(f"{url}/{kept}", headers=LICENSOR)).status_code == 200
