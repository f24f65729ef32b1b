"""Outcome statistics of the loneliness scale (De Jong Gierveld, 6 items), without I/O.

Per group (an organisation, a cohort = start month, a coach, all organisations): enrolled,
completed, the response per moment, mean scores, the share per category, and the paired
change from intake to the end and to the follow-up.

Rules, written down once:
- Enrolled: every participant coaching has seen enrolled (an erased one still counts, their
  answers are gone). Completed: the programme was finished (status completed).
- Intake: an answer counts as the intake only when given before the participant's day-2
  lesson was sent (the link comes with the day-1 lesson; later the programme may already have
  had an effect). Tracking refuses a later intake answer; `counts_as_intake` drops one that
  reached coaching anyway (tracking had not yet seen the day-2 mail).
- Response rate at intake: answered / enrolled. At the end: answered / completed. At the
  follow-up: answered / completed at least FOLLOW_UP_DAYS ago (only they were asked).
- Means and shares use the participants with that score (a missing total is left out).
- Paired change: only participants with a total (or subscale) at both moments; difference =
  later − intake (negative = less lonely). 95% interval: mean ± t(0.975, n−1) · sd / √n,
  sd with n−1. Effect size: Cohen's d_z = mean difference / sd of the differences.
- Small cells: a group with fewer than MIN_CELL participants is not shown at all, and a
  figure that rests on fewer than MIN_CELL participants is suppressed (None). Beside a small
  group the smallest other group is hidden too when the whole minus the shown groups would
  reveal fewer than MIN_CELL participants (complementary suppression, see `breakdown`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID

from scipy import stats

MOMENTS: tuple[str, ...] = ("intake", "end", "follow_up")
LATER_MOMENTS: tuple[str, ...] = ("end", "follow_up")
SCORES: tuple[str, ...] = ("total", "emotional", "social")
CATEGORIES: tuple[str, ...] = ("not_lonely", "moderately_lonely", "severely_lonely")
MIN_CELL = 5
"""Fewer participants than this: the figure is not shown."""
FOLLOW_UP_DAYS = 91
"""The follow-up is asked three months after the end."""

GroupKind = Literal["all", "organisation", "cohort", "coach"]


@dataclass(frozen=True)
class MomentScore:
    """One participant's scores at one moment (the latest answer)."""

    total: int | None
    emotional: int | None
    social: int | None
    category: str | None
    total_imputed: bool = False


def counts_as_intake(answered_at: datetime, next_lesson_sent_at: datetime | None) -> bool:
    """True when an intake answer given at `answered_at` is the baseline: before the
    participant's first lesson after day 1 was sent (`next_lesson_sent_at`, None: not yet)."""
    return next_lesson_sent_at is None or answered_at < next_lesson_sent_at


@dataclass(frozen=True)
class ParticipantOutcome:
    """What the reports need of one participant: no name, no contact details."""

    participant_id: UUID
    org_id: UUID
    coach_id: UUID | None
    start_date: date | None
    status: str
    completed_on: date | None
    scores: Mapping[str, MomentScore] = field(default_factory=dict)
    opens: int = 0
    reports: int = 0
    calls: int = 0

    @property
    def completed(self) -> bool:
        return self.status == "completed" or self.completed_on is not None

    @property
    def cohort(self) -> str | None:
        """The start month, 'YYYY-MM'."""
        return None if self.start_date is None else f"{self.start_date:%Y-%m}"


@dataclass(frozen=True)
class ScoreSummary:
    """Mean of one score at one moment; None when fewer than MIN_CELL have it."""

    n: int
    mean: float | None


@dataclass(frozen=True)
class MomentFigures:
    moment: str
    asked: int = field(metadata={"doc": "Participants who were asked (the denominator of the response rate)."})
    responded: int
    response_rate: float | None
    scores: Mapping[str, ScoreSummary]
    categorised: int
    category_shares: Mapping[str, float] | None
    """Share per category among those with a category; None when fewer than MIN_CELL."""
    suppressed: bool


@dataclass(frozen=True)
class PairedChange:
    """Change of one score from intake to a later moment, paired (both moments only)."""

    score: str
    moment: str
    n: int
    mean_before: float | None = None
    mean_after: float | None = None
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sd_difference: float | None = None
    effect_size_dz: float | None = None
    suppressed: bool = True


@dataclass(frozen=True)
class GroupReport:
    kind: GroupKind
    key: str
    label: str
    enrolled: int | None
    """None when the group is suppressed (fewer than MIN_CELL participants)."""
    completed: int | None
    suppressed: bool
    moments: tuple[MomentFigures, ...] = ()
    changes: tuple[PairedChange, ...] = ()

    def moment(self, name: str) -> MomentFigures | None:
        return next((m for m in self.moments if m.moment == name), None)

    def change(self, moment: str, score: str = "total") -> PairedChange | None:
        return next((c for c in self.changes if c.moment == moment and c.score == score), None)


def t_quantile(probability: float, df: int) -> float:
    """The t distribution's quantile (scipy)."""
    return float(stats.t.ppf(probability, df))


def paired_change(pairs: Sequence[tuple[int, int]], *, score: str, moment: str) -> PairedChange:
    """Mean difference (after − before) with its 95% t interval and Cohen's d_z."""
    n = len(pairs)
    if n < MIN_CELL:
        return PairedChange(score=score, moment=moment, n=n)
    differences = [after - before for before, after in pairs]
    mean_difference = statistics.fmean(differences)
    sd = statistics.stdev(differences)
    half_width = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return PairedChange(
        score=score,
        moment=moment,
        n=n,
        mean_before=statistics.fmean(before for before, _ in pairs),
        mean_after=statistics.fmean(after for _, after in pairs),
        mean_difference=mean_difference,
        ci_low=mean_difference - half_width,
        ci_high=mean_difference + half_width,
        sd_difference=sd,
        effect_size_dz=mean_difference / sd if sd > 0 else None,
        suppressed=False,
    )


def _asked(participants: Sequence[ParticipantOutcome], moment: str, today: date) -> int:
    if moment == "intake":
        return len(participants)
    if moment == "end":
        return sum(1 for p in participants if p.completed)
    due = today - timedelta(days=FOLLOW_UP_DAYS)
    return sum(1 for p in participants if p.completed_on is not None and p.completed_on <= due)


def moment_figures(participants: Sequence[ParticipantOutcome], moment: str, *, today: date) -> MomentFigures:
    """Response, mean scores and category shares at one moment."""
    answers = [p.scores[moment] for p in participants if moment in p.scores]
    asked = _asked(participants, moment, today)
    summaries: dict[str, ScoreSummary] = {}
    for name in SCORES:
        values = [v for v in (getattr(a, name) for a in answers) if v is not None]
        summaries[name] = ScoreSummary(
            n=len(values), mean=statistics.fmean(values) if len(values) >= MIN_CELL else None
        )
    categories = [a.category for a in answers if a.category is not None]
    shares = {c: categories.count(c) / len(categories) for c in CATEGORIES} if len(categories) >= MIN_CELL else None
    return MomentFigures(
        moment=moment,
        asked=asked,
        responded=len(answers),
        response_rate=len(answers) / asked if asked else None,
        scores=summaries,
        categorised=len(categories),
        category_shares=shares,
        suppressed=len(answers) < MIN_CELL,
    )


def _pairs(participants: Sequence[ParticipantOutcome], moment: str, score: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for p in participants:
        before, after = p.scores.get("intake"), p.scores.get(moment)
        if before is None or after is None:
            continue
        b, a = getattr(before, score), getattr(after, score)
        if b is not None and a is not None:
            found.append((b, a))
    return found


def group_report(
    participants: Sequence[ParticipantOutcome], *, kind: GroupKind, key: str, label: str, today: date
) -> GroupReport:
    """Every figure of one group; a group smaller than MIN_CELL shows nothing."""
    if len(participants) < MIN_CELL:
        return GroupReport(kind=kind, key=key, label=label, enrolled=None, completed=None, suppressed=True)
    return GroupReport(
        kind=kind,
        key=key,
        label=label,
        enrolled=len(participants),
        completed=sum(1 for p in participants if p.completed),
        suppressed=False,
        moments=tuple(moment_figures(participants, m, today=today) for m in MOMENTS),
        changes=tuple(
            paired_change(_pairs(participants, m, s), score=s, moment=m) for m in LATER_MOMENTS for s in SCORES
        ),
    )


def _grouped(
    participants: Iterable[ParticipantOutcome], key: Callable[[ParticipantOutcome], str | None]
) -> dict[str, list[ParticipantOutcome]]:
    groups: dict[str, list[ParticipantOutcome]] = defaultdict(list)
    for p in participants:
        k = key(p)
        if k is not None:
            groups[k].append(p)
    return dict(sorted(groups.items()))


def _hidden(group: GroupReport) -> GroupReport:
    return GroupReport(
        kind=group.kind, key=group.key, label=group.label, enrolled=None, completed=None, suppressed=True
    )


def breakdown(
    parent_size: int,
    members: Mapping[str, Sequence[ParticipantOutcome]],
    make: Callable[[str, Sequence[ParticipantOutcome]], GroupReport],
) -> tuple[GroupReport, ...]:
    """Groups of one breakdown of a parent, with complementary suppression: when the hidden
    participants (small groups, or in no group) number 1 to MIN_CELL − 1, the parent's figures
    minus the shown groups would reveal them, so the smallest shown groups are hidden too."""
    groups = [make(key, found) for key, found in members.items()]
    while True:
        shown = [g for g in groups if not g.suppressed]
        hidden = parent_size - sum(g.enrolled or 0 for g in shown)
        if not shown or hidden == 0 or hidden >= MIN_CELL:
            return tuple(groups)
        smallest = min(shown, key=lambda g: (g.enrolled or 0, g.key))
        groups = [_hidden(g) if g is smallest else g for g in groups]


@dataclass(frozen=True)
class OrganisationReport:
    """An organisation: the whole, per cohort (start month) and per coach."""

    overall: GroupReport
    cohorts: tuple[GroupReport, ...]
    coaches: tuple[GroupReport, ...]


def organisation_report(
    participants: Sequence[ParticipantOutcome],
    *,
    org_id: UUID,
    label: str,
    coach_names: Mapping[UUID, str | None],
    today: date,
) -> OrganisationReport:
    """The report of one organisation (only its own participants are used)."""
    own = [p for p in participants if p.org_id == org_id]
    cohorts = _grouped(own, lambda p: p.cohort)
    coaches = _grouped(own, lambda p: str(p.coach_id) if p.coach_id else None)
    return OrganisationReport(
        overall=group_report(own, kind="organisation", key=str(org_id), label=label, today=today),
        cohorts=breakdown(
            len(own),
            cohorts,
            lambda k, members: group_report(members, kind="cohort", key=k, label=cohort_label(k), today=today),
        ),
        coaches=breakdown(
            len(own),
            coaches,
            lambda k, members: group_report(
                members, kind="coach", key=k, label=coach_names.get(UUID(k)) or "Coach (naam onbekend)", today=today
            ),
        ),
    )


@dataclass(frozen=True)
class LicensorReport:
    """Across organisations, and per organisation."""

    overall: GroupReport
    organisations: tuple[GroupReport, ...]


def licensor_report(
    participants: Sequence[ParticipantOutcome], *, organisation_names: Mapping[UUID, str | None], today: date
) -> LicensorReport:
    by_org = _grouped(participants, lambda p: str(p.org_id))
    return LicensorReport(
        overall=group_report(participants, kind="all", key="all", label="Alle organisaties", today=today),
        organisations=breakdown(
            len(participants),
            by_org,
            lambda k, members: group_report(
                members,
                kind="organisation",
                key=k,
                label=organisation_names.get(UUID(k)) or "Organisatie (naam onbekend)",
                today=today,
            ),
        ),
    )


MONTH_NAMES = (
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
)


def cohort_label(key: str) -> str:
    """'2026-03' → 'Gestart in maart 2026'."""
    year, month = key.split("-")
    return f"Gestart in {MONTH_NAMES[int(month) - 1]} {year}"


# --- the researchers' export ---------------------------------------------------------------


def pseudonym(key: str, kind: str, identifier: UUID) -> str:
    """A stable pseudonym for one id under one export key (HMAC-SHA256, 16 hex characters)."""
    digest = hmac.new(key.encode(), f"{kind}:{identifier}".encode(), hashlib.sha256).hexdigest()
    return digest[:16]


RESEARCH_COLUMNS: tuple[str, ...] = (
    "participant",
    "organisation",
    "coach",
    "cohort",
    "status",
    "completed",
    "opens",
    "reports",
    "calls_reached",
    *(f"{m}_{s}" for m in MOMENTS for s in (*SCORES, "category", "total_imputed")),
)


def research_rows(participants: Iterable[ParticipantOutcome], *, key: str) -> list[dict[str, object]]:
    """One row per participant: pseudonyms, cohort, engagement and scores; no name, contact or date of birth.

    Erased participants are left out (their answers are gone anyway)."""
    rows: list[dict[str, object]] = []
    for p in participants:
        if p.status == "erased":
            continue
        row: dict[str, object] = {
            "participant": pseudonym(key, "participant", p.participant_id),
            "organisation": pseudonym(key, "organisation", p.org_id),
            "coach": pseudonym(key, "coach", p.coach_id) if p.coach_id else None,
            "cohort": p.cohort,
            "status": p.status,
            "completed": p.completed,
            "opens": p.opens,
            "reports": p.reports,
            "calls_reached": p.calls,
        }
        for m in MOMENTS:
            score = p.scores.get(m)
            for s in (*SCORES, "category", "total_imputed"):
                row[f"{m}_{s}"] = getattr(score, s) if score is not None else None
        rows.append(row)
    rows.sort(key=lambda r: str(r["participant"]))
    return rows


# --- tables and CSV ------------------------------------------------------------------------

CsvDialect = Literal["nl", "en"]
"""nl: ';' with a decimal comma (Dutch Excel); en: ',' with a decimal point."""

MOMENT_LABELS = {"intake": "Bij de start", "end": "Na les 60", "follow_up": "Drie maanden later"}
SCORE_LABELS = {"total": "Totaal (0–6)", "emotional": "Emotioneel (0–3)", "social": "Sociaal (0–3)"}
CATEGORY_LABELS = {
    "not_lonely": "Niet eenzaam",
    "moderately_lonely": "Matig eenzaam",
    "severely_lonely": "Ernstig eenzaam",
}
GROUP_KIND_LABELS = {"all": "alle organisaties", "organisation": "organisatie", "cohort": "groep", "coach": "coach"}
TOO_FEW = "te weinig deelnemers"

REPORT_COLUMNS: tuple[str, ...] = (
    "groep_soort",
    "groep",
    "moment",
    "ingeschreven",
    "afgerond",
    "gevraagd",
    "ingevuld",
    "respons_pct",
    "gem_totaal",
    "gem_emotioneel",
    "gem_sociaal",
    "niet_eenzaam_pct",
    "matig_eenzaam_pct",
    "ernstig_eenzaam_pct",
    "gepaard_n",
    "verschil_totaal",
    "ci95_laag",
    "ci95_hoog",
    "effectgrootte_dz",
    "opmerking",
)
"""One row per group and moment; the change columns (from the start, paired) on the later moments."""


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def report_rows(groups: Iterable[GroupReport]) -> list[dict[str, object]]:
    """The report as flat rows (REPORT_COLUMNS), suppressed figures empty with a remark."""
    rows: list[dict[str, object]] = []
    for group in groups:
        base: dict[str, object] = {"groep_soort": GROUP_KIND_LABELS[group.kind], "groep": group.label}
        if group.suppressed:
            rows.append({**dict.fromkeys(REPORT_COLUMNS), **base, "opmerking": TOO_FEW})
            continue
        for figures in group.moments:
            shares = figures.category_shares or {}
            change = group.change(figures.moment)
            row: dict[str, object] = {
                **dict.fromkeys(REPORT_COLUMNS),
                **base,
                "moment": figures.moment,
                "ingeschreven": group.enrolled,
                "afgerond": group.completed,
                "gevraagd": figures.asked,
                "ingevuld": figures.responded,
                "respons_pct": _pct(figures.response_rate),
                "gem_totaal": _round(figures.scores["total"].mean),
                "gem_emotioneel": _round(figures.scores["emotional"].mean),
                "gem_sociaal": _round(figures.scores["social"].mean),
                "niet_eenzaam_pct": _pct(shares.get("not_lonely")),
                "matig_eenzaam_pct": _pct(shares.get("moderately_lonely")),
                "ernstig_eenzaam_pct": _pct(shares.get("severely_lonely")),
            }
            remarks = [f"scores: {TOO_FEW}"] if figures.suppressed else []
            if change is not None:
                row["gepaard_n"] = change.n
                if change.suppressed:
                    remarks.append(f"verandering: {TOO_FEW}")
                else:
                    row["verschil_totaal"] = _round(change.mean_difference)
                    row["ci95_laag"] = _round(change.ci_low)
                    row["ci95_hoog"] = _round(change.ci_high)
                    row["effectgrootte_dz"] = _round(change.effect_size_dz)
            row["opmerking"] = "; ".join(remarks) or None
            rows.append(row)
    return rows


def csv_text(rows: Sequence[Mapping[str, object]], columns: Sequence[str], dialect: CsvDialect) -> str:
    """CSV in one of two dialects; numbers with a decimal comma for Dutch Excel."""
    delimiter, decimal = (";", ",") if dialect == "nl" else (",", ".")

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float):
            return repr(value).replace(".", decimal) if math.isfinite(value) else ""
        return str(value)

    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in columns])
    return out.getvalue()
