"""Branding on the real stack: an organisation keeps its branding up to date, uploads a
checked logo that enrolment serves publicly, and the next mail carries the change."""

from __future__ import annotations

import hashlib
import io
import os
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
    enrol_starting_now,
    events_on,
    eventually,
    mails_to,
    raw_mail,
    staff_login,
)

pytestmark = pytest.mark.stack
# The mailer holds a mail up to 30 s while the organisation's or coach's events (another
# topic) have not reached it yet; a mail may take that long plus a scheduler round.


def png(size: tuple[int, int] = (240, 80), colour: tuple[int, int, int] = (11, 110, 79)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def day_one_mail(http: httpx.AsyncClient, org_id: str) -> Any:
    """Enrol someone whose first lesson is due at once; their day-1 mail."""
    _, email = await enrol_starting_now(http, org_id, first_name="Ans")
    mails = await eventually(lambda: mails_to(http, email), what="a day-1 mail")
    return await raw_mail(http, mails[0]["id"])


async def outbox_published() -> bool:
    """Everything enrolment committed has reached Kafka."""
    return not await db_fetch("enrolment", "SELECT 1 FROM outbox LIMIT 1")


async def upload_logo(
    http: httpx.AsyncClient, org_id: str, data: bytes, headers: dict[str, str], name: str = "logo.png"
) -> httpx.Response:
    return await http.put(
        f"{ENROLMENT}/api/organisations/{org_id}/logo", files={"file": (name, data, "image/png")}, headers=headers
    )


async def test_a_branding_change_and_a_new_logo_reach_the_next_mail(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Oud")
    org_id = organisation["id"]
    await add_coach(http, org_id)
    before = await day_one_mail(http, org_id)
    assert "Welzijn Oud" in before["From"]

    admin = await staff_login(http, org_id)
    changed = await http.patch(
        f"{ENROLMENT}/api/organisations/{org_id}/branding",
        json={
            "display_name": "Buurtkracht Oost",
            "brand_colour": "#0b6e4f",
            "contact_phone": "010 765 4321",
            "contact_person": "Sanne de Vries",
            "website": "https://buurtkracht.example",
            "sender_name": "Sanne van Buurtkracht",
            "reply_to": "hallo@buurtkracht.example",
        },
        headers=admin["headers"],
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["contact_person"] == "Sanne de Vries" and changed.json()["text_colour"] == "#ffffff"
    image = png()
    uploaded = await upload_logo(http, org_id, image, admin["headers"])
    assert uploaded.status_code == 200, uploaded.text
    logo_url = uploaded.json()["logo_url"]
    assert logo_url == f"{ENROLMENT}/logos/{org_id}/{hashlib.sha256(image).hexdigest()}.png"

    served = await http.get(logo_url)
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"

    await eventually(outbox_published, what="enrolment's outbox published")
    events = await events_on("meer.organisation", key=org_id, event_type="organisation.branding_changed")
    assert len(events) == 2, "one event per change"
    latest = events[-1]["payload"]["branding"]
    assert latest["display_name"] == "Buurtkracht Oost" and latest["logo_url"] == logo_url
    assert latest["reply_to"] == "hallo@buurtkracht.example" and latest["contact_phone"] == "010 765 4321"

    # The next mail the organisation sends carries the new branding (the mailer's side of the contract).
    after = await day_one_mail(http, org_id)
    html = after.get_body(preferencelist=("html",)).get_content()
    assert "Sanne van Buurtkracht" in after["From"] and after["Reply-To"] == "hallo@buurtkracht.example"
    assert logo_url in html and "#0b6e4f" in html and "010 765 4321" in html and "Buurtkracht Oost" in html

    # A logo once sent stays available at its address, also after another upload.
    second = await upload_logo(http, org_id, png(colour=(200, 30, 30)), admin["headers"])
    assert second.json()["logo_url"] != logo_url
    assert (await http.get(logo_url)).status_code == 200
    removed = await http.delete(f"{ENROLMENT}/api/organisations/{org_id}/logo", headers=admin["headers"])
    assert removed.status_code == 200 and removed.json()["logo_url"] is None


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415, "PNG or JPEG"),
        (
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
            415,
            "PNG or JPEG",
        ),
        (b"\x89PNG\r\n\x1a\nniet echt", 415, "PNG or JPEG"),
        (png((3000, 40)), 422, "pixels"),
        (png((8, 8)), 422, "pixels"),
        (os.urandom(1_100_000), 413, "bytes"),
    ],
)
async def test_a_logo_that_is_not_a_sensible_png_or_jpeg_is_refused(
    http: httpx.AsyncClient, data: bytes, status: int, words: str
) -> None:
    organisation = await create_organisation(http)
    response = await upload_logo(http, organisation["id"], data, LICENSOR, name="logo.svg")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["fields"][0]["field"] == "logo"
    branding = await http.get(f"{ENROLMENT}/api/organisations/{organisation['id']}/branding", headers=LICENSOR)
    assert branding.json()["logo_url"] is None
    assert not await events_on("meer.organisation", key=organisation["id"], event_type="organisation.branding_changed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"brand_colour": "red"}, "brand_colour"),
        ({"website": "javascript:alert(1)"}, "website"),
        ({"contact_phone": "123"}, "contact_phone"),
        ({"reply_to": "geen adres"}, "reply_to"),
        ({"display_name": None}, "display_name"),
    ],
)
async def test_invalid_branding_is_refused_with_the_field_named(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    organisation = await create_organisation(http)
    response = await http.patch(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/branding", json=body, headers=LICENSOR
    )
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["error"]["fields"]]
    assert not await events_on("meer.organisation", key=organisation["id"], event_type="organisation.branding_changed")


async def test_an_unchanged_branding_publishes_nothing(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    same = await http.patch(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/branding",
        json={"display_name": organisation["display_name"]},
        headers=LICENSOR,
    )
    assert same.status_code == 200
    await eventually(
        lambda: events_on("meer.organisation", key=organisation["id"], event_type="organisation.licensed"),
        what="organisation.licensed",
    )
    assert not await events_on("meer.organisation", key=organisation["id"], event_type="organisation.branding_changed")
