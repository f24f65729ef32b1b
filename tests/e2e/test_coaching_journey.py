"""Coaching's projection on the real stack: a scripted 60-day journey gives the expected
figures; alerts a coach can act on; a redelivered event changes nothing; rebuilding
from the topics gives the same projection and keeps what coaches wrote.

The journey's events go straight onto the topics (as the other services' outboxes put
them there); the calls and the plan go through coaching's own API, so their events come
back from Kafka and are replayed by the rebuild. The scripted participants start in the
future, so the real mailer (which also consumes participant.enrolled) sends them nothing
while the test runs: their mails are the scripted mail.sent events.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from deploy.local.stack import Urls, database_url
from services.coaching.auth import SESSION_COOKIE
from shared.events import (
    AssignmentReported,
    Branding,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    LinkClicked,
    MailFailed,
    MailOpened,
    MailSent,
    OrganisationLicensed,
    ParticipantCompleted,
    ParticipantDetailsChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
    ProgrammeCompleted,
    Topic,
    UnsubscribeRequested,
)
from tests.e2e.conftest import COACHING, consumer_lag, db_fetch, eventually, mint_staff_token, publish, read_topic

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
TOPICS = (Topic.ORGANISATION, Topic.PARTICIPANT, Topic.MAIL, Topic.ENGAGEMENT, Topic.COACHING, Topic.CONTACT)
PROJECTION = {
    "dashboard_row": "participant_id",
    "mail_seen": "delivery_id",
    "open_seen": "event_id",
    "report_seen": "participant_id, day",
    "call_seen": "call_id",
    "lifecycle_seen": "event_id",
    "organisation_view": "org_id",
    "coach_view": "coach_id",
    "questionnaire_answer_seen": "participant_id, moment",
    "contact_view": "person_id",
}
AUTHORED = {
    "call_log": "call_id",
    "plan_version": "participant_id, version",
    "planned_call_move": "participant_id, number",
}
SCORES = {3: 3, 6: 4, 9: 4, 12: 4, 15: 5, 18: 3, 21: 4, 24: 4, 27: 5, 33: 4, 36: 3, 39: 4, 42: 5, 45: 4, 48: 3, 51: 3}
SCORES |= {54: 2, 57: 1}


@dataclass
class Journey:
    """The scripted organisation, its coach, and four participants at different points."""

    now: datetime
    org_id: UUID
    coach_id: UUID
    gerrit: UUID  # the full 60 days, completed
    ans: UUID  # day 10, needs attention
    wim: UUID  # paused
    joke: UUID  # stopped herself
    events: list[Envelope]
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Script:
    """Collects the envelopes of the journey in the order the services would publish them."""

    def __init__(self, org_id: UUID) -> None:
        self.org_id = org_id
        self.events: list[Envelope] = []

    def contact(self, person: UUID, name: str, email: str, phone: str | None, at: datetime) -> None:
        kind = "participant" if phone is not None else "staff"
        details = ContactDetailsSet(person_id=person, kind=kind, name=name, email=email, phone=phone)
        self.add(details, person if kind == "participant" else None, at)

    def add(self, payload: Payload, participant: UUID | None, at: datetime) -> Envelope:
        envelope = Envelope.wrap(payload, org_id=self.org_id, participant_id=participant, occurred_at=at)
        self.events.append(envelope)
        return envelope

    def enrol(self, participant: UUID, coach: UUID, name: str, now: datetime, at: datetime) -> None:
        email = f"{name.lower()}-{participant.hex[:6]}@example.org"
        self.contact(participant, name, email, "06 1111 2222", at)
        self.add(
            ParticipantEnrolled(
                coach_id=coach,
                start_date=(now + timedelta(days=3)).date(),
                send_time=time(23, 59),
                timezone="Europe/Amsterdam",
                variant="standard",
            ),
            participant,
            at,
        )

    def mail(self, participant: UUID, day: int, sent: datetime) -> UUID:
        delivery = uuid4()
        title = f"Les {day}: een kleine stap"
        self.add(
            MailSent(
                delivery_id=delivery,
                day=day,
                lesson_title=title,
                pack="meer-contact",
                pack_version="v1",
                message_id=f"<{delivery}@mailer>",
                sent_at=sent,
            ),
            participant,
            sent,
        )
        return delivery

    def opened(self, participant: UUID, delivery: UUID, day: int, at: datetime, *, automated: bool = False) -> None:
        signals = ("fast_after_send", "privacy_proxy_user_agent") if automated else ()
        opened = MailOpened(
            delivery_id=delivery, day=day, opened_at=at, first_open=False, likely_automated=automated, signals=signals
        )
        self.add(opened, participant, at)

    def report(self, participant: UUID, delivery: UUID, day: int, score: int, at: datetime) -> None:
        self.add(
            AssignmentReported(delivery_id=delivery, day=day, score=score, note=f"Dag {day} ging zo", reported_at=at),
            participant,
            at,
        )


def gerrit_sent_at(base: datetime, day: int) -> datetime:
    """Daily from `base`, with a pause of three days after lesson 20."""
    return base + timedelta(days=day - 1 + (3 if day > 20 else 0))


def script_journey(now: datetime, org_id: UUID, coach_id: UUID, people: dict[str, UUID]) -> list[Envelope]:
    script = Script(org_id)
    branding = Branding(display_name="Welzijn Aan Zee", contact_phone="0223 123 456", brand_colour="#0b6e4f")
    script.add(
        OrganisationLicensed(
            name="Welzijn Aan Zee",
            branding=branding,
            licence_valid_from=(now - timedelta(days=100)).date(),
            licence_valid_until=(now + timedelta(days=300)).date(),
            max_active_participants=50,
            variants=("standard",),
        ),
        None,
        now - timedelta(days=100),
    )
    script.add(CoachAdded(coach_id=coach_id), None, now - timedelta(days=99))
    script.contact(coach_id, "Karin Jansen", "karin@example.org", None, now - timedelta(days=99))

    # Gerrit: the whole programme; day 30 bounced; opens stop after day 56; a three-day pause after day 20.
    gerrit, base = people["gerrit"], now - timedelta(days=64, hours=1)
    script.enrol(gerrit, coach_id, "Gerrit", now, base - timedelta(days=1))
    script.contact(gerrit, "Gerrit", "gerrit@example.org", "06 3333 4444", base + timedelta(days=10))
    script.add(
        ParticipantDetailsChanged(
            send_time=time(23, 59),
            timezone="Europe/Amsterdam",
        ),
        gerrit,
        base + timedelta(days=10),
    )
    for day in range(1, 61):
        sent = gerrit_sent_at(base, day)
        if day == 20 + 1:
            script.add(ParticipantPaused(reason=None), gerrit, base + timedelta(days=19, hours=12))
            script.add(ParticipantResumed(), gerrit, base + timedelta(days=22, hours=12))
        if day == 30:
            script.add(
                MailFailed(delivery_id=uuid4(), day=30, reason="550 5.1.1 mailbox full", failed_at=sent), gerrit, sent
            )
            continue
        delivery = script.mail(gerrit, day, sent)
        script.opened(gerrit, delivery, day, sent + timedelta(seconds=10), automated=True)
        if day <= 56 and day % 4:
            script.opened(gerrit, delivery, day, sent + timedelta(hours=2))
        if day == 1:
            script.opened(gerrit, delivery, day, sent + timedelta(days=1))
        if day == 2:
            clicked = LinkClicked(
                delivery_id=delivery,
                day=2,
                url="https://x.example/",
                clicked_at=sent + timedelta(hours=3),
                likely_automated=False,
            )
            script.add(clicked, gerrit, sent + timedelta(hours=3))
        if day == 9:
            script.report(gerrit, delivery, day, 2, sent + timedelta(hours=4))
        if day in SCORES:
            script.report(gerrit, delivery, day, SCORES[day], sent + timedelta(hours=6))
    end = gerrit_sent_at(base, 60)
    script.add(ProgrammeCompleted(days=60, completed_at=end + timedelta(minutes=1)), gerrit, end + timedelta(minutes=1))
    script.add(ParticipantCompleted(), gerrit, end + timedelta(minutes=5))

    # Ans: day 10 today; opened only the first five; the last two assignments went badly; day 11 bounced.
    ans = people["ans"]
    script.enrol(ans, coach_id, "Ans", now, now - timedelta(days=11))
    for day in range(1, 11):
        sent = now - timedelta(days=10 - day, hours=6)
        delivery = script.mail(ans, day, sent)
        if day <= 5:
            script.opened(ans, delivery, day, sent + timedelta(hours=1))
        if day in (8, 9):
            script.report(ans, delivery, day, {8: 2, 9: 1}[day], sent + timedelta(hours=3))
    script.add(
        MailFailed(delivery_id=uuid4(), day=11, reason="550 user unknown", failed_at=now - timedelta(hours=1)),
        ans,
        now - timedelta(hours=1),
    )

    # Wim: three lessons, then paused; Joke: two lessons, then asked to stop and was stopped.
    wim, joke = people["wim"], people["joke"]
    script.enrol(wim, coach_id, "Wim", now, now - timedelta(days=4))
    for day in (1, 2, 3):
        script.opened(wim, script.mail(wim, day, now - timedelta(days=4 - day, hours=2)), day, now - timedelta(days=3))
    script.add(ParticipantPaused(reason="ziekenhuis"), wim, now - timedelta(hours=12))
    script.enrol(joke, coach_id, "Joke", now, now - timedelta(days=3))
    for day in (1, 2):
        script.mail(joke, day, now - timedelta(days=3 - day))
    unsubscribe = UnsubscribeRequested(delivery_id=uuid4(), via="one_click", requested_at=now - timedelta(hours=20))
    script.add(unsubscribe, joke, now - timedelta(hours=20))
    script.add(ParticipantStopped(by="participant", reason=None), joke, now - timedelta(hours=19))
    return script.events


async def coaching_caught_up() -> None:
    async def no_lag() -> bool:
        return await consumer_lag("coaching", TOPICS) == 0

    await eventually(no_lag, what="coaching to handle every event on its topics")


async def summaries(http: httpx.AsyncClient, journey: Journey) -> dict[UUID, dict[str, Any]]:
    response = await http.get(f"{COACHING}/api/participants", headers=journey.headers)
    assert response.status_code == 200, response.text
    return {UUID(line["participant_id"]): line for line in response.json()}


@pytest.fixture(scope="module")
async def journey(stack: None) -> Journey:
    now = datetime.now(UTC)
    org_id, coach_id = uuid4(), uuid4()
    people = {name: uuid4() for name in ("gerrit", "ans", "wim", "joke")}
    events = script_journey(now, org_id, coach_id, people)
    await publish(events)
    token = mint_staff_token("coach", org_id, coach_id)
    found = Journey(now, org_id, coach_id, events=events, token=token, **people)
    async with httpx.AsyncClient(timeout=10) as http:

        async def everyone_there() -> dict[UUID, dict[str, Any]] | None:
            lines = await summaries(http, found)
            done = lines.get(found.gerrit, {}).get("status") == "completed" and len(lines) == 4
            return lines if done and lines[found.joke]["status"] == "stopped" else None

        await eventually(everyone_there, what="the four scripted participants on the dashboard")
        base = now - timedelta(days=64, hours=1)
        calls = [
            (2, True, 20, 1, [1, 2], "Kennisgemaakt. Woont sinds vorig jaar alleen.", "Over twee weken weer bellen."),
            (14, False, 0, 2, [], None, None),
            (15, True, 25, 2, [10, 12, 14], "Les 12 raakte hem.", "Koffie bij de buren proberen."),
            (36, True, 30, 3, [30, 35], "Eerste keer naar het buurthuis.", None),
            (58, True, 35, 4, [55, 57, 58], "Terugblik: voelt zich minder alleen.", "Blijft naar de soos gaan."),
        ]
        for day, reached, minutes, planned, lessons, notes, agreement in calls:
            body = {
                "called_at": (gerrit_sent_at(base, day) + timedelta(hours=3)).isoformat(),
                "reached": reached,
                "duration_minutes": minutes,
                "planned_call": planned,
                "lessons_discussed": lessons,
                "notes": notes,
                "next_agreement": agreement,
            }
            response = await http.post(
                f"{COACHING}/api/participants/{found.gerrit}/calls", json=body, headers=found.headers
            )
            assert response.status_code == 201, response.text
        for goals in ("Weer contact met de buren.", "Weer contact met de buren. Elke week naar de soos."):
            plan = {
                "noticed_how": "De huisarts belde.",
                "own_question": "Ik wil weer iemand hebben om mee te praten.",
                "causes": ["loss_of_partner", "unsure_in_contact"],
                "goals": goals,
                "steps": "Dinsdag koffie in het buurthuis.",
            }
            response = await http.post(
                f"{COACHING}/api/participants/{found.gerrit}/plan", json=plan, headers=found.headers
            )
            assert response.status_code == 201, response.text
    await coaching_caught_up()
    return found


async def test_the_projection_after_a_60_day_journey_matches_the_expected_figures(
    http: httpx.AsyncClient, journey: Journey
) -> None:
    gerrit = (await summaries(http, journey))[journey.gerrit]
    expected = {
        "first_name": "Gerrit",
        "phone": "06 3333 4444",
        "coach_name": "Karin Jansen",
        "status": "completed",
        "lesson_day": 60,
        "lesson_title": "Les 60: een kleine stap",
        "mails_sent": 59,  # day 30 bounced
        "mails_failed": 1,
        "mails_opened": 41,  # days 1..56 but every fourth, and not 30
        "mails_opened_automated_only": 18,  # the scanner opened every mail
        "open_rate_7d": 0.0,  # days 56..60 were sent in the last 7 days, none opened by Gerrit
        "days_without_open": 6,  # the last open: day 55, six days and 23 hours ago
        "calls_reached": 4,
        "calls_attempted": 5,  # the unreached attempt is logged, and does not count
        "next_call": None,
        "report_trend": "down",
    }
    assert {key: gerrit[key] for key in expected} == expected
    assert gerrit["open_rate"] == pytest.approx(41 / 59)
    assert [(r["day"], r["score"]) for r in gerrit["latest_reports"]] == [(51, 3), (54, 2), (57, 1)]
    assert [alert["code"] for alert in gerrit["alerts"]] == ["low_scores"]

    response = await http.get(f"{COACHING}/api/participants/{journey.gerrit}", headers=journey.headers)
    assert response.status_code == 200
    detail = response.json()
    assert [(c["number"], c["status"]) for c in detail["planned_calls"]] == [(n, "done") for n in (1, 2, 3, 4)]
    assert len(detail["lessons"]) == 59 and detail["lessons"][-1]["day"] == 60
    assert len(detail["reports"]) == 18
    assert next(r for r in detail["reports"] if r["day"] == 9)["score"] == 4, "the later answer replaced the earlier"
    assert sum(d["human"] for d in detail["opens_per_day"]) == 42  # 41 first opens and one repeat
    assert sum(d["automated"] for d in detail["opens_per_day"]) == 59
    assert detail["plan_version"] == 2
    notes = [call["notes"] for call in detail["calls"]]
    assert "Terugblik: voelt zich minder alleen." in notes and None in notes
    kinds = {entry["kind"] for entry in detail["timeline"]}
    assert {"mail_sent", "mail_failed", "opened", "clicked", "report", "call", "paused", "resumed", "plan"} <= kinds
    rows = await db_fetch(
        "coaching",
        "SELECT clicks, plan_version, calls_reached FROM dashboard_row WHERE participant_id = $1",
        journey.gerrit,
    )
    assert [tuple(row) for row in rows] == [(1, 2, 4)]


async def test_the_dashboard_shows_alerts_a_coach_can_act_on(http: httpx.AsyncClient, journey: Journey) -> None:
    lines = await summaries(http, journey)
    ans, wim, joke = lines[journey.ans], lines[journey.wim], lines[journey.joke]
    assert [a["code"] for a in ans["alerts"]] == ["call_overdue", "mail_failed", "no_open_3_days", "low_scores"]
    assert (ans["status"], ans["lesson_day"], ans["days_without_open"], ans["open_rate"]) == ("active", 10, 5, 0.5)
    assert ans["next_call"]["number"] == 1 and ans["next_call"]["status"] == "overdue"
    assert [a["code"] for a in wim["alerts"]] == ["paused"]
    assert wim["next_call"]["number"] == 1 and wim["next_call"]["status"] == "due"
    assert [a["code"] for a in joke["alerts"]] == ["stopped"]
    assert joke["next_call"] is None


async def test_the_api_and_the_page_list_participants_in_the_same_order(
    http: httpx.AsyncClient, journey: Journey
) -> None:
    # Alerts first (Ans, Wim, by name), finished ones last (Gerrit completed, Joke stopped).
    expected = [journey.ans, journey.wim, journey.gerrit, journey.joke]
    response = await http.get(f"{COACHING}/api/participants", headers=journey.headers)
    assert response.status_code == 200, response.text
    assert [UUID(line["participant_id"]) for line in response.json()] == expected
    http.cookies.clear()
    page = await http.get(f"{COACHING}/overzicht", headers={"Cookie": f"{SESSION_COOKIE}={journey.token}"})
    assert page.status_code == 200, page.text
    assert [UUID(found) for found in re.findall(r'<tr id="p-([0-9a-f-]{36})"', page.text)] == expected
    finished = await http.get(
        f"{COACHING}/overzicht?filter=klaar", headers={"Cookie": f"{SESSION_COOKIE}={journey.token}"}
    )
    assert [UUID(found) for found in re.findall(r'<tr id="p-([0-9a-f-]{36})"', finished.text)] == expected[2:]


async def snapshot(tables: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(row) for row in await db_fetch("coaching", f"SELECT * FROM {table} ORDER BY {key}")]  # noqa: S608
        for table, key in tables.items()
    }


async def test_a_redelivered_event_changes_nothing(journey: Journey) -> None:
    before = await snapshot(PROJECTION)
    claimed = await db_fetch("coaching", "SELECT count(*) FROM processed_events")
    ours = [e for e in journey.events if e.participant_id == journey.gerrit]
    again = [
        next(e for e in ours if e.type == "mail.opened" and not e.payload["likely_automated"]),
        next(e for e in ours if e.type == "assignment.reported" and e.payload["day"] == 9),  # the earlier answer
        next(e for e in ours if e.type == "mail.sent" and e.payload["day"] == 60),
        next(e for e in ours if e.type == "mail.failed"),
        next(e for e in ours if e.type == "participant.paused"),
        next(e for e in ours if e.type == "participant.completed"),
    ]
    for record in await read_topic(Topic.COACHING):
        envelope = Envelope.model_validate_json(record.value or b"")
        if envelope.participant_id == journey.gerrit and envelope.type in ("call.logged", "plan.updated"):
            again.append(envelope)  # our own call.logged and plan.updated, as Kafka has them
    assert len(again) == 6 + 5 + 2
    await publish(again)
    await coaching_caught_up()
    assert await snapshot(PROJECTION) == before
    assert await db_fetch("coaching", "SELECT count(*) FROM processed_events") == claimed


async def test_erasing_a_participant_removes_name_phone_notes_and_plan_text(
    http: httpx.AsyncClient, journey: Journey
) -> None:
    henk, now = uuid4(), datetime.now(UTC)
    script = Script(journey.org_id)
    script.enrol(henk, journey.coach_id, "Henk", now, now - timedelta(days=2))
    script.mail(henk, 1, now - timedelta(days=1))
    await publish(script.events)

    async def henk_there() -> bool:
        response = await http.get(f"{COACHING}/api/participants/{henk}", headers=journey.headers)
        return response.status_code == 200

    await eventually(henk_there, what="Henk on the dashboard")
    call = {
        "called_at": now.isoformat(),
        "reached": True,
        "duration_minutes": 9,
        "notes": "Henk vertelde over zijn zus.",
    }
    plan = {"own_question": "Ik wil mijn zus vaker zien.", "causes": ["health"], "goals": "Elke week bellen"}
    for path, body in (("calls", call), ("plan", plan)):
        response = await http.post(f"{COACHING}/api/participants/{henk}/{path}", json=body, headers=journey.headers)
        assert response.status_code == 201, response.text
    await publish([Envelope.wrap(ParticipantErased(), org_id=journey.org_id, participant_id=henk, occurred_at=now)])

    async def gone() -> bool:
        response = await http.get(f"{COACHING}/api/participants/{henk}", headers=journey.headers)
        return response.status_code == 410

    await eventually(gone, what="Henk's page to say the data was erased")
    row = await db_fetch(
        "coaching", "SELECT first_name, phone, status, mails_sent FROM dashboard_row WHERE participant_id = $1", henk
    )
    assert [tuple(r) for r in row] == [(None, None, "erased", 1)]
    calls = await db_fetch("coaching", "SELECT notes, duration_minutes FROM call_log WHERE participant_id = $1", henk)
    assert [tuple(r) for r in calls] == [(None, 9)]
    plans = await db_fetch(
        "coaching", "SELECT own_question, goals, causes::text FROM plan_version WHERE participant_id = $1", henk
    )
    assert [tuple(r) for r in plans] == [(None, None, "[]")]
    lines = await summaries(http, journey)
    assert henk not in lines
    refused = await http.post(f"{COACHING}/api/participants/{henk}/calls", json=call, headers=journey.headers)
    assert refused.status_code == 410


def differences(
    rebuilt: dict[str, list[tuple[Any, ...]]], live: dict[str, list[tuple[Any, ...]]]
) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per table, the rows only the rebuild has and the rows only the live projection has."""
    found = {}
    for table in live:
        only_rebuilt = sorted(set(rebuilt[table]) - set(live[table]), key=str)
        only_live = sorted(set(live[table]) - set(rebuilt[table]), key=str)
        if only_rebuilt or only_live:
            found[table] = {"rebuild": only_rebuilt[:3], "live": only_live[:3]}
    return found


def run_rebuild() -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEER_DATABASE_URL": database_url("coaching"),
        "MEER_KAFKA_BOOTSTRAP": Urls.kafka,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.coaching.cli", "rebuild", "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


async def topic_ends() -> int:
    """How many events the projected topics hold (to see whether anything arrived meanwhile)."""
    return sum([len(await read_topic(topic)) for topic in TOPICS])


async def test_rebuilding_from_the_topics_gives_the_same_projection_and_keeps_what_coaches_wrote(
    http: httpx.AsyncClient, journey: Journey
) -> None:
    # The claim of an event on a topic the rebuild does not replay (a subject-access export on
    # meer.export) must survive it, or a redelivered export would be answered twice.
    await db_fetch("coaching", "INSERT INTO processed_events (event_id, processed_at) VALUES ($1, now())", uuid4())
    for _ in range(3):
        # Count first, then wait: every counted event is in the live snapshot; a later one forces a retry.
        events_before = await topic_ends()
        await coaching_caught_up()
        live = await snapshot(PROJECTION)
        authored = await snapshot(AUTHORED)
        claimed = await db_fetch("coaching", "SELECT event_id FROM processed_events ORDER BY event_id")
        result = run_rebuild()
        assert result.returncode == 0, result.stdout + result.stderr
        await coaching_caught_up()
        if await topic_ends() != events_before:
            continue  # another service published meanwhile; compare again on a quiet moment
        rebuilt = await snapshot(PROJECTION)
        assert differences(rebuilt, live) == {}
        assert await snapshot(AUTHORED) == authored
        assert await db_fetch("coaching", "SELECT event_id FROM processed_events ORDER BY event_id") == claimed
        break
    else:
        pytest.fail("the topics never stayed quiet during a rebuild")
    assert "events/s" in result.stdout and "rebuilt the projection from" in result.stdout
    assert sum(1 for row in live["dashboard_row"]) >= 4
    gerrit = (await summaries(http, journey))[journey.gerrit]
    assert (gerrit["calls_reached"], gerrit["calls_attempted"], gerrit["mails_opened"]) == (4, 5, 41)
