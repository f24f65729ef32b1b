"""The loneliness questionnaire on the real stack: the intake link in the day-1 mail, the
page answered step by step as a browser posts it, questionnaire.answered on Kafka, the
scores on the coach's participant page; a token for another moment, a forged token and an
out-of-range answer change nothing; a second answer replaces the first; erasure removes the
answers everywhere; an answered follow-up cancels the mailer's reminder."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from services.coaching.auth import SESSION_COOKIE
from shared.events import Envelope, MailSent, QuestionnaireAnswered, Topic
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
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
)

pytestmark = pytest.mark.stack

ITEMS = ("e1", "e2", "e3", "s1", "s2", "s3")


class FormReader(HTMLParser):
    """The one form of a page as a browser sees it: its hidden fields and its radio names."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.radios: set[str] = set()
        self.buttons: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "input" and values.get("type") == "hidden":
            self.hidden[values["name"]] = values.get("value", "")
        elif tag == "input" and values.get("type") == "radio":
            self.radios.add(values["name"])
        elif tag == "button" and values.get("name") == "action":
            self.buttons[values["value"]] = values["value"]


def read_form(html: str) -> FormReader:
    reader = FormReader()
    reader.feed(html)
    return reader


async def answer_all(http: httpx.AsyncClient, url: str, answers: dict[str, str | None]) -> httpx.Response:
    """Press 'Begin', then answer (or skip) each question on its own page, as a browser posts it."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    for number in range(len(ITEMS) + 1):
        form = read_form(page.text)
        data = dict(form.hidden)
        if number == 0:
            data["action"] = "next"
        else:
            assert f"Vraag {number} van 6" in page.text
            (item,) = form.radios
            assert item == ITEMS[number - 1] and {"next", "skip"} <= set(form.buttons)
            answer = answers[item]
            data["action"] = "skip" if answer is None else "next"
            if answer is not None:
                data[item] = answer
        page = await http.post(url, data=data)
        assert page.status_code == 200, page.text
    return page


def expected_scores(answers: dict[str, str | None]) -> dict[str, Any]:
    """Computed here from the manual's rules and the documented imputation, not by the code under test."""
    points = {
        item: None if a is None else (a in ("ja", "min_of_meer")) if item[0] == "e" else (a in ("nee", "min_of_meer"))
        for item, a in answers.items()
    }
    emotional = None if any(points[i] is None for i in ITEMS[:3]) else sum(bool(points[i]) for i in ITEMS[:3])
    social = None if any(points[i] is None for i in ITEMS[3:]) else sum(bool(points[i]) for i in ITEMS[3:])
    missing = [i for i in ITEMS if points[i] is None]
    total = sum(bool(p) for p in points.values() if p is not None)
    if len(missing) == 1:
        others = [bool(points[i]) for i in (ITEMS[:3] if missing[0][0] == "e" else ITEMS[3:]) if i != missing[0]]
        total += 1 if sum(others) * 2 >= len(others) else 0
    category = "not_lonely" if total <= 1 else "moderately_lonely" if total <= 4 else "severely_lonely"
    return {"emotional": emotional, "social": social, "total": total, "total_imputed": len(missing) == 1,
            "category": category}  # fmt: skip


async def answered_events(participant_id: UUID) -> list[Envelope]:
    found = []
    for record in await read_topic(Topic.ENGAGEMENT):
        envelope = Envelope.model_validate_json(record.value or b"{}")
        if envelope.type == QuestionnaireAnswered.TYPE and envelope.participant_id == participant_id:
            found.append(envelope)
    return sorted(found, key=lambda e: e.occurred_at)


async def test_intake_from_the_day_one_mail_to_the_coach_page_then_replaced_refused_and_erased(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http, display_name="Buurtkracht Oost", brand_colour="#2d6a4f")
    org_id = UUID(organisation["id"])
    coach = await add_coach(http, organisation["id"])
    participant_id, email = await enrol_starting_now(http, organisation["id"], first_name="Wim")
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    message = await raw_mail(http, mails[0]["id"])
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    links = re.findall(r'"(https?://[^"\s<>]+/q/[A-Za-z0-9_.\-]+)"', html)
    assert len(links) == 1, "the day-1 mail carries one questionnaire link"
    url = links[0]
    assert "vrijwillig" in html and "minder dan twee minuten" in html

    intro = await http.get(url)
    assert intro.status_code == 200 and "Buurtkracht Oost" in intro.text and "#2d6a4f" in intro.text
    assert "vrijwillig" in intro.text and "minder dan twee minuten" in intro.text
    assert "<script" not in intro.text

    # --- answered step by step, one item skipped: the total is imputed --------------------------
    first_answers: dict[str, str | None] = {
        "e1": "ja", "e2": "min_of_meer", "e3": "nee", "s1": "nee", "s2": None, "s3": "ja",
    }  # fmt: skip
    thanks = await answer_all(http, url, first_answers)
    assert "Dank je wel" in thanks.text and "5 van de 6" in thanks.text
    first_expected = expected_scores(first_answers)
    assert first_expected == {"emotional": 2, "social": None, "total": 4, "total_imputed": True,
                              "category": "moderately_lonely"}  # fmt: skip

    (event,) = await eventually(lambda: _events_when(participant_id, 1), what="questionnaire.answered")
    payload = event.payload
    assert event.org_id == org_id and payload["participant_id"] == str(participant_id)
    assert payload["moment"] == "intake" and payload["scale_version"] == "djg6-2006"
    assert payload["answers"] == first_answers
    assert {key: payload[key] for key in first_expected} == first_expected

    # --- the coach sees the scores beside the plan, with the caution ----------------------------
    cookie = {"Cookie": f"{SESSION_COOKIE}={mint_staff_token('coach', org_id, UUID(coach['id']))}"}

    async def coach_page_with(total: str) -> str | None:
        page = await http.get(f"{COACHING}/deelnemers/{participant_id}", headers=cookie)
        assert page.status_code == 200, page.text
        section = page.text.split('id="vragenlijst"', 1)[-1].split("</section>", 1)[0]
        return section if f"<td>{total}" in section else None

    section = await eventually(lambda: coach_page_with("4"), what="the scores on the coach's participant page")
    assert "Bij de start" in section and "geschat" in section and "matig eenzaam" in section
    assert "groepen te vergelijken, niet om bij één persoon een diagnose" in section
    assert re.search(r"<td>2</td>\s*<td>—</td>", section), "emotional 2, social missing"

    # --- refused: a form for another moment, a forged token, an out-of-range answer -------------
    stored = await db_fetch(
        "tracking", "SELECT answered_at, total FROM questionnaire_answer WHERE participant_id = $1", participant_id
    )
    wrong_moment = await http.post(url, data={"moment": "end", "step": "6", **{i: "ja" for i in ITEMS}})
    assert wrong_moment.status_code == 409 and "hoort bij een andere" in wrong_moment.text
    assert "niets veranderd" in wrong_moment.text
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    for response in (await http.get(forged), await http.post(forged, data={"moment": "intake", "step": "6"})):
        assert response.status_code == 404 and "Deze link werkt niet" in response.text
    out_of_range = await http.post(url, data={"moment": "intake", "step": "6", "e1": "ja", "s3": "7"})
    assert out_of_range.status_code == 422 and "Dit antwoord kennen we niet" in out_of_range.text
    assert 'role="alert"' in out_of_range.text
    bad_step = await http.post(url, data={"moment": "intake", "step": "99", "action": "next"})
    assert bad_step.status_code == 400 and "klopt niet meer" in bad_step.text
    assert (
        await db_fetch(
            "tracking", "SELECT answered_at, total FROM questionnaire_answer WHERE participant_id = $1", participant_id
        )
        == stored
    )

    # --- a second answer for the same moment replaces the first --------------------------------
    second_answers: dict[str, str | None] = {i: ("nee" if i[0] == "e" else "ja") for i in ITEMS}
    again = await answer_all(http, url, second_answers)
    assert "aangepast" in again.text
    events = await eventually(lambda: _events_when(participant_id, 2), what="a second questionnaire.answered")
    assert events[1].payload["total"] == 0 and events[1].payload["category"] == "not_lonely"
    rows = await db_fetch(
        "tracking", "SELECT moment, total FROM questionnaire_answer WHERE participant_id = $1", participant_id
    )
    assert [(r["moment"], r["total"]) for r in rows] == [("intake", 0)]
    await eventually(lambda: coach_page_with("0"), what="the coach page showing the new answer")
    seen = await db_fetch(
        "coaching", "SELECT moment, total FROM questionnaire_answer_seen WHERE participant_id = $1", participant_id
    )
    assert [(r["moment"], r["total"]) for r in seen] == [("intake", 0)]
    # the intake answer leaves any follow-up reminder alone; only a follow-up answer cancels one

    # --- erasure removes the answers in tracking and coaching, and closes the link -------------
    erased = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/erase", headers=LICENSOR
    )
    assert erased.status_code in (200, 202, 204), erased.text

    async def answers_gone() -> bool | None:
        left = await db_count(
            "tracking", "SELECT count(*) FROM questionnaire_answer WHERE participant_id = $1", participant_id
        ) + await db_count(
            "coaching", "SELECT count(*) FROM questionnaire_answer_seen WHERE participant_id = $1", participant_id
        )
        return True if left == 0 else None

    await eventually(answers_gone, what="the answers erased in tracking and coaching")
    closed = await http.get(url)
    assert closed.status_code == 410 and "gesloten" in closed.text
    late = await http.post(url, data={"moment": "intake", "step": "6", "s3": "ja", "action": "next"})
    assert late.status_code == 410
    assert (
        await db_count(
            "tracking", "SELECT count(*) FROM questionnaire_answer WHERE participant_id = $1", participant_id
        )
        == 0
    )


async def _events_when(participant_id: UUID, count: int) -> list[Envelope] | None:
    found = await answered_events(participant_id)
    return found if len(found) == count else None


async def test_an_answered_follow_up_cancels_the_reminder_and_an_intake_answer_does_not() -> None:
    """The reminder rows are set up as the mailer writes them at completion (three months
    ahead, so nothing is sent); the answers come as tracking publishes them."""
    org_id, follows_up, only_intake = uuid4(), uuid4(), uuid4()
    later = datetime.now(UTC) + timedelta(days=90)
    for participant in (follows_up, only_intake):
        await db_fetch(
            "mailer",
            "INSERT INTO transactional_mail (id, kind, org_id, participant_id, contact_id, context, status, attempts,"
            " due_at, created_at) VALUES ($1, 'questionnaire_reminder', $2, $3, $3,"
            " '{\"questionnaire_url\": \"http://t.test/q/x\"}'::jsonb, 'due', 0, $4, now())",
            uuid4(),
            org_id,
            participant,
            later,
        )

    def answered(participant: UUID, moment: str) -> Envelope:
        now = datetime.now(UTC)
        payload = QuestionnaireAnswered(
            participant_id=participant,
            moment=moment,  # type: ignore[arg-type]
            scale_version="djg6-2006",
            answers=dict.fromkeys(ITEMS, "nee"),
            emotional=0,
            social=3,
            total=3,
            total_imputed=False,
            category="moderately_lonely",
            answered_at=now,
        )
        return Envelope.wrap(payload, org_id=org_id, participant_id=participant, occurred_at=now)

    intake, follow_up = answered(only_intake, "intake"), answered(follows_up, "follow_up")
    await publish([intake, follow_up])

    async def handled(event_id: UUID) -> bool | None:
        count = await db_count("mailer", "SELECT count(*) FROM processed_events WHERE event_id = $1", event_id)
        return True if count else None

    await eventually(lambda: handled(intake.event_id), what="the mailer to handle the intake answer")
    await eventually(lambda: handled(follow_up.event_id), what="the mailer to handle the follow-up answer")
    rows = await db_fetch(
        "mailer",
        "SELECT participant_id, status, coalesce(context, 'null') = 'null' AS dropped FROM transactional_mail"
        " WHERE participant_id = ANY($1::uuid[])",
        [follows_up, only_intake],
    )
    # A cancelled mail keeps neither its link nor (JSON null) its context.
    states = {r["participant_id"]: (r["status"], r["dropped"]) for r in rows}
    assert states == {follows_up: ("cancelled", True), only_intake: ("due", False)}


async def test_an_intake_answer_after_the_day_2_lesson_gets_a_warm_page_and_stores_nothing(
    http: httpx.AsyncClient,
) -> None:
    """The intake counts only before the day-2 lesson is sent. The mailer sends one lesson a
    real day, so the day-2 mail.sent is published here as the mailer publishes it."""
    organisation = await create_organisation(http, display_name="Buurtkracht West")
    await add_coach(http, organisation["id"])
    participant_id, email = await enrol_starting_now(http, organisation["id"], first_name="Riet")
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    html = (await raw_mail(http, mails[0]["id"])).get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    (url,) = re.findall(r'"(https?://[^"\s<>]+/q/[A-Za-z0-9_.\-]+)"', html)
    started = await http.post(url, data={**read_form((await http.get(url)).text).hidden, "action": "next"})
    assert started.status_code == 200 and "Vraag 1 van 6" in started.text

    delivery = uuid4()
    sent = MailSent(
        delivery_id=delivery,
        day=2,
        lesson_title="Les 2",
        pack="meer-contact",
        pack_version="v1",
        message_id=f"<{delivery}@test>",
        sent_at=datetime.now(UTC),
    )
    org_id = UUID(organisation["id"])
    await publish([Envelope.wrap(sent, org_id=org_id, participant_id=participant_id, occurred_at=sent.sent_at)])

    async def tracking_knows_day_2() -> bool | None:
        count = await db_count("tracking", "SELECT count(*) FROM sent_mail WHERE delivery_id = $1", delivery)
        return True if count else None

    await eventually(tracking_knows_day_2, what="tracking to see the day-2 mail")
    page = await http.get(url)
    assert page.status_code == 410 and "al voorbij" in page.text and "Buurtkracht West" in page.text
    assert "tweede les" in page.text and "we slaan niets op" in page.text
    # The form already open in the browser: its last step is refused the same way.
    last = await http.post(url, data={"moment": "intake", "step": "6", "action": "next", **dict.fromkeys(ITEMS, "ja")})
    assert last.status_code == 410 and "al voorbij" in last.text
    stored = "SELECT count(*) FROM questionnaire_answer WHERE participant_id = $1"
    assert await db_count("tracking", stored, participant_id) == 0
    assert await answered_events(participant_id) == []
