"""One-time links never travel readable in events (issue 14): staff.invited and
participant.confirmation_requested carry them sealed for the mailer, and the mailed links work."""

from __future__ import annotations

import uuid

import httpx
import pytest
from aiokafka import ConsumerRecord

from tests.e2e.conftest import (
    ENROLMENT,
    add_coach,
    create_organisation,
    db_fetch,
    eventually,
    mailed_link,
    read_topic,
    staff_login,
    unique_email,
    unique_source,
)

pytestmark = pytest.mark.stack


async def test_no_set_password_or_confirm_link_is_readable_on_kafka_while_the_mailed_links_work(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Verzegeld")
    org_id = organisation["id"]
    await add_coach(http, org_id)
    # staff_login sets the password with the mailed link and logs in (it fails otherwise).
    admin = await staff_login(http, org_id)
    set_password_token = (await mailed_link(http, admin["email"], "/set-password/")).rsplit("/", 1)[1]

    email = unique_email("verzegeld")
    form = {"first_name": "Ans", "email": email, "send_time": "09:00", "consent": "ja"}
    assert (await http.post(f"{ENROLMENT}/aanmelden/{org_id}", data=form, headers=unique_source())).status_code == 303
    confirm_url = await mailed_link(http, email, "/bevestigen/")
    confirmed = await http.post(confirm_url)
    assert confirmed.status_code == 200 and "Welkom, Ans!" in confirmed.text
    (participant,) = await db_fetch("enrolment", "SELECT id FROM participant WHERE org_id = $1", uuid.UUID(org_id))
    participant_id = str(participant["id"])
    confirm_token = confirm_url.rsplit("/", 1)[1]

    staff_records = [r for r in await read_topic("meer.staff") if r.key == org_id.encode()]
    participant_records = await eventually(
        lambda: participant_records_of(participant_id, at_least=2), what="confirmation_requested and enrolled"
    )
    types = {b'"type":"staff.invited"', b'"type":"participant.confirmation_requested"'}
    assert {t for t in types for r in (*staff_records, *participant_records) if t in (r.value or b"")} == types
    for record in (*staff_records, *participant_records):
        readable = [record.value or b"", *(value for _, value in record.headers)]
        for part in readable:
            for secret in (set_password_token.encode(), confirm_token.encode(), b"/set-password/", b"/bevestigen/"):
                assert secret not in part, f"{record.topic} {record.offset} carries a one-time link"
            assert b"http://" not in part and b"https://" not in part, "no link of any kind in these events"
    # Nowhere on either topic, whatever the key.
    for record in (*await read_topic("meer.staff"), *await read_topic("meer.participant")):
        for part in (record.value or b"", *(value for _, value in record.headers)):
            assert set_password_token.encode() not in part and confirm_token.encode() not in part


async def participant_records_of(participant_id: str, *, at_least: int) -> list[ConsumerRecord[bytes, bytes]] | None:
    records = [r for r in await read_topic("meer.participant") if r.key == participant_id.encode()]
    return records if len(records) >= at_least else None
