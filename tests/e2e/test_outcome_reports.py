"""The outcome reports on the real stack: a scripted cohort is enrolled through enrolment's
API and answers on tracking's questionnaire pages, step by step as a browser posts them: at
intake through the link in each participant's real day-1 mail, at the end through a link
signed as the mailer signs the one in lesson 60 (that mail is 59 real days away, so the link
is minted here with the stack's tracking key, and programme.completed is published as the
mailer publishes it). The report shows the means, counts and paired interval computed here
independently (scipy on the scripted totals). Also: small cells, who may see what, CSV in
both dialects, the PDF, the researchers' export, and screenshots of the page (headless
Chromium) and the PDF (pdftoppm), saved under the test's tmp dir and checked for their text,
size and that they are not blank."""

from __future__ import annotations

import base64
import csv
import io
import re
import statistics
import struct
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright
from scipy import stats

from shared.events import Envelope, MailSent, ProgrammeCompleted, QuestionnaireAnswered
from shared.tracking_tokens import QuestionnaireToken, TokenSigner
from tests.e2e.conftest import (
    COACHING,
    DEV_TRACKING_KEY,
    ENROLMENT,
    LICENSOR,
    TRACKING,
    add_coach,
    create_organisation,
    db_count,
    eventually,
    mails_to,
    mint_staff_token,
    publish,
    raw_mail,
    staff_login,
    unique_email,
)
from tests.e2e.test_questionnaire import answer_all
from tests.support.browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.stack
# (coach, intake total, end total, finished the programme) per participant; None: no answer.
KARIN, LOTTE, PIET = "karin", "lotte", "piet"
COHORT: list[tuple[str, int | None, int | None, bool]] = [
    (KARIN, 5, 3, True),
    (KARIN, 4, 2, True),
    (KARIN, 6, 5, True),
    (KARIN, 3, 3, True),
    (KARIN, 4, 1, True),
    (KARIN, None, 2, True),  # no intake in time (one after the day-2 lesson, below): not in the paired change
    (LOTTE, 2, 2, True),
    (LOTTE, 5, None, True),  # no end answer: not in the paired change
    (LOTTE, 6, 4, True),
    (LOTTE, 3, 4, True),
    (LOTTE, None, None, False),  # still running, never answered
    (PIET, 4, 3, True),
    (PIET, 1, None, False),
]
NAMES = ("Ans", "Joop", "Fatima", "Henk", "Greet", "Kees", "Mieke", "Jan", "Wim", "Truus", "Bep", "Gerrit", "Sjaak")
ENROLLED, COMPLETED = len(COHORT), sum(1 for *_, done in COHORT if done)


def category(total: int) -> str:
    return "not_lonely" if total <= 1 else "moderately_lonely" if total <= 4 else "severely_lonely"


def answers_for(total: int) -> dict[str, str | None]:
    """Six answers whose total is `total`: the emotional items first ('ja' scores), then the
    social ones ('nee' scores)."""
    emotional = min(total, 3)
    social = total - emotional
    answers: dict[str, str | None] = {f"e{i}": ("ja" if i <= emotional else "nee") for i in (1, 2, 3)}
    return answers | {f"s{i}": ("nee" if i <= social else "ja") for i in (1, 2, 3)}


def answered(org_id: uuid.UUID, participant_id: uuid.UUID, moment: str, total: int, at: datetime) -> Envelope:
    emotional = min(total, 3)
    social = total - emotional
    answers = answers_for(total)
    payload = QuestionnaireAnswered(
        participant_id=participant_id,
        moment=moment,  # type: ignore[arg-type]
        scale_version="djg6-2006",
        answers=answers,  # type: ignore[arg-type]
        emotional=emotional,
        social=social,
        total=total,
        total_imputed=False,
        category=category(total),  # type: ignore[arg-type]
        answered_at=at,
    )
    return Envelope.wrap(payload, org_id=org_id, participant_id=participant_id, occurred_at=at)


def dutch(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace(".", ",").replace("-", "−")


async def enrol(http: httpx.AsyncClient, org_id: str, coach_id: str, name: str) -> uuid.UUID:
    return (await enrol_with_address(http, org_id, coach_id, name))[0]


async def enrol_with_address(http: httpx.AsyncClient, org_id: str, coach_id: str, name: str) -> tuple[uuid.UUID, str]:
    """Enrol someone whose day-1 mail (with the intake link) is due at once."""
    email = unique_email()
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants",
        json={
            "first_name": name,
            "email": email,
            "start_date": str(date.today()),
            "send_time": "00:00",
            "timezone": "UTC",
            "coach_id": coach_id,
        },
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"]), email


async def intake_link(http: httpx.AsyncClient, address: str) -> str:
    """The questionnaire link in the participant's day-1 mail."""
    mails = await eventually(lambda: mails_to(http, address), what="the day-1 mail")
    html = (await raw_mail(http, mails[0]["id"])).get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    (link,) = re.findall(r'"(https?://[^"\s<>]+/q/[A-Za-z0-9_.\-]+)"', html)
    return str(link)


def end_link(org_id: uuid.UUID, participant_id: uuid.UUID) -> str:
    """The link lesson 60 carries, signed as the mailer signs it (its mail is 59 days away)."""
    token = QuestionnaireToken(p=participant_id, o=org_id, m="end")
    return f"{TRACKING}/q/{TokenSigner([DEV_TRACKING_KEY]).sign_questionnaire(token)}"


async def test_the_outcome_report_of_a_scripted_cohort(http: httpx.AsyncClient, tmp_path: Path) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Uitkomstdorp")
    org_id = uuid.UUID(organisation["id"])
    coaches = {
        KARIN: await add_coach(http, organisation["id"], "Karin Jansen"),
        LOTTE: await add_coach(http, organisation["id"], "Lotte Visser"),
        PIET: await add_coach(http, organisation["id"], "Piet de Boer"),
    }
    enrolled = [
        await enrol_with_address(http, organisation["id"], coaches[c[0]]["id"], n)
        for c, n in zip(COHORT, NAMES, strict=True)
    ]
    ids = [participant_id for participant_id, _ in enrolled]

    async def all_projected() -> bool:
        count = await db_count(
            "coaching", "SELECT count(*) FROM dashboard_row WHERE org_id = $1 AND status <> 'unknown'", org_id
        )
        return count == len(ids)

    await eventually(all_projected, what="coaching to see the enrolments")

    start = datetime.now(UTC) - timedelta(days=70)
    envelopes: list[Envelope] = []
    replaced_once = False
    for (participant_id, address), (_, intake, end, done) in zip(enrolled, COHORT, strict=True):
        if intake is not None:
            url = await intake_link(http, address)
            if not replaced_once:
                # A first answer, replaced by a later one for the same moment.
                await answer_all(http, url, answers_for(0))
                replaced_once = True
            thanks = await answer_all(http, url, answers_for(intake))
            assert "Dank je wel" in thanks.text
        if end is not None:
            thanks = await answer_all(http, end_link(org_id, participant_id), answers_for(end))
            assert "Dank je wel" in thanks.text
        if done:
            completed = ProgrammeCompleted(days=60, completed_at=start + timedelta(days=60))
            envelopes.append(Envelope.wrap(completed, org_id=org_id, participant_id=participant_id))
    # Karin's sixth answers the intake only after her day-2 lesson was sent: it reaches coaching
    # (as when tracking had not yet seen that mail) but is not her baseline.
    late = ids[5]
    day_2 = uuid.uuid4()
    day_2_sent = MailSent(
        delivery_id=day_2,
        day=2,
        lesson_title="Les 2",
        pack="meer-contact",
        pack_version="v1",
        message_id=f"<{day_2}@test>",
        sent_at=start + timedelta(days=1),
    )
    envelopes.append(
        Envelope.wrap(day_2_sent, org_id=org_id, participant_id=late, occurred_at=start + timedelta(days=1))
    )
    envelopes.append(answered(org_id, late, "intake", 6, start + timedelta(days=1, hours=3)))
    await publish(envelopes)

    answers_expected = sum((i is not None) + (e is not None) for _, i, e, _ in COHORT) + 1  # the late intake

    async def all_answers_in() -> bool:
        found = await db_count(
            "coaching",
            "SELECT count(*) FROM questionnaire_answer_seen WHERE org_id = $1 AND total IS NOT NULL AND total > 0",
            org_id,
        )
        done = await db_count(
            "coaching", "SELECT count(*) FROM dashboard_row WHERE org_id = $1 AND status = 'completed'", org_id
        )
        day_2_seen = await db_count("coaching", "SELECT count(*) FROM mail_seen WHERE delivery_id = $1", day_2)
        return found == answers_expected and done == COMPLETED and day_2_seen == 1

    await eventually(all_answers_in, what="coaching to apply the answers and completions")
    # Every answer but the late one came through tracking's pages.
    through_pages = await db_count("tracking", "SELECT count(*) FROM questionnaire_answer WHERE org_id = $1", org_id)
    assert through_pages == answers_expected - 1

    # --- expected figures, computed here from the script (not by the code under test) ---
    intakes = [i for _, i, _, _ in COHORT if i is not None]
    ends = [e for _, _, e, _ in COHORT if e is not None]
    pairs = [(i, e) for _, i, e, _ in COHORT if i is not None and e is not None]
    before, after = [p[0] for p in pairs], [p[1] for p in pairs]
    t_test = stats.ttest_rel(after, before)
    interval = t_test.confidence_interval(0.95)
    differences = [a - b for b, a in pairs]
    mean_difference = sum(differences) / len(differences)
    d_z = mean_difference / statistics.stdev(differences)

    admin = await staff_login(http, organisation["id"], role="org_admin", name="Mirjam Bakker")
    response = await http.get(f"{COACHING}/api/outcomes", headers=admin["headers"])
    assert response.status_code == 200, response.text
    report = response.json()
    overall = report["overall"]
    assert (overall["enrolled"], overall["completed"], overall["suppressed"]) == (ENROLLED, COMPLETED, False)
    moments = {m["moment"]: m for m in overall["moments"]}
    assert (moments["intake"]["responded"], moments["intake"]["asked"]) == (len(intakes), ENROLLED)
    assert (moments["end"]["responded"], moments["end"]["asked"]) == (len(ends), COMPLETED)
    assert moments["intake"]["scores"]["total"]["mean"] == pytest.approx(sum(intakes) / len(intakes))
    assert moments["end"]["scores"]["total"]["mean"] == pytest.approx(sum(ends) / len(ends))
    severe_at_intake = sum(1 for t in intakes if t >= 5) / len(intakes)
    assert moments["intake"]["category_shares"]["severely_lonely"] == pytest.approx(severe_at_intake)
    change = next(c for c in overall["changes"] if c["moment"] == "end" and c["score"] == "total")
    assert change["n"] == len(pairs) == 9
    assert change["mean_difference"] == pytest.approx(mean_difference)
    assert change["ci_low"] == pytest.approx(interval.low)
    assert change["ci_high"] == pytest.approx(interval.high)
    assert change["effect_size_dz"] == pytest.approx(d_z)
    follow_up = next(c for c in overall["changes"] if c["moment"] == "follow_up" and c["score"] == "total")
    assert follow_up["suppressed"] is True and follow_up["mean_difference"] is None
    # Per coach: Karin's six are shown; Piet's two are a small cell, and Lotte's five are
    # hidden too, or the organisation minus Karin and Lotte would tell Piet's figures.
    by_coach = {c["label"]: c for c in report["coaches"]}
    assert by_coach["Karin Jansen"]["enrolled"] == 6 and not by_coach["Karin Jansen"]["suppressed"]
    karin_intakes = [i for c, i, _, _ in COHORT if c == KARIN and i is not None]
    karin_moments = {m["moment"]: m for m in by_coach["Karin Jansen"]["moments"]}
    assert karin_moments["intake"]["scores"]["total"]["mean"] == pytest.approx(sum(karin_intakes) / 5)
    for hidden in ("Piet de Boer", "Lotte Visser"):
        assert by_coach[hidden]["suppressed"] is True and by_coach[hidden]["enrolled"] is None
        assert by_coach[hidden]["moments"] == [] and by_coach[hidden]["changes"] == []
    assert [c["enrolled"] for c in report["cohorts"]] == [ENROLLED]

    # --- the page, in headless Chromium ---
    http.cookies.set("meer_coaching_session", admin["token"])
    html = (await http.get(f"{COACHING}/uitkomsten")).text
    assert "Gepaard:" in html and "Cohen's d<sub>z</sub>" in html
    assert "voordat de tweede les werd verstuurd" in html  # how the intake is defined
    assert f"{dutch(interval.low, 2)} tot {dutch(interval.high, 2)}" in html
    assert dutch(mean_difference, 2) in html and dutch(sum(intakes) / len(intakes), 1) in html
    assert "Piet de Boer" in html and "te weinig deelnemers" in html
    assert not any(f">{n}<" in html or f" {n} " in html for n in NAMES)  # no participant names
    shot = tmp_path / "outcome-report.png"
    shown = " ".join((await screenshot_page(admin["token"], shot)).split())
    assert "Verandering ten opzichte van de start" in shown and "voordat de tweede les werd verstuurd" in shown
    assert f"{dutch(interval.low, 2)} tot {dutch(interval.high, 2)}" in shown
    facts = await image_facts(shot)
    assert facts.width == 1200 and facts.height >= 900, facts  # the viewport's width, the whole page
    assert facts.colours >= 8 and facts.top_share < 0.98, facts  # not blank: text, bars and the brand colour

    # --- CSV in both dialects ---
    for dialect, delimiter, decimal in (("nl", ";", ","), ("en", ",", ".")):
        answer = await http.get(f"{COACHING}/api/outcomes.csv", params={"dialect": dialect}, headers=admin["headers"])
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=delimiter))
        organisation_rows = {r["moment"]: r for r in rows if r["groep_soort"] == "organisatie"}
        end_row = organisation_rows["end"]
        assert end_row["ingeschreven"] == str(ENROLLED) and end_row["gepaard_n"] == "9"
        assert end_row["verschil_totaal"] == str(round(mean_difference, 2)).replace(".", decimal)
        assert end_row["ci95_laag"] == str(round(interval.low, 2)).replace(".", decimal)
        piet = next(r for r in rows if r["groep"] == "Piet de Boer")
        assert piet["opmerking"] == "te weinig deelnemers" and piet["ingeschreven"] == ""
    page_csv = await http.get(f"{COACHING}/uitkomsten.csv?scheiding=excel")
    assert page_csv.content.startswith("\ufeff".encode()) and b";" in page_csv.content
    wrong = await http.get(f"{COACHING}/uitkomsten.csv?scheiding=tab")
    assert wrong.status_code == 400 and "Kies" in wrong.text

    # --- the one-page PDF ---
    pdf = await http.get(f"{COACHING}/uitkomsten.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    pdf_shot = tmp_path / "outcome-report-pdf.png"
    check_pdf(pdf.content, pdf_shot)
    facts = await image_facts(pdf_shot)
    # A4 portrait at 80 dpi: 595 x 842 points make 661 x 935 pixels.
    assert abs(facts.width - 661) <= 1 and abs(facts.height - 935) <= 1, facts
    assert facts.colours >= 8 and facts.top_share < 0.98, facts

    # --- the researchers' export ---
    first = await http.get(f"{COACHING}/api/outcomes/research-export.csv", headers=admin["headers"])
    second = await http.get(f"{COACHING}/api/outcomes/research-export.csv", headers=admin["headers"])
    assert first.status_code == 200 and first.content == second.content  # stable pseudonyms
    exported = list(csv.DictReader(io.StringIO(first.text)))
    assert len(exported) == ENROLLED
    text = first.text
    assert all(str(i) not in text for i in ids) and organisation["id"] not in text
    assert not any(n in text for n in NAMES) and "@" not in text
    assert sorted(int(r["intake_total"]) for r in exported if r["intake_total"]) == sorted(intakes)

    await check_who_sees_what(http, org_id, coaches, report)


async def check_who_sees_what(
    http: httpx.AsyncClient, org_id: uuid.UUID, coaches: dict[str, dict[str, Any]], report: dict[str, Any]
) -> None:
    """Another organisation's admin gets nothing of this one; a coach only their own participants."""
    other = await create_organisation(http, display_name="Welzijn Elders")
    stranger = {"Authorization": f"Bearer {mint_staff_token('org_admin', uuid.UUID(other['id']))}"}
    theirs = (await http.get(f"{COACHING}/api/outcomes", headers=stranger)).json()
    assert theirs["overall"]["suppressed"] is True and theirs["cohorts"] == [] and theirs["coaches"] == []
    exported = await http.get(f"{COACHING}/api/outcomes/research-export.csv", headers=stranger)
    assert list(csv.DictReader(io.StringIO(exported.text))) == []

    karin = {"Authorization": f"Bearer {mint_staff_token('coach', org_id, uuid.UUID(coaches[KARIN]['id']))}"}
    own = (await http.get(f"{COACHING}/api/outcomes", headers=karin)).json()
    assert own["overall"]["enrolled"] == 6 and own["coaches"] == []
    for path in ("/api/outcomes.pdf", "/api/outcomes/research-export.csv"):
        assert (await http.get(f"{COACHING}{path}", headers=karin)).status_code == 403
    karin_cookie = {"meer_coaching_session": karin["Authorization"].removeprefix("Bearer ")}
    async with httpx.AsyncClient(timeout=10, cookies=karin_cookie) as browser:
        page = await browser.get(f"{COACHING}/uitkomsten")
        assert page.status_code == 200 and "Uw deelnemers" in page.text
        assert "Lotte Visser" not in page.text and "Per coach" not in page.text
        assert (await browser.get(f"{COACHING}/uitkomsten.pdf")).status_code == 403
        assert (await browser.get(f"{COACHING}/uitkomsten/onderzoek.csv")).status_code == 403
    stranger_cookie = {"meer_coaching_session": stranger["Authorization"].removeprefix("Bearer ")}
    async with httpx.AsyncClient(timeout=10, cookies=stranger_cookie) as browser:
        page = await browser.get(f"{COACHING}/uitkomsten")
        assert page.status_code == 200 and "Nog geen cijfers" in page.text and "Karin Jansen" not in page.text
    piet = {"Authorization": f"Bearer {mint_staff_token('coach', org_id, uuid.UUID(coaches[PIET]['id']))}"}
    assert (await http.get(f"{COACHING}/api/outcomes", headers=piet)).json()["overall"]["suppressed"] is True

    # The licensor: across organisations, with this one's figures as the admin sees them.
    assert (await http.get(f"{COACHING}/api/licensor/outcomes", headers=karin)).status_code == 401
    assert (await http.get(f"{COACHING}/api/licensor/outcomes")).status_code == 401
    licensor = (await http.get(f"{COACHING}/api/licensor/outcomes", headers=LICENSOR)).json()
    ours = next(g for g in licensor["organisations"] if g["key"] == str(org_id))
    assert ours["moments"] == report["overall"]["moments"] and ours["changes"] == report["overall"]["changes"]
    everything = await http.get(f"{COACHING}/api/licensor/outcomes/research-export.csv", headers=LICENSOR)
    assert everything.status_code == 200 and len(list(csv.DictReader(io.StringIO(everything.text)))) >= ENROLLED


@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    colours: int
    top_share: float
    """The share of the most common colour among the sampled pixels (1.0: one flat colour)."""


async def image_facts(png: Path) -> ImageFacts:
    """Size from the PNG header; colours counted by Chromium decoding the image on a canvas
    (every 7th pixel), so a blank or one-colour image shows."""
    content = png.read_bytes()
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and content[12:16] == b"IHDR"
    width, height = struct.unpack(">II", content[16:24])
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            counted = await page.evaluate(COUNT_COLOURS, base64.b64encode(content).decode())
        finally:
            await browser.close()
    assert (counted["width"], counted["height"]) == (width, height)
    return ImageFacts(width, height, counted["colours"], counted["top"] / counted["samples"])


COUNT_COLOURS = """async (data) => {
  const image = new Image();
  image.src = "data:image/png;base64," + data;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height).data;
  const counts = new Map();
  let samples = 0;
  for (let i = 0; i < pixels.length; i += 4 * 7) {
    const key = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
    samples += 1;
  }
  let top = 0;
  for (const count of counts.values()) top = Math.max(top, count);
  return {width: image.width, height: image.height, colours: counts.size, top, samples};
}"""


async def screenshot_page(token: str, path: Path) -> str:
    """Open the report page as the signed-in user, save a full-page screenshot; the page's text."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 900})
            await context.add_cookies([{"name": "meer_coaching_session", "value": token, "url": COACHING}])
            page = await context.new_page()
            errors: list[str] = []
            page.on(
                "console", lambda message: errors.append(message.text) if "Content Security" in message.text else None
            )
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
            )
            answer = await page.goto(f"{COACHING}/uitkomsten")
            assert answer is not None and answer.status == 200
            await page.get_by_role("heading", name="Verandering ten opzichte van de start").wait_for()
            assert await page.locator("svg.chart rect.bar-human").count() == 2  # intake and end; no follow-up
            await page.screenshot(path=str(path), full_page=True)
            assert errors == []  # nothing the CSP refused, no missing style sheet or script
            return await page.locator("body").inner_text()
        finally:
            await browser.close()


def check_pdf(content: bytes, png: Path) -> None:
    pdf = png.with_suffix(".pdf")
    pdf.write_bytes(content)
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, flags=re.MULTILINE), info
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", str(pdf), str(png.with_suffix(""))], check=True)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Welzijn Uitkomstdorp" in text and "Gepaard" in text
    assert "voordat de tweede les werd verstuurd" in " ".join(text.split())  # how the intake is defined


async def test_erasure_removes_the_questionnaire_scores(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Vergeetdorp")
    org_id = uuid.UUID(organisation["id"])
    coach = await add_coach(http, organisation["id"], "Karin Jansen")
    participant_id = await enrol(http, organisation["id"], coach["id"], "Ans")
    await publish([answered(org_id, participant_id, "intake", 4, datetime.now(UTC))])

    async def scores() -> int:
        query = "SELECT count(*) FROM questionnaire_answer_seen WHERE participant_id = $1"
        return await db_count("coaching", query, participant_id)

    await eventually(scores, what="coaching to keep the intake scores")
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}/erase", headers=LICENSOR
    )
    assert response.status_code == 200, response.text

    async def gone() -> bool:
        return await scores() == 0

    await eventually(gone, what="participant.erased to delete the scores")
