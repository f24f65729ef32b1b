"""One organisation's unusable data must not hold up anyone else's mail (issue 12, item 1).

The mailer's copy of an organisation gets a CR/LF in its branding (written straight into the
mailer's database, as old data or a path that skipped enrolment's checks would leave it). Its
mails then cannot be built; they must fail on their own, while another organisation's day-1
mail and staff invitation go out as usual.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import (
    ENROLMENT,
    LICENSOR,
    MAILER,
    add_coach,
    create_organisation,
    db_count,
    db_fetch,
    enrol_starting_now,
    events_on,
    eventually,
    mails_to,
    unique_email,
)

pytestmark = pytest.mark.stack

# More than the mailer's sender workers (MEER_SENDER_CONCURRENCY, 4 locally), so that mails which
# block their worker would occupy every worker.
BAD_MAILS = 6
HEADER_INJECTION = "Welzijn Aan Zee\r\nBcc: iedereen@example.org"


async def invite(http: httpx.AsyncClient, org_id: str) -> str:
    email = unique_email("medewerker")
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/staff",
        json={"name": "Medewerker Test", "email": email, "role": "coach"},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return email


async def test_a_mail_that_cannot_be_built_fails_alone_and_others_are_sent(http: httpx.AsyncClient) -> None:
    broken = await create_organisation(http)
    await add_coach(http, broken["id"])
    org = uuid.UUID(broken["id"])
    await eventually(
        lambda: db_count("mailer", "SELECT count(*) FROM organisation_copy WHERE org_id = $1", org),
        what="the mailer's copy of the organisation",
    )
    for field in ("sender_name", "display_name"):
        await db_fetch(
            "mailer",
            "UPDATE organisation_copy SET branding = jsonb_set(branding, $2::text[], $3::jsonb) WHERE org_id = $1",
            org,
            [field],
            json.dumps(HEADER_INJECTION),
        )

    preview = await http.get(f"{MAILER}/api/organisations/{org}/preview", headers=LICENSOR)
    assert preview.status_code == 422, preview.text
    assert "control character" in preview.json()["error"]["message"]

    # Programme mails and transactional mails of the broken organisation, due before anyone else's.
    participants = [(await enrol_starting_now(http, broken["id"], first_name="Bep"))[0] for _ in range(BAD_MAILS)]
    for _ in range(BAD_MAILS):
        await invite(http, broken["id"])

    async def bad_deliveries_exist() -> bool:
        count = await db_count("mailer", "SELECT count(*) FROM delivery WHERE org_id = $1", org)
        mails = await db_count(
            "mailer", "SELECT count(*) FROM transactional_mail WHERE org_id = $1 AND kind = 'invitation'", org
        )
        return count == BAD_MAILS and mails >= BAD_MAILS  # and the coach's own invitation

    await eventually(bad_deliveries_exist, what="the broken organisation's mails in the mailer")
    earlier = datetime.now(UTC) - timedelta(hours=1)
    await db_fetch("mailer", "UPDATE delivery SET due_at = $2 WHERE org_id = $1 AND status = 'due'", org, earlier)
    await db_fetch(
        "mailer", "UPDATE transactional_mail SET due_at = $2 WHERE org_id = $1 AND status = 'due'", org, earlier
    )

    # Another organisation: its day-1 mail and its staff invitation arrive promptly.
    other = await create_organisation(http)
    await add_coach(http, other["id"])
    _, address = await enrol_starting_now(http, other["id"], first_name="Ans")
    invited = await invite(http, other["id"])
    await eventually(lambda: mails_to(http, address), what="the other organisation's day-1 mail")
    await eventually(lambda: mails_to(http, invited), what="the other organisation's invitation")

    # The broken organisation's mails are given up after a bounded number of attempts, with events.
    async def all_failed() -> list[dict[str, object]] | None:
        rows = await db_fetch("mailer", "SELECT status, attempts, error FROM delivery WHERE org_id = $1", org)
        return [dict(r) for r in rows] if rows and all(r["status"] == "failed" for r in rows) else None

    failed = await eventually(all_failed, what="the broken organisation's deliveries to fail")
    assert len(failed) == BAD_MAILS
    assert all(row["attempts"] == 1 and row["error"] == "cannot render: UnsafeHeaderError" for row in failed)

    async def mail_failed_events() -> list[dict[str, object]] | None:
        found = [
            e
            for e in await events_on("meer.mail", event_type="mail.failed")
            if uuid.UUID(str(e["participant_id"])) in participants
        ]
        return found if len(found) == BAD_MAILS else None

    await eventually(mail_failed_events, what="mail.failed for each broken delivery")

    async def transactional_failed() -> list[dict[str, object]] | None:
        found = [
            e for e in await events_on("meer.mail", event_type="transactional_mail.failed") if e["org_id"] == str(org)
        ]
        return found if len(found) >= BAD_MAILS else None

    await eventually(transactional_failed, what="transactional_mail.failed for each broken mail")
    transactional = await db_fetch(
        "mailer", "SELECT status, to_address FROM transactional_mail WHERE org_id = $1 AND status <> 'sent'", org
    )
    assert len(transactional) >= BAD_MAILS
    assert all(r["status"] == "failed" and r["to_address"] is None for r in transactional)
    assert not await mails_to(http, "iedereen@example.org")
