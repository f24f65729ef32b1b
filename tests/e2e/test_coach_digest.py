"""The coach's morning mail follows coaching's call plan on the real stack: a call moved to
today is listed, an overdue one as overdue, a logged one no longer; the mail lists the same
calls as the dashboard; no mail when there is nothing to call about; a participant who
needs attention by the dashboard's alert rules gets one line.

"The next morning" is brought forward by setting the coach's last digest date in the
mailer's database back one day (the local stack sends digests from 00:00 local time).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from deploy.local.stack import Urls, database_url
from shared.events import AssignmentReported, Envelope, Topic
from tests.e2e.conftest import (
    COACHING,
    add_coach,
    create_organisation,
    db_count,
    db_fetch,
    enrol_starting_now,
    events_on,
    eventually,
    mails_to,
    mint_staff_token,
    publish,
    raw_mail,
)

pytestmark = pytest.mark.stack
DIGEST_LINE = re.compile(r"^- (?P<name>\S+): gesprek (?P<number>\d) van 4, (?P<when>[^.]+)\. Is bij les (?P<day>\d+)")


def today_local() -> date:
    return datetime.now(ZoneInfo("Europe/Amsterdam")).date()


async def planned_copy(participant_id: uuid.UUID) -> dict[int, Any]:
    rows = await db_fetch("mailer", "SELECT * FROM planned_call_copy WHERE participant_id = $1", participant_id)
    return {row["number"]: row for row in rows}


async def next_morning(coach_id: uuid.UUID) -> None:
    """Make the coach's digest due again, as if a day had passed."""
    await db_fetch(
        "mailer",
        "UPDATE coach_copy SET last_digest_date = $2 WHERE coach_id = $1",
        coach_id,
        today_local() - timedelta(days=1),
    )


async def digest_done(coach_id: uuid.UUID) -> bool:
    rows = await db_fetch("mailer", "SELECT last_digest_date FROM coach_copy WHERE coach_id = $1", coach_id)
    return bool(rows) and rows[0]["last_digest_date"] == today_local()


async def new_digest(http: httpx.AsyncClient, address: str, seen: int) -> list[dict[str, str]]:
    """The lines of the coach's next digest (waits for mail number `seen` + 1)."""
    mails = await eventually(
        lambda: _more_than(http, address, seen), timeout=60, what=f"digest number {seen + 1} to the coach"
    )
    text = await _plain(http, max(mails, key=lambda mail: mail["id"])["id"])
    return [{**m.groupdict(), "line": line} for line in text.splitlines() if (m := DIGEST_LINE.match(line.strip()))]


async def digests_to(http: httpx.AsyncClient, address: str) -> list[dict[str, Any]]:
    """The coach's digests in the mail catcher (the coach also got an invitation)."""
    return [mail for mail in await mails_to(http, address) if "Wie bel je vandaag" in mail["subject"]]


async def _more_than(http: httpx.AsyncClient, address: str, seen: int) -> list[dict[str, Any]] | None:
    mails = await digests_to(http, address)
    return mails if len(mails) > seen else None


async def dashboard_calls(
    http: httpx.AsyncClient, participant_id: uuid.UUID, headers: dict[str, str]
) -> set[tuple[int, bool]]:
    """The calls the dashboard says are to be made today: (number, overdue)."""
    response = await http.get(f"{COACHING}/api/participants/{participant_id}", headers=headers)
    assert response.status_code == 200, response.text
    today = today_local()
    return {
        (call["number"], call["status"] == "overdue")
        for call in response.json()["planned_calls"]
        if call["status"] in ("due", "overdue") and date.fromisoformat(call["due_date"]) <= today
    }


def mailed_calls(lines: list[dict[str, str]]) -> set[tuple[int, bool]]:
    return {(int(line["number"]), line["when"].startswith("te laat")) for line in lines}


async def test_the_morning_mail_lists_the_calls_of_the_plan_as_the_dashboard_does(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    coach = await add_coach(http, organisation["id"], name="Coach Sanne")
    coach_id, address = uuid.UUID(coach["id"]), coach["email"]
    participant_id, _ = await enrol_starting_now(http, organisation["id"], first_name="Ria")
    headers = {"Authorization": f"Bearer {mint_staff_token('coach', uuid.UUID(organisation['id']), coach_id)}"}
    today = today_local()

    # Coaching plans the four calls; the mailer keeps its copy. Nothing is due today (call 1 goes
    # with lesson 2, tomorrow), so this morning's digest sends nothing.
    await eventually(lambda: _four(participant_id), what="the mailer's copy of the four planned calls")
    await eventually(lambda: digest_done(coach_id), what="today's digest round for the new coach")
    assert await digests_to(http, address) == []

    # The coach moves call 2 to today and call 1 to six days ago (so it is overdue).
    for number, day in ((2, today), (1, today - timedelta(days=6))):
        response = await http.put(
            f"{COACHING}/api/participants/{participant_id}/planned-calls/{number}",
            json={"due_date": str(day)},
            headers=headers,
        )
        assert response.status_code == 200, response.text

    async def moved() -> bool:
        copy = await planned_copy(participant_id)
        return bool(copy[2]["due_date"] == today and copy[1]["due_date"] == today - timedelta(days=6))

    await eventually(moved, what="call.moved in the mailer's copy")
    await next_morning(coach_id)
    lines = await new_digest(http, address, seen=0)
    assert mailed_calls(lines) == {(1, True), (2, False)}
    by_number = {int(line["number"]): line for line in lines}
    assert by_number[2]["when"] == "vandaag" and by_number[2]["name"] == "Ria"
    assert by_number[1]["when"].startswith("te laat")
    assert f"{COACHING}/deelnemers/{participant_id}" in by_number[2]["line"]
    assert mailed_calls(lines) == await dashboard_calls(http, participant_id, headers)

    # Logging call 2 (reached) takes it off the next morning's list; the overdue call stays.
    response = await http.post(
        f"{COACHING}/api/participants/{participant_id}/calls",
        json={"called_at": datetime.now(UTC).isoformat(), "reached": True, "duration_minutes": 20, "planned_call": 2},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    await eventually(
        lambda: _state(participant_id, 2, "done"), what="call.logged marking call 2 done in the mailer's copy"
    )
    await next_morning(coach_id)
    lines = await new_digest(http, address, seen=1)
    assert mailed_calls(lines) == {(1, True)}
    assert mailed_calls(lines) == await dashboard_calls(http, participant_id, headers)

    # Once call 1 is logged too there is nothing to do: the digest round passes without a mail.
    response = await http.post(
        f"{COACHING}/api/participants/{participant_id}/calls",
        json={"called_at": datetime.now(UTC).isoformat(), "reached": True, "duration_minutes": 15, "planned_call": 1},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    await eventually(lambda: _state(participant_id, 1, "done"), what="call 1 done in the mailer's copy")
    await next_morning(coach_id)
    await eventually(lambda: digest_done(coach_id), what="the next digest round")
    assert len(await digests_to(http, address)) == 2
    assert await dashboard_calls(http, participant_id, headers) == set()

    # Two assignments that went badly: the dashboard's alert travels to the mail as one attention line.
    org_id = uuid.UUID(organisation["id"])
    now = datetime.now(UTC)
    await publish(
        Envelope.wrap(
            AssignmentReported(delivery_id=uuid.uuid4(), day=day, score=score, reported_at=now),
            org_id=org_id,
            participant_id=participant_id,
        )
        for day, score in ((1, 2), (2, 1))
    )
    await eventually(lambda: _alert(participant_id, "low_scores"), what="alert.raised in the mailer's copy")
    await next_morning(coach_id)
    mails = await eventually(lambda: _more_than(http, address, 2), what="the third digest")
    text = await _plain(http, max(mails, key=lambda mail: mail["id"])["id"])
    assert "Extra aandacht:" in text
    assert "- Ria: de laatste twee opdrachten gingen moeilijk." in text
    assert "Vandaag geen gesprekken." in text
    response = await http.get(f"{COACHING}/api/participants/{participant_id}", headers=headers)
    assert "low_scores" in [alert["code"] for alert in response.json()["summary"]["alerts"]]


async def _four(participant_id: uuid.UUID) -> bool:
    return len(await planned_copy(participant_id)) == 4


async def _day_one_seen(participant_id: uuid.UUID) -> bool:
    rows = await db_fetch(
        "coaching", "SELECT 1 FROM mail_seen WHERE participant_id = $1 AND sent_at IS NOT NULL", participant_id
    )
    return bool(rows)


async def _alert(participant_id: uuid.UUID, code: str) -> bool:
    rows = await db_fetch(
        "mailer", "SELECT 1 FROM alert_copy WHERE participant_id = $1 AND code = $2", participant_id, code
    )
    return bool(rows)


async def _plain(http: httpx.AsyncClient, mail_id: int) -> str:
    message = await raw_mail(http, mail_id)
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    return str(plain.get_content())


async def _state(participant_id: uuid.UUID, number: int, state: str) -> bool:
    return bool((await planned_copy(participant_id)).get(number, {}).get("state") == state)


async def test_publish_plans_tells_the_mailer_again_what_it_does_not_have(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participant_id, _ = await enrol_starting_now(http, organisation["id"], first_name="Kees")
    await eventually(lambda: _four(participant_id), what="the mailer's copy of the four planned calls")
    # The day-1 mail's mail.sent applied first: a batch of the participant's after the deletion
    # below would tell the plan again too, beside publish-plans, and count a third time.
    await eventually(lambda: _day_one_seen(participant_id), what="coaching saw the day-1 mail")
    # What was told before: the plan at enrolment, and again at the day-1 mail when it went out on
    # another local day than planned (between 23:00 and 24:00 UTC it is the next day in Amsterdam).
    await eventually(lambda: _outbox_empty(), what="coaching's outbox relayed")
    told_before = len(await events_on(Topic.COACHING, key=str(participant_id), event_type="call.planned"))
    # As after an upgrade: coaching never told, the mailer never heard.
    await db_fetch("coaching", "DELETE FROM published_call WHERE participant_id = $1", participant_id)
    await db_fetch("mailer", "DELETE FROM planned_call_copy WHERE participant_id = $1", participant_id)

    for _ in range(2):  # the second time there is nothing left to tell
        result = run_publish_plans()
        assert result.returncode == 0, result.stdout + result.stderr
    await eventually(lambda: _four(participant_id), what="the four planned calls published again")
    await eventually(lambda: _outbox_empty(), what="coaching's outbox relayed")
    planned = (await events_on(Topic.COACHING, key=str(participant_id), event_type="call.planned"))[told_before:]
    assert sorted(event["payload"]["number"] for event in planned) == [1, 2, 3, 4]


def run_publish_plans() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.coaching.cli", "publish-plans"],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "MEER_DATABASE_URL": database_url("coaching"), "MEER_KAFKA_BOOTSTRAP": Urls.kafka},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def _outbox_empty() -> bool:
    return await db_count("coaching", "SELECT count(*) FROM outbox") == 0
