"""The outcome reports' adapters: read the participants' scores and engagement from the
projection (ids and figures only, never names or contact details), and render the one-page
PDF for a municipality. The statistics themselves are in outcomes.py."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import outcomes
from services.coaching.documents import brand_colour, text_colour_on
from services.coaching.outcomes import GroupReport, MomentScore, ParticipantOutcome
from services.coaching.tables import DashboardRow, MailSeen, OrganisationView, QuestionnaireAnswerSeen


async def participants(
    session: AsyncSession, *, tz: ZoneInfo, org_id: UUID | None = None, coach_id: UUID | None = None
) -> list[ParticipantOutcome]:
    """Every enrolled participant (of one organisation, or all; optionally one coach's) with their scores."""
    rows_query = select(DashboardRow).where(col(DashboardRow.status) != "unknown")
    answers_query = select(QuestionnaireAnswerSeen)
    if org_id is not None:
        rows_query = rows_query.where(col(DashboardRow.org_id) == org_id)
        answers_query = answers_query.where(col(QuestionnaireAnswerSeen.org_id) == org_id)
    if coach_id is not None:
        rows_query = rows_query.where(col(DashboardRow.coach_id) == coach_id)
    intake_ends = await _next_lessons_sent(session, org_id=org_id)
    scores: dict[UUID, dict[str, MomentScore]] = defaultdict(dict)
    for answer in (await session.execute(answers_query)).scalars():
        if answer.moment == "intake" and not outcomes.counts_as_intake(
            answer.answered_at, intake_ends.get(answer.participant_id)
        ):
            continue
        scores[answer.participant_id][answer.moment] = MomentScore(
            total=answer.total,
            emotional=answer.emotional,
            social=answer.social,
            category=answer.category,
            total_imputed=answer.total_imputed,
        )
    found: list[ParticipantOutcome] = []
    for row in (await session.execute(rows_query)).scalars():
        ends = [at for at in (row.completed_at, row.programme_completed_at) if at is not None]
        found.append(
            ParticipantOutcome(
                participant_id=row.participant_id,
                org_id=row.org_id,
                coach_id=row.coach_id,
                start_date=row.start_date,
                status=row.status,
                completed_on=min(ends).astimezone(tz).date() if ends else None,
                scores=scores.get(row.participant_id, {}),
                opens=row.mails_opened,
                reports=row.reports,
                calls=row.calls_reached,
            )
        )
    return found


async def _next_lessons_sent(session: AsyncSession, *, org_id: UUID | None) -> dict[UUID, datetime]:
    """When each participant with an intake answer had their first lesson after day 1 sent."""
    intakes = select(col(QuestionnaireAnswerSeen.participant_id)).where(col(QuestionnaireAnswerSeen.moment) == "intake")
    if org_id is not None:
        intakes = intakes.where(col(QuestionnaireAnswerSeen.org_id) == org_id)
    found = await session.execute(
        select(col(MailSeen.participant_id), func.min(col(MailSeen.sent_at)))
        .where(col(MailSeen.day) >= 2, col(MailSeen.sent_at).is_not(None), col(MailSeen.participant_id).in_(intakes))
        .group_by(col(MailSeen.participant_id))
    )
    return {participant_id: sent_at for participant_id, sent_at in found.tuples() if sent_at is not None}


async def organisation_names(session: AsyncSession) -> dict[UUID, str | None]:
    """Every organisation's shown name (for the licensor)."""
    found = (await session.execute(select(OrganisationView))).scalars()
    return {o.org_id: o.display_name or o.name for o in found}


# --- the chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    value: float
    label: str


def mean_bars(group: GroupReport, *, left: float = 40, step: float = 110, base: float = 150) -> list[Bar]:
    """Bars of the mean total score (0–6) per moment; a suppressed moment has no bar."""
    bars: list[Bar] = []
    for index, figures in enumerate(group.moments):
        mean = figures.scores["total"].mean
        if mean is None:
            continue
        height = round(mean / 6 * 120, 1)
        bars.append(
            Bar(
                x=left + index * step,
                y=base - height,
                height=height,
                value=mean,
                label=outcomes.MOMENT_LABELS[figures.moment],
            )
        )
    return bars


def number(value: float | None, digits: int = 1) -> str:
    """A figure as a Dutch reader writes it (decimal comma), '–' when not shown."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}".replace(".", ",").replace("-", "−")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{round(value * 100)}%"


# --- the PDF --------------------------------------------------------------------------------


PDF_COHORTS = 12
"""The most recent cohorts the one page has room for."""


def outcome_pdf(
    group: GroupReport,
    cohorts: Sequence[GroupReport],
    *,
    organisation: str,
    colour: str | None,
    today: date,
) -> bytes:
    """One A4 page for a municipality: the organisation's figures, per moment and per cohort."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=1.8 * cm,
        rightMargin=1.8 * cm,
        topMargin=1.6 * cm,
        bottomMargin=1.4 * cm,
        title=f"Meer contact — resultaten {organisation}",
        author="Meer contact",
    )
    accent = brand_colour(colour)
    base = getSampleStyleSheet()
    heading = ParagraphStyle("h", parent=base["Heading1"], fontSize=17, leading=21, textColor=accent, spaceAfter=4)
    sub = ParagraphStyle("s", parent=base["Heading2"], fontSize=11.5, leading=14, spaceBefore=8, spaceAfter=4)
    body = ParagraphStyle("b", parent=base["BodyText"], fontSize=9, leading=12)
    small = ParagraphStyle("x", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444"))
    story: list[object] = [
        Paragraph(f"Meer contact: resultaten van {escape(organisation)}", heading),
        Paragraph(
            f"Gemeten met de eenzaamheidsschaal van De Jong Gierveld (6 vragen, score 0–6: hoger is eenzamer). "
            f"Stand op {today.day}-{today.month}-{today.year}.",
            body,
        ),
    ]
    if group.suppressed:
        story += [Spacer(1, 8), Paragraph(f"Er zijn nog {outcomes.TOO_FEW} om cijfers te tonen (minimaal 5).", body)]
    else:
        story += [
            Paragraph(
                f"{group.enrolled} deelnemers ingeschreven, {group.completed} hebben het programma afgerond.", body
            ),
            Paragraph("Per meetmoment", sub),
            _table(_moment_rows(group), accent, widths=[3.6, 2.2, 2.2, 2.0, 2.0, 2.0, 1.7]),
            Paragraph("* Eenzaam: matig of ernstig eenzaam (score 2 of hoger).", small),
            Paragraph("Verandering ten opzichte van de start", sub),
            _table(_change_rows(group), accent, widths=[3.6, 2.0, 2.4, 2.6, 3.2, 2.2]),
            Paragraph(
                "Start: antwoorden gegeven voordat de tweede les werd verstuurd; later ingevuld telt niet als start. "
                "Gepaard: alleen deelnemers die op beide momenten de vragenlijst invulden. Een negatief verschil "
                "betekent minder eenzaam. 95%-betrouwbaarheidsinterval met de t-verdeling; effectgrootte is "
                "Cohen's d<sub>z</sub> (gemiddeld verschil gedeeld door de standaardafwijking van de verschillen).",
                small,
            ),
        ]
        if cohorts:
            shown = list(cohorts)[-PDF_COHORTS:]
            story += [Paragraph("Per groep (maand van start)", sub), _table(_cohort_rows(shown), accent, None)]
            if len(shown) < len(cohorts):
                story.append(Paragraph(f"De laatste {PDF_COHORTS} groepen; alle groepen staan in de CSV.", small))
    story += [
        Spacer(1, 6),
        Paragraph(
            f"Cijfers over minder dan {outcomes.MIN_CELL} deelnemers worden niet getoond (–), zodat niemand "
            "herkenbaar is. De schaal is bedoeld voor groepen, niet als diagnose van één persoon.",
            small,
        ),
    ]
    document.build(story)
    return buffer.getvalue()


def _moment_rows(group: GroupReport) -> list[list[str]]:
    rows = [["Moment", "Ingevuld", "Respons", "Gem. totaal", "Emotioneel", "Sociaal", "Eenzaam*"]]
    for figures in group.moments:
        shares = figures.category_shares
        lonely = None if shares is None else shares["moderately_lonely"] + shares["severely_lonely"]
        rows.append(
            [
                outcomes.MOMENT_LABELS[figures.moment],
                f"{figures.responded} van {figures.asked}",
                percent(figures.response_rate),
                number(figures.scores["total"].mean),
                number(figures.scores["emotional"].mean),
                number(figures.scores["social"].mean),
                percent(lonely),
            ]
        )
    return rows


def _change_rows(group: GroupReport) -> list[list[str]]:
    rows = [["Van start naar", "Gepaard", "Verschil", "Start → later", "95%-interval", "Effect (d_z)"]]
    for moment in outcomes.LATER_MOMENTS:
        change = group.change(moment)
        if change is None:
            continue
        if change.suppressed:
            rows.append([outcomes.MOMENT_LABELS[moment], str(change.n), outcomes.TOO_FEW, "", "", ""])
            continue
        rows.append(
            [
                outcomes.MOMENT_LABELS[moment],
                str(change.n),
                number(change.mean_difference, 2),
                f"{number(change.mean_before)} → {number(change.mean_after)}",
                f"{number(change.ci_low, 2)} tot {number(change.ci_high, 2)}",
                number(change.effect_size_dz, 2),
            ]
        )
    return rows


def _cohort_rows(cohorts: Sequence[GroupReport]) -> list[list[str]]:
    rows = [["Groep", "Ingeschreven", "Afgerond", "Gem. start", "Gem. na les 60", "Verschil (gepaard)"]]
    for cohort in cohorts:
        if cohort.suppressed:
            rows.append([cohort.label, outcomes.TOO_FEW, "", "", "", ""])
            continue
        intake, end, change = cohort.moment("intake"), cohort.moment("end"), cohort.change("end")
        rows.append(
            [
                cohort.label,
                str(cohort.enrolled),
                str(cohort.completed),
                number(intake.scores["total"].mean if intake else None),
                number(end.scores["total"].mean if end else None),
                number(change.mean_difference if change else None, 2),
            ]
        )
    return rows


def _table(rows: list[list[str]], accent: colors.Color, widths: list[float] | None) -> Table:
    table = Table(rows, colWidths=[w * cm for w in widths] if widths else None, hAlign="LEFT")
    # "te weinig deelnemers" takes the rest of its row.
    spans = [
        ("SPAN", (column, index), (-1, index))
        for index, row in enumerate(rows)
        for column, cell in enumerate(row)
        if cell == outcomes.TOO_FEW
    ]
    table.setStyle(
        TableStyle(
            [
                *spans,
                ("FONT", (0, 0), (-1, -1), "Helvetica", 8.5),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
                ("TEXTCOLOR", (0, 0), (-1, 0), text_colour_on(accent)),
                ("BACKGROUND", (0, 0), (-1, 0), accent),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f4f6")]),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c8ccd0")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table
