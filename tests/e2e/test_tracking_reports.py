"""Assignment reports on the real stack: the branded Dutch page, an answer published as
assignment.reported, a second answer for the same day replacing the first."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest

from shared.events import AssignmentReported, Envelope, Topic
from tests.e2e.conftest import TRACKING, create_organisation, db_count, db_fetch, eventually, read_topic, tracking_token

pytestmark = pytest.mark.stack


async def reports_of(participant_id: UUID) -> list[Envelope]:
    found = []
    for record in await read_topic(Topic.ENGAGEMENT):
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == AssignmentReported.TYPE and envelope.participant_id == participant_id:
            found.append(envelope)
    return sorted(found, key=lambda e: e.occurred_at)


async def published_all() -> bool:
    return await db_count("tracking", "SELECT count(*) FROM outbox") == 0


async def test_a_report_is_published_and_a_second_answer_replaces_the_first(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, brand_colour="#7a3e9d", display_name="Buurtwerk De Linde")
    participant_id, delivery_id = uuid4(), uuid4()
    token = tracking_token(
        "report", delivery_id=delivery_id, participant_id=participant_id, org_id=UUID(organisation["id"]), day=5
    )
    url = f"{TRACKING}/r/{token}"

    async def branded_page() -> str | None:
        page = await http.get(url)
        assert page.status_code == 200
        return page.text if "Buurtwerk De Linde" in page.text else None

    page = await eventually(branded_page, what="the report page in the organisation's branding")
    assert "Hoe ging de opdracht van dag 5?" in page and "#7a3e9d" in page
    for words in ("Niet gelukt", "Een klein beetje gelukt", "Redelijk gelukt", "Goed gelukt", "Heel goed gelukt"):
        assert words in page
    assert 'name="note"' in page and 'maxlength="500"' in page

    first = await http.post(url, data={"score": "4", "note": "Ik heb de buurvrouw gegroet."})
    assert first.status_code == 200 and "Dank je wel" in first.text and "Goed gelukt" in first.text
    second = await http.post(url, data={"score": "2", "note": ""})
    assert second.status_code == 200 and "aangepast" in second.text
    # The same answer once more (a double click) is no new report.
    assert (await http.post(url, data={"score": "2"})).status_code == 200

    async def two_reports() -> list[Envelope] | None:
        found = await reports_of(participant_id)
        return found if len(found) == 2 else None

    reports = await eventually(two_reports, what="two assignment.reported events")
    assert [(r.payload["score"], r.payload["note"]) for r in reports] == [
        (4, "Ik heb de buurvrouw gegroet."),
        (2, None),
    ]
    assert all(r.payload["day"] == 5 and r.payload["delivery_id"] == str(delivery_id) for r in reports)
    rows = await db_fetch(
        "tracking", "SELECT score, note FROM assignment_report WHERE participant_id = $1", participant_id
    )
    assert [(r["score"], r["note"]) for r in rows] == [(2, None)], "one answer per day, the latest"
    await eventually(published_all, what="tracking's outbox to be published")
    assert len(await reports_of(participant_id)) == 2

    # The page shows the answer given, ready to change.
    again = await http.get(url)
    assert 'value="2" required checked' in again.text and "al antwoord op gegeven" in again.text


async def test_an_incomplete_report_is_refused_with_a_reason_and_publishes_nothing(http: httpx.AsyncClient) -> None:
    participant_id = uuid4()
    url = f"{TRACKING}/r/{tracking_token('report', participant_id=participant_id)}"
    for form, reason in (
        ({"note": "vergeten te kiezen"}, "Kies eerst hoe de opdracht ging."),
        ({"score": "9"}, "Kies eerst hoe de opdracht ging."),
        ({"score": "3", "note": "x" * 501}, "Je toelichting is te lang."),
    ):
        refused = await http.post(url, data=form)
        assert refused.status_code == 422 and reason in refused.text
    assert (await http.post(f"{TRACKING}/r/{tracking_token('open')}", data={"score": "3"})).status_code == 404
    await eventually(published_all, what="tracking's outbox to be published")
    assert await reports_of(participant_id) == []
    assert (
        await db_count("tracking", "SELECT count(*) FROM assignment_report WHERE participant_id = $1", participant_id)
        == 0
    )
