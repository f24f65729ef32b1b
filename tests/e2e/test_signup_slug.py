"""Short sign-up addresses on the real stack: the licensor (or the organisation's admin) picks a
slug; the flyer's and poster's QR codes (decoded from the rendered PDF) lead to it; that address
shows the organisation's sign-up page (and takes a sign-up), the old id address still works, an unknown slug gets
the 404 page; bad or taken slugs are refused with a reason."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    add_coach,
    create_organisation,
    db_fetch,
    eventually,
    mint_staff_token,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack


def decode_qr(pdf: bytes, folder: Path) -> list[str]:
    """The QR codes on the first page of a PDF: rendered with pdftoppm, read with zbarimg."""
    assert shutil.which("pdftoppm") and shutil.which("zbarimg"), "poppler-utils and zbar-tools are needed (./meer test)"
    (folder / "kit.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1", "-singlefile", folder / "kit.pdf", folder / "page"],
        check=True,
    )
    found = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", folder / "page.png"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


async def put_slug(
    http: httpx.AsyncClient, org_id: str, slug: str, headers: dict[str, str] = LICENSOR
) -> httpx.Response:
    return await http.put(f"{ENROLMENT}/api/organisations/{org_id}/slug", json={"slug": slug}, headers=headers)


async def test_the_flyer_and_poster_lead_to_the_short_address_of_the_sign_up_page(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Kortweg")
    org_id = organisation["id"]
    slug = f"kortweg-{uuid.uuid4().hex[:8]}"

    response = await put_slug(http, org_id, slug)
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == slug
    assert response.json()["signup_url"] == f"{ENROLMENT}/aanmelden/{slug}"

    async def coaching_knows() -> bool:
        rows = await db_fetch("coaching", "SELECT slug FROM organisation_view WHERE org_id = $1", uuid.UUID(org_id))
        return bool(rows) and rows[0]["slug"] == slug

    await eventually(coaching_knows, what="organisation.slug_changed in coaching")
    admin = {"Authorization": f"Bearer {mint_staff_token('org_admin', uuid.UUID(org_id))}"}
    for kind in ("flyer", "poster"):
        pdf = await http.get(f"{COACHING}/api/organisation/recruitment-kit/{kind}.pdf", headers=admin)
        assert pdf.status_code == 200, pdf.text
        folder = tmp_path / kind
        folder.mkdir()
        assert decode_qr(pdf.content, folder) == [f"{ENROLMENT}/aanmelden/{slug}"]

    page = await http.get(f"{ENROLMENT}/aanmelden/{slug}")
    assert page.status_code == 200
    assert "Welzijn Kortweg" in page.text
    assert f'action="/aanmelden/{slug}"' in page.text
    old = await http.get(f"{ENROLMENT}/aanmelden/{org_id}")
    assert old.status_code == 200 and "Welzijn Kortweg" in old.text

    await add_coach(http, org_id)
    form = {"first_name": "Ans", "email": unique_email(), "send_time": "09:00", "consent": "ja"}
    signed_up = await http.post(f"{ENROLMENT}/aanmelden/{slug}", data=form)
    assert signed_up.status_code == 303, signed_up.text
    assert signed_up.headers["location"] == f"/aanmelden/{slug}/check-je-mail"
    check = await http.get(f"{ENROLMENT}{signed_up.headers['location']}")
    assert check.status_code == 200 and "Kijk in je mail" in check.text

    unknown = await http.get(f"{ENROLMENT}/aanmelden/bestaat-niet-{uuid.uuid4().hex[:6]}")
    assert unknown.status_code == 404
    assert "Deze pagina bestaat niet" in unknown.text


async def test_a_slug_is_validated_unique_and_only_for_the_licensor_or_the_organisations_admin(
    http: httpx.AsyncClient,
) -> None:
    first, second = await create_organisation(http), await create_organisation(http)
    slug = f"welzijn-{uuid.uuid4().hex[:8]}"
    assert (await put_slug(http, first["id"], slug)).status_code == 200
    assert (await put_slug(http, first["id"], slug)).status_code == 200  # the same again changes nothing

    taken = await put_slug(http, second["id"], slug)
    assert taken.status_code == 409
    assert _error_fields(taken.json()) == ["slug"]

    for bad in ("ab", "Welzijn Zee", "admin", str(uuid.uuid4()), "x" * 41):
        refused = await put_slug(http, second["id"], bad)
        assert refused.status_code == 422, bad
        assert _error_fields(refused.json()) == ["slug"], refused.text

    # Real staff members: enrolment refuses tokens of staff it does not know (offboarding).
    coach = (await staff_login(http, second["id"], role="coach"))["headers"]
    assert (await put_slug(http, second["id"], f"mijn-{uuid.uuid4().hex[:6]}", coach)).status_code == 403
    other_admin = (await staff_login(http, first["id"]))["headers"]
    assert (await put_slug(http, second["id"], f"niet-{uuid.uuid4().hex[:6]}", other_admin)).status_code == 403
    own_admin = (await staff_login(http, second["id"]))["headers"]
    chosen = f"eigen-{uuid.uuid4().hex[:6]}"
    response = await put_slug(http, second["id"], chosen, own_admin)
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == chosen


def _error_fields(body: dict[str, Any]) -> list[str]:
    return [field["field"] for field in body["error"]["fields"]]
