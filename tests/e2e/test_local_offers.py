"""An organisation's local offers on the real stack: its admin adds one, the lessons that name that
kind show it (the mailer's copy, through organisation.local_offers_changed), another organisation's
lessons keep their general text, and bad input writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    MAILER,
    create_organisation,
    db_count,
    db_fetch,
    events_on,
    eventually,
    staff_login,
)

pytestmark = pytest.mark.stack

OFFER = {
    "kind": "library",
    "name": "Bibliotheek <Centrum> & Co",
    "description": "Leesclub op dinsdag.\nKoffie staat klaar.",
    "location": "Marktplein 1, Testdorp",
    "schedule": "elke dinsdag 10:00-12:00",
    "phone": "0201234567",
    "website": "https://bieb.example/leesclub",
}
GENERAL_TEXT = "De bibliotheek is meer dan een plek om boeken te lenen."


def offers_url(org_id: str, offer_id: str = "") -> str:
    return f"{ENROLMENT}/api/organisations/{org_id}/local-offers" + (f"/{offer_id}" if offer_id else "")


async def preview(
    http: httpx.AsyncClient, org_id: str, headers: dict[str, str], part: str = "html", local_offers: str = "own"
) -> httpx.Response:
    return await http.get(
        f"{MAILER}/api/organisations/{org_id}/preview",
        params={"day": 25, "part": part, "local_offers": local_offers},
        headers=headers,
    )


async def offer_events(org_id: str) -> list[dict[str, Any]]:
    return await events_on("meer.organisation", key=org_id, event_type="organisation.local_offers_changed")


async def outbox_published() -> bool:
    return not await db_fetch("enrolment", "SELECT 1 FROM outbox LIMIT 1")


async def test_an_added_offer_shows_in_its_lessons_and_another_organisation_keeps_the_general_text(
    http: httpx.AsyncClient,
) -> None:
    org_id = (await create_organisation(http, display_name="Welzijn Bieb"))["id"]
    other_id = (await create_organisation(http, display_name="Welzijn Zonder"))["id"]
    admin = await staff_login(http, org_id)
    other_admin = await staff_login(http, other_id)

    added = await http.post(offers_url(org_id), json=OFFER, headers=admin["headers"])
    assert added.status_code == 201, added.text
    offer = added.json()
    assert offer["phone"] == "020 123 4567" and offer["kind_label"] == "Bibliotheek"
    # Another organisation's admin can neither read nor change this organisation's offers.
    assert (await http.get(offers_url(org_id), headers=other_admin["headers"])).status_code == 403
    assert (await http.post(offers_url(org_id), json=OFFER, headers=other_admin["headers"])).status_code == 403
    assert (await http.delete(offers_url(other_id, offer["id"]), headers=other_admin["headers"])).status_code == 404

    async def shown(part: str) -> str | None:
        response = await preview(http, org_id, admin["headers"], part)
        return response.text if response.status_code == 200 and "Marktplein 1" in response.text else None

    html = await eventually(lambda: shown("html"), what="the offer in the preview of day 25")
    assert "Bibliotheek &lt;Centrum&gt; &amp; Co" in html and "<Centrum>" not in html
    assert "Wanneer: elke dinsdag 10:00-12:00" in html and "Telefoon: 020 123 4567" in html
    assert ">https://bieb.example/leesclub</a>" in html and GENERAL_TEXT in html
    text = await eventually(lambda: shown("text"), what="the offer in the text part")
    assert "BIBLIOTHEEK BIJ JOU IN DE BUURT" in text and "- Bibliotheek <Centrum> & Co" in text

    # The preview also shows the lesson as an organisation without offers gets it.
    general = await preview(http, org_id, LICENSOR, local_offers="none")
    assert general.status_code == 200 and GENERAL_TEXT in general.text and "Marktplein 1" not in general.text

    async def known(org: str) -> httpx.Response | None:
        response = await preview(http, org, LICENSOR)
        return response if response.status_code == 200 else None

    fallback = await eventually(lambda: known(other_id), what="the other organisation's preview")
    assert GENERAL_TEXT in fallback.text and "Marktplein 1" not in fallback.text
    assert "bij jou in de buurt</strong>" not in fallback.text

    # Removing it: the next lessons fall back again; the event carries the whole (now empty) list.
    removed = await http.delete(offers_url(org_id, offer["id"]), headers=admin["headers"])
    assert removed.status_code == 204, removed.text

    async def gone() -> bool:
        response = await preview(http, org_id, LICENSOR)
        return response.status_code == 200 and "Marktplein 1" not in response.text

    await eventually(gone, what="the removed offer gone from the preview")
    await eventually(outbox_published, what="enrolment's outbox published")
    events = await offer_events(org_id)
    assert [len(event["payload"]["offers"]) for event in events] == [1, 0]
    assert events[0]["payload"]["offers"][0]["name"] == OFFER["name"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("website", "bieb.example/leesclub"),
        ("website", "javascript:alert(1)"),
        ("phone", "bel ons maar"),
        ("kind", "zwembad"),
        ("name", "Bieb\r\nBcc: x@example.org"),
        ("description", "Leesclub\u0000"),
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    http: httpx.AsyncClient, field: str, value: str
) -> None:
    org_id = (await create_organisation(http))["id"]

    response = await http.post(offers_url(org_id), json={**OFFER, field: value}, headers=LICENSOR)

    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert await db_count("enrolment", "SELECT count(*) FROM local_offer WHERE org_id::text = $1", org_id) == 0
    await eventually(outbox_published, what="enrolment's outbox published")
    assert not await offer_events(org_id)


async def test_a_change_is_checked_too_and_the_list_has_a_cap(http: httpx.AsyncClient) -> None:
    org_id = (await create_organisation(http))["id"]
    first = (await http.post(offers_url(org_id), json=OFFER, headers=LICENSOR)).json()

    bad = await http.put(offers_url(org_id, first["id"]), json={**OFFER, "website": "ftp://x"}, headers=LICENSOR)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "website"
    changed = await http.put(offers_url(org_id, first["id"]), json={**OFFER, "kind": "walking_group"}, headers=LICENSOR)
    assert changed.status_code == 200 and changed.json()["kind"] == "walking_group"

    for index in range(49):
        response = await http.post(offers_url(org_id), json={**OFFER, "name": f"Aanbod {index}"}, headers=LICENSOR)
        assert response.status_code == 201, response.text
    full = await http.post(offers_url(org_id), json=OFFER, headers=LICENSOR)
    assert full.status_code == 409, full.text
    listed = await http.get(offers_url(org_id), headers=LICENSOR)
    assert len(listed.json()) == 50
