"""The three ways in, on the real stack: the API, a CSV import (by API upload and by the
CLI) with a report per row, and the public Dutch sign-up page with double opt-in."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.enrolment.app import delete_unconfirmed_signups
from services.enrolment.settings import EnrolmentSettings
from shared.db import Database
from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    PG_SERVER,
    add_coach,
    contact_of,
    create_organisation,
    db_fetch,
    events_on,
    eventually,
    mailed_link,
    mails_to,
    people_with_address,
    raw_mail,
    unique_email,
    unique_source,
)

pytestmark = pytest.mark.stack
# The mailer holds a mail up to 30 s while the organisation's or coach's events (another
# topic) have not reached it yet; a mail may take that long plus a scheduler round.


def body_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"the mail has no {kind} part"
    return str(part.get_content())


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tomorrow_in_amsterdam() -> date:
    return datetime.now(ZoneInfo("Europe/Amsterdam")).date() + timedelta(days=1)


async def enrolled_events(participant_id: str) -> list[dict[str, Any]]:
    return await events_on("meer.participant", key=participant_id, event_type="participant.enrolled")


async def org_participants(org_id: str) -> list[asyncpg.Record]:
    return await db_fetch(
        "enrolment", "SELECT id, email, status, source FROM participant WHERE org_id = $1", uuid.UUID(org_id)
    )


# --- 1. the API --------------------------------------------------------------------------------------------


async def test_enrolment_through_the_api_fills_in_defaults_and_publishes_one_event(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, variants=["op-afstand", "standaard"])
    org_id = organisation["id"]
    busy, quiet = await add_coach(http, org_id, name="Coach Druk"), await add_coach(http, org_id, name="Coach Rustig")
    first = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Eerste", "email": unique_email(), "coach_id": busy["id"]},
        headers=LICENSOR,
    )
    assert first.status_code == 201

    email = unique_email()
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={"first_name": "Ans", "email": email.upper(), "phone": "06-1234 5678"},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    participant = response.json()
    assert participant["email"] == email and participant["phone"] == "+31612345678"
    assert participant["send_time"] == "08:00:00" and participant["timezone"] == "Europe/Amsterdam"
    assert participant["start_date"] == str(tomorrow_in_amsterdam())
    assert participant["variant"] == "op-afstand", "the licence's first variant"
    assert participant["coach_id"] == quiet["id"], "the coach with the fewest active participants"
    assert participant["status"] == "enrolled"

    (event,) = await eventually(lambda: enrolled_events(participant["id"]), what="participant.enrolled")
    assert event["participant_id"] == participant["id"] and event["org_id"] == org_id
    assert event["version"] == 2 and event["payload"] == {
        "coach_id": quiet["id"],
        "start_date": participant["start_date"],
        "send_time": "08:00:00",
        "timezone": "Europe/Amsterdam",
        "variant": "op-afstand",
        "signal_id": None,
    }
    contact = await eventually(lambda: contact_of(participant["id"]), what="contact.details_set")
    assert contact == {
        "person_id": participant["id"],
        "kind": "participant",
        "name": "Ans",
        "email": email,
        "phone": "+31612345678",
    }

    listed = await http.get(
        f"{ENROLMENT}/api/organisations/{org_id}/participants", params={"limit": 1, "offset": 1}, headers=LICENSOR
    )
    assert listed.status_code == 200
    page = listed.json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert [p["id"] for p in page["items"]] == [participant["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "12345"}, "phone"),
        ({"phone": "bel me maar"}, "phone"),
        ({"start_date": "2020-01-01"}, "start_date"),
        ({"send_time": "8 uur"}, "send_time"),
    ],
)
async def test_bad_fields_are_refused_with_the_field_named(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        json={"first_name": "Ans", "email": unique_email(), **body},
        headers=LICENSOR,
    )
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["error"]["fields"]]
    assert not await org_participants(organisation["id"])


# --- 2. CSV ----------------------------------------------------------------------------------------------------


async def upload(
    http: httpx.AsyncClient, org_id: str, data: bytes, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/import",
        files={"file": ("deelnemers.csv", data, "text/csv")},
        params=params,
        headers=headers or LICENSOR,
    )


def spreadsheet(rows: list[str], header: str = "Voornaam;E-mailadres;Telefoonnummer;Startdatum;Coach") -> bytes:
    """A Dutch Excel 'CSV UTF-8' export: BOM, semicolons, CRLF."""
    return ("\ufeff" + "\r\n".join([header, *rows]) + "\r\n").encode()


async def test_csv_upload_reports_every_row_and_imports_whole_rows_only(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await add_coach(http, org_id)
    good = [unique_email() for _ in range(3)]
    start = (date.today() + timedelta(days=7)).strftime("%d-%m-%Y")
    data = spreadsheet(
        [
            f"Ans;{good[0]};06 12345678;{start};{coach['email']}",
            "Bep;bep@@example.org;;;",
            f"Cor;{unique_email()};12345;;",
            f"Dirk;{good[1]};;31-02-2026;",
            f"Eef;{good[1]};;;",
            f"Fenna;{unique_email()};;;niemand@example.org",
            f"José;{good[2]};+32 470 12 34 56;;",
        ]
    )
    response = await upload(http, org_id, data)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["mode"] == "valid_rows" and report["rows"] == 7
    imported = {row["row"]: row["participant_id"] for row in report["imported"]}
    assert sorted(imported) == [2, 8]
    rejected = {row["row"]: {p["field"] for p in row["problems"]} for row in report["rejected"]}
    assert rejected == {3: {"email"}, 4: {"phone"}, 5: {"start_date"}, 6: {"email"}, 7: {"coach"}}

    # Exactly the reported rows are in the database, each with exactly one participant.enrolled.
    rows = await org_participants(org_id)
    assert sorted(str(row["id"]) for row in rows) == sorted(imported.values())
    assert {row["email"] for row in rows} == {good[0], good[2]}
    assert {row["source"] for row in rows} == {"csv"}
    for participant_id in imported.values():
        events = await eventually(partial(enrolled_events, participant_id), what="participant.enrolled")
        assert len(events) == 1
    ans = (await enrolled_events(imported[2]))[0]["payload"]
    assert (await eventually(lambda: contact_of(imported[2]), what="Ans's contact details"))["phone"] == "+31612345678"
    assert ans["start_date"] == str(date.today() + timedelta(days=7))
    assert ans["coach_id"] == coach["id"]

    # The same file again: the imported addresses are refused as already enrolled, nothing doubles.
    again = (await upload(http, org_id, data)).json()
    assert again["imported"] == []
    assert {p["reason"] for row in again["rejected"] if row["row"] in (2, 8) for p in row["problems"]} == {
        "this address is already enrolled here"
    }
    assert len(await org_participants(org_id)) == 2


async def test_all_or_nothing_and_dry_run_import_nothing(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    data = f"voornaam,email\nAns,{unique_email()}\nBep,geen-adres\n".encode()  # commas, no BOM
    strict = await upload(http, org_id, data, mode="all_or_nothing")
    assert strict.status_code == 200
    assert strict.json()["imported"] == [] and strict.json()["would_import"] == 1
    assert [row["row"] for row in strict.json()["rejected"]] == [3]
    dry = await upload(http, org_id, f"voornaam,email\nAns,{unique_email()}\n".encode(), dry_run="true")
    assert dry.json()["dry_run"] is True and dry.json()["would_import"] == 1 and dry.json()["imported"] == []
    assert not await org_participants(org_id)
    strict_ok = await upload(http, org_id, f"voornaam,email\nAns,{unique_email()}\n".encode(), mode="all_or_nothing")
    assert len(strict_ok.json()["imported"]) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"voornaam;telefoon\nAns;0612345678\n", "no column for email"),
        ("voornaam;email\nJosé;jose@example.org\n".encode("cp1252"), "not UTF-8"),
        (b"", "empty"),
    ],
)
async def test_a_file_that_cannot_be_read_is_refused_whole(http: httpx.AsyncClient, data: bytes, message: str) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    response = await upload(http, organisation["id"], data)
    assert response.status_code == 422
    error = response.json()["error"]
    assert message in error["message"] and error["fields"][0]["field"] == "file"
    assert not await org_participants(organisation["id"])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEER_DATABASE_URL": PG_SERVER.replace("postgresql://", "postgresql+asyncpg://", 1) + "/meer_enrolment",
        "MEER_ENROLMENT_BASE_URL": ENROLMENT,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.enrolment.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


async def test_csv_import_from_the_command_line(http: httpx.AsyncClient, tmp_path: Any) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    good = unique_email()
    sheet = tmp_path / "lijst.csv"
    sheet.write_bytes(spreadsheet([f"Ans;{good};;;", "Bep;bep@;;;"]))
    done = cli("import-csv", str(sheet), "--org", org_id)
    assert done.returncode == 2, done.stderr
    assert "row 3: email" in done.stdout and "imported 1 of 2 rows; 1 rejected" in done.stdout
    assert "importing" in done.stderr, "a progress bar"
    (row,) = await org_participants(org_id)
    assert row["email"] == good and row["source"] == "csv"
    await eventually(lambda: enrolled_events(str(row["id"])), what="participant.enrolled from the CLI import")

    bad = tmp_path / "geen-email.csv"
    bad.write_text("voornaam;telefoon\nAns;0612345678\n")
    refused = cli("import-csv", str(bad), "--org", org_id)
    assert refused.returncode == 1 and "no column for email" in refused.stderr
    missing = cli("import-csv", str(tmp_path / "bestaat-niet.csv"), "--org", org_id)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert len(await org_participants(org_id)) == 1


# --- 3. the public sign-up page ------------------------------------------------------------------------------


async def confirmation_url(http: httpx.AsyncClient, participant_email: str) -> str:
    return await mailed_link(http, participant_email, "/bevestigen/")


async def sign_up(http: httpx.AsyncClient, org_id: str, email: str, **fields: str) -> httpx.Response:
    form = {"first_name": "Ans", "email": email, "phone": "06 12345678", "send_time": "09:00", "consent": "ja"}
    return await http.post(f"{ENROLMENT}/aanmelden/{org_id}", data={**form, **fields}, headers=unique_source())


async def test_public_sign_up_starts_nothing_before_the_mail_link_is_confirmed(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Aanmelddorp", brand_colour="#ffd400")
    org_id = organisation["id"]
    await add_coach(http, org_id)

    assert organisation["signup_url"] == f"{ENROLMENT}/aanmelden/{org_id}"
    form = await http.get(organisation["signup_url"])
    assert form.status_code == 200
    html = form.text
    assert '<html lang="nl">' in html and "Welzijn Aanmelddorp" in html and "#ffd400" in html
    assert "--on-brand: #000000" in html, "dark text on a light brand colour"
    for field in ("first_name", "email", "phone", "send_time", "consent"):
        assert f'<label for="{field}"' in html, f"a label for {field}"
    assert "toestemming" in html

    email = unique_email()
    no_consent = await sign_up(http, org_id, email, consent="")
    assert no_consent.status_code == 422 and "Zet een vinkje" in no_consent.text
    bad_address = await sign_up(http, org_id, "ans@", first_name="")
    assert bad_address.status_code == 422
    assert "Vul een geldig e-mailadres in" in bad_address.text and "Vul je voornaam in" in bad_address.text
    assert not await org_participants(org_id)

    response = await sign_up(http, org_id, email)
    assert response.status_code == 303
    assert response.headers["location"] == f"/aanmelden/{org_id}/check-je-mail"
    check = await http.get(f"{ENROLMENT}{response.headers['location']}")
    assert check.status_code == 200 and "Kijk in je mail" in check.text

    (pending,) = await org_participants(org_id)
    assert pending["status"] == "pending" and pending["source"] == "signup"
    # The mailer sends the confirmation mail with the link (its side of the contract).
    url = await confirmation_url(http, email)
    assert url.startswith(f"{ENROLMENT}/bevestigen/")
    assert not await enrolled_events(str(pending["id"])), "nothing starts before the confirmation"
    # The mail follows the same text-colour rule as the page: dark text on the yellow band and button.
    (mail,) = await mails_to(http, email)
    mail_html = (await raw_mail(http, mail["id"])).get_body(preferencelist=("html",))
    assert mail_html is not None and "background:#ffd400;color:#000000;" in str(mail_html.get_content())

    # Opening the link shows a button; a mail scanner that fetches it confirms nothing.
    shown = await http.get(url)
    assert shown.status_code == 200 and "Ja, ik doe mee" in shown.text
    assert (await org_participants(org_id))[0]["status"] == "pending"

    confirmed = await http.post(url)
    assert confirmed.status_code == 200 and "Welkom, Ans!" in confirmed.text and "09:00" in confirmed.text
    (row,) = await org_participants(org_id)
    assert row["status"] == "enrolled"
    (event,) = await eventually(lambda: enrolled_events(str(row["id"])), what="participant.enrolled after confirming")
    assert event["payload"]["start_date"] == str(tomorrow_in_amsterdam())
    assert (await contact_of(str(row["id"])) or {}).get("phone") == "+31612345678"
    assert event["payload"]["send_time"] == "09:00:00"

    for reused in (await http.post(url), await http.get(url)):
        assert reused.status_code == 410 and "al gebruikt" in reused.text
    assert len(await enrolled_events(str(row["id"]))) == 1
    unknown = await http.post(f"{ENROLMENT}/bevestigen/verzonnen-link")
    assert unknown.status_code == 404 and "klopt niet" in unknown.text


async def test_an_expired_confirmation_link_gets_a_clear_dutch_page(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    email = unique_email()
    assert (await sign_up(http, org_id, email)).status_code == 303
    url = await confirmation_url(http, email)
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_enrolment")
    try:
        await conn.execute(
            "UPDATE participant SET confirm_expires_at = now() - interval '1 minute' WHERE org_id = $1",
            uuid.UUID(org_id),
        )
    finally:
        await conn.close()
    expired = await http.post(url)
    assert (
        expired.status_code == 410 and "werkt niet meer" in expired.text and "Meld je dan opnieuw aan" in expired.text
    )
    (row,) = await org_participants(org_id)
    assert row["status"] == "pending"
    assert not await enrolled_events(str(row["id"]))


async def test_sign_up_guards(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    robot = await sign_up(http, org_id, unique_email(), website="http://spam.example")
    assert robot.status_code == 303, "robots get the same answer"
    assert not await org_participants(org_id)
    unknown = await http.get(f"{ENROLMENT}/aanmelden/{uuid.uuid4()}")
    assert unknown.status_code == 404 and "bestaat niet" in unknown.text
    not_an_id = await http.get(f"{ENROLMENT}/aanmelden/welzijn-aan-zee")
    assert not_an_id.status_code == 404
    # A second sign-up of one address within ten minutes sends no second mail (no mail flooding);
    # a later one replaces the first, which is forgotten everywhere (the mailer had its address).
    email = unique_email()
    await sign_up(http, org_id, email)
    (first,) = await org_participants(org_id)
    assert (await sign_up(http, org_id, email, first_name="Anna")).status_code == 303
    assert [row["id"] for row in await org_participants(org_id)] == [first["id"]]
    await set_created_at(first["id"], "11 minutes")
    await sign_up(http, org_id, email, first_name="Anna")
    (row,) = await db_fetch("enrolment", "SELECT id, first_name FROM participant WHERE org_id = $1", uuid.UUID(org_id))
    assert row["first_name"] == "Anna" and row["id"] != first["id"]
    await eventually(
        partial(events_on, "meer.participant", key=str(first["id"]), event_type="participant.erased"),
        what="participant.erased for the replaced sign-up",
    )
    requested = await events_on("meer.participant", event_type="participant.confirmation_requested")
    people = await people_with_address({email})
    assert len([e for e in requested if e["participant_id"] in people]) == 2


async def set_created_at(participant_id: uuid.UUID, ago: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_enrolment")
    try:
        await conn.execute(
            f"UPDATE participant SET created_at = now() - interval '{ago}' WHERE id = $1",  # noqa: S608 - a constant
            participant_id,
        )
    finally:
        await conn.close()


async def test_sign_ups_never_confirmed_are_forgotten_after_the_retention_time(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    await add_coach(http, org_id)
    assert (await sign_up(http, org_id, unique_email())).status_code == 303
    (pending,) = await org_participants(org_id)
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_enrolment")
    try:
        await conn.execute(
            "UPDATE participant SET confirm_expires_at = now() - interval '8 days' WHERE id = $1", pending["id"]
        )
    finally:
        await conn.close()
    # The service's hourly clean-up, run here once on the same database.
    database = Database(PG_SERVER.replace("postgresql://", "postgresql+asyncpg://", 1) + "/meer_enrolment")
    try:
        assert await delete_unconfirmed_signups(database, EnrolmentSettings()) >= 1
    finally:
        await database.dispose()
    assert not await org_participants(org_id)
    await eventually(
        partial(events_on, "meer.participant", key=str(pending["id"]), event_type="participant.erased"),
        what="participant.erased for the forgotten sign-up",
    )
