"""The outcome statistics against figures worked out here by hand, and with scipy/numpy."""

from __future__ import annotations

import csv
import io
import math
from datetime import date
from uuid import UUID, uuid4

import numpy as np
import pytest
from scipy import stats

from services.coaching import outcomes
from services.coaching.outcomes import MomentScore, ParticipantOutcome

ORG = UUID(int=1)
OTHER_ORG = UUID(int=2)
COACH = UUID(int=10)
TODAY = date(2026, 11, 30)


def score(total: int | None, emotional: int | None = None, social: int | None = None) -> MomentScore:
    category = None
    if total is not None:
        category = "not_lonely" if total <= 1 else "moderately_lonely" if total <= 4 else "severely_lonely"
    return MomentScore(total=total, emotional=emotional, social=social, category=category)


def person(
    intake: int | None = None,
    end: int | None = None,
    *,
    org: UUID = ORG,
    coach: UUID | None = COACH,
    start: date = date(2026, 3, 2),
    completed_on: date | None = None,
    follow_up: int | None = None,
) -> ParticipantOutcome:
    scores = {}
    for moment, total in (("intake", intake), ("end", end), ("follow_up", follow_up)):
        if total is not None:
            scores[moment] = score(total, min(total, 3), max(0, total - 3))
    return ParticipantOutcome(
        participant_id=uuid4(),
        org_id=org,
        coach_id=coach,
        start_date=start,
        status="completed" if completed_on else "active",
        completed_on=completed_on,
        scores=scores,
    )


def test_paired_change_by_hand() -> None:
    # differences: -1, -2, 0, -1, -1  -> mean -1; deviations 0,-1,1,0,0 -> sd = sqrt(2/4) = 0.70711
    pairs = [(4, 3), (5, 3), (2, 2), (3, 2), (6, 5)]
    change = outcomes.paired_change(pairs, score="total", moment="end")
    assert change.n == 5
    assert change.mean_difference == pytest.approx(-1.0)
    assert change.sd_difference == pytest.approx(math.sqrt(0.5))
    # t(0.975, 4) = 2.776445 (any t table); half width = 2.776445 * 0.707107 / sqrt(5) = 0.877983
    assert change.ci_low == pytest.approx(-1 - 0.877983, abs=1e-5)
    assert change.ci_high == pytest.approx(-1 + 0.877983, abs=1e-5)
    assert change.effect_size_dz == pytest.approx(-1 / math.sqrt(0.5))
    assert change.mean_before == pytest.approx(4.0) and change.mean_after == pytest.approx(3.0)


def test_paired_change_agrees_with_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(17)
    before = rng.integers(0, 7, size=23)
    after = np.clip(before - rng.integers(-1, 3, size=23), 0, 6)
    change = outcomes.paired_change(
        list(zip(before.tolist(), after.tolist(), strict=True)), score="total", moment="end"
    )
    result = stats.ttest_rel(after, before)
    interval = result.confidence_interval(0.95)
    assert change.ci_low == pytest.approx(interval.low)
    assert change.ci_high == pytest.approx(interval.high)
    differences = after - before
    assert change.mean_difference == pytest.approx(differences.mean())
    assert change.effect_size_dz == pytest.approx(differences.mean() / differences.std(ddof=1))


def test_paired_change_without_spread_has_no_effect_size() -> None:
    change = outcomes.paired_change([(3, 2)] * 6, score="total", moment="end")
    assert change.mean_difference == -1 and change.ci_low == -1 and change.ci_high == -1
    assert change.effect_size_dz is None


def test_fewer_than_five_pairs_are_suppressed() -> None:
    change = outcomes.paired_change([(3, 2), (4, 2), (5, 5), (1, 0)], score="total", moment="end")
    assert change.suppressed and change.n == 4
    assert change.mean_difference is None and change.ci_low is None and change.effect_size_dz is None


def test_group_of_four_shows_nothing() -> None:
    group = outcomes.group_report([person(3, 2) for _ in range(4)], kind="cohort", key="k", label="k", today=TODAY)
    assert group.suppressed and group.enrolled is None and group.completed is None
    assert group.moments == () and group.changes == ()


def test_group_figures_by_hand() -> None:
    done = date(2026, 5, 1)
    members = [
        person(4, 2, completed_on=done),
        person(5, 3, completed_on=done),
        person(2, 2, completed_on=done),
        person(6, 4, completed_on=done),
        person(1, 1, completed_on=done),
        person(3, None, completed_on=done),  # no end answer: not paired
        person(None, 5, completed_on=done),  # no intake answer: not paired
        person(4),  # still running: not asked at the end
    ]
    group = outcomes.group_report(members, kind="organisation", key="o", label="o", today=TODAY)
    assert group.enrolled == 8 and group.completed == 7
    intake = group.moment("intake")
    end = group.moment("end")
    follow_up = group.moment("follow_up")
    assert intake is not None and end is not None and follow_up is not None
    assert (intake.asked, intake.responded) == (8, 7)
    assert intake.response_rate == pytest.approx(7 / 8)
    assert intake.scores["total"].mean == pytest.approx((4 + 5 + 2 + 6 + 1 + 3 + 4) / 7)
    # categories at intake: 1 -> not; 2,3,4,4 -> moderately; 5,6 -> severely
    assert intake.category_shares == pytest.approx(
        {"not_lonely": 1 / 7, "moderately_lonely": 4 / 7, "severely_lonely": 2 / 7}
    )
    assert (end.asked, end.responded) == (7, 6)
    assert end.scores["total"].mean == pytest.approx((2 + 3 + 2 + 4 + 1 + 5) / 6)
    # completed 1 May, so the follow-up (after 91 days) was asked of all 7 completed; none answered
    assert (follow_up.asked, follow_up.responded, follow_up.suppressed) == (7, 0, True)
    assert follow_up.scores["total"].mean is None and follow_up.category_shares is None
    change = group.change("end")
    assert change is not None and change.n == 5
    # differences -2, -2, 0, -2, 0 -> mean -1.2
    assert change.mean_difference == pytest.approx(-1.2)
    assert group.change("follow_up") is not None and group.change("follow_up").suppressed  # type: ignore[union-attr]


def test_follow_up_is_asked_only_three_months_after_the_end() -> None:
    recent = [person(3, 2, completed_on=date(2026, 10, 1)) for _ in range(5)]
    older = [person(3, 2, completed_on=date(2026, 8, 31), follow_up=1) for _ in range(5)]
    group = outcomes.group_report(recent + older, kind="organisation", key="o", label="o", today=TODAY)
    follow_up = group.moment("follow_up")
    assert follow_up is not None and follow_up.asked == 5 and follow_up.response_rate == 1.0
    change = group.change("follow_up")
    assert change is not None and change.n == 5 and change.mean_difference == pytest.approx(-2.0)


def test_subscale_means_leave_missing_scores_out() -> None:
    members = [person(3, 2) for _ in range(5)]
    members.append(
        ParticipantOutcome(
            participant_id=uuid4(),
            org_id=ORG,
            coach_id=COACH,
            start_date=date(2026, 3, 2),
            status="active",
            completed_on=None,
            scores={"intake": MomentScore(total=None, emotional=None, social=3, category=None)},
        )
    )
    intake = outcomes.group_report(members, kind="organisation", key="o", label="o", today=TODAY).moment("intake")
    assert intake is not None and intake.responded == 6
    assert intake.scores["total"].n == 5 and intake.scores["social"].n == 6
    assert intake.scores["social"].mean == pytest.approx((0 * 5 + 3) / 6)


def test_organisation_report_groups_by_cohort_and_coach_and_ignores_other_organisations() -> None:
    other_coach, third_coach = UUID(int=11), UUID(int=12)
    march = [person(3, 2) for _ in range(6)]
    april = [person(4, 3, start=date(2026, 4, 10), coach=other_coach) for _ in range(5)]
    may = [person(4, 3, start=date(2026, 5, 10), coach=third_coach) for _ in range(5)]
    stranger = [person(6, 6, org=OTHER_ORG) for _ in range(10)]
    report = outcomes.organisation_report(
        march + april + may + stranger, org_id=ORG, label="Org", coach_names={COACH: "Sanne"}, today=TODAY
    )
    assert report.overall.enrolled == 16
    assert [(c.key, c.label, c.enrolled) for c in report.cohorts] == [
        ("2026-03", "Gestart in maart 2026", 6),
        ("2026-04", "Gestart in april 2026", 5),
        ("2026-05", "Gestart in mei 2026", 5),
    ]
    labels = {c.key: (c.label, c.enrolled) for c in report.coaches}
    assert labels[str(COACH)] == ("Sanne", 6) and labels[str(other_coach)] == ("Coach (naam onbekend)", 5)


def test_a_small_group_hides_the_smallest_other_group_too() -> None:
    """Otherwise the whole minus the shown groups tells the small group's figures."""
    big = [person(3, 2, start=date(2026, 3, 1)) for _ in range(7)]
    middle = [person(5, 1, start=date(2026, 4, 1)) for _ in range(5)]
    small = [person(6, 6, start=date(2026, 5, 1)) for _ in range(2)]
    report = outcomes.organisation_report(big + middle + small, org_id=ORG, label="O", coach_names={}, today=TODAY)
    assert [(c.key, c.suppressed, c.enrolled) for c in report.cohorts] == [
        ("2026-03", False, 7),
        ("2026-04", True, None),
        ("2026-05", True, None),
    ]
    # Two groups of which one is small: both are hidden, only the whole is shown.
    two = outcomes.organisation_report(big + small, org_id=ORG, label="O", coach_names={}, today=TODAY)
    assert two.overall.enrolled == 9 and [c.suppressed for c in two.cohorts] == [True, True]
    # Participants without a coach count as hidden too.
    without = [person(3, 2, coach=None) for _ in range(3)]
    coaches = outcomes.organisation_report(big + without, org_id=ORG, label="O", coach_names={}, today=TODAY).coaches
    assert [c.suppressed for c in coaches] == [True]
    # Hidden groups that together are five or more need nothing more.
    five_hidden = [person(2, 2, start=date(2026, 6, 1)) for _ in range(3)]
    ok = outcomes.organisation_report(big + small + five_hidden, org_id=ORG, label="O", coach_names={}, today=TODAY)
    assert [c.suppressed for c in ok.cohorts] == [False, True, True]


def test_licensor_report_across_and_per_organisation() -> None:
    third = UUID(int=3)
    members = [person(3, 2) for _ in range(5)] + [person(5, 5, org=OTHER_ORG) for _ in range(6)]
    members += [person(5, 5, org=third) for _ in range(2)]
    report = outcomes.licensor_report(members, organisation_names={ORG: "A", OTHER_ORG: "B"}, today=TODAY)
    assert report.overall.enrolled == 13
    shown = [(g.label, g.enrolled) for g in report.organisations]
    assert shown == [("A", None), ("B", 6), ("Organisatie (naam onbekend)", None)]


def test_pseudonyms_are_stable_per_key_and_differ_between_keys() -> None:
    pid = uuid4()
    first = outcomes.pseudonym("a-key-of-sixteen-chars", "participant", pid)
    assert first == outcomes.pseudonym("a-key-of-sixteen-chars", "participant", pid)
    assert first != outcomes.pseudonym("another-key-of-sixteen", "participant", pid)
    assert str(pid) not in first and len(first) == 16


def test_research_rows_carry_no_ids_and_leave_erased_participants_out() -> None:
    member = person(3, 2)
    erased = ParticipantOutcome(
        participant_id=uuid4(), org_id=ORG, coach_id=COACH, start_date=None, status="erased", completed_on=None
    )
    rows = outcomes.research_rows([member, erased], key="k" * 16)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == set(outcomes.RESEARCH_COLUMNS)
    assert str(member.participant_id) not in str(row.values()) and str(COACH) not in str(row.values())
    assert row["intake_total"] == 3 and row["end_total"] == 2 and row["follow_up_total"] is None


def test_csv_in_both_dialects_parses_back() -> None:
    members = [person(4, 2, completed_on=date(2026, 5, 1)) for _ in range(3)]
    members += [person(3, 2, completed_on=date(2026, 5, 1)) for _ in range(3)]
    group = outcomes.group_report(members, kind="organisation", key="o", label='Welzijn; "Zee"', today=TODAY)
    small = outcomes.group_report(members[:2], kind="coach", key="c", label="Sanne", today=TODAY)
    rows = outcomes.report_rows([group, small])
    dutch = list(csv.DictReader(io.StringIO(outcomes.csv_text(rows, outcomes.REPORT_COLUMNS, "nl")), delimiter=";"))
    plain = list(csv.DictReader(io.StringIO(outcomes.csv_text(rows, outcomes.REPORT_COLUMNS, "en"))))
    assert len(dutch) == len(plain) == 4
    assert dutch[0]["groep"] == plain[0]["groep"] == 'Welzijn; "Zee"'
    assert dutch[0]["gem_totaal"] == "3,5" and plain[0]["gem_totaal"] == "3.5"
    assert dutch[1]["verschil_totaal"] == "-1,5" and plain[1]["verschil_totaal"] == "-1.5"
    assert dutch[3]["opmerking"] == "te weinig deelnemers" and dutch[3]["ingeschreven"] == ""


def test_the_report_pdf_is_one_page_also_with_many_cohorts() -> None:
    from services.coaching.reports import outcome_pdf

    starts = [date(2021 + i // 12 % 5, 1 + i % 12, 1) for i in range(400)]
    members = [person(4, 2, completed_on=date(2026, 5, 1), start=start) for start in starts]
    report = outcomes.organisation_report(members, org_id=ORG, label="Welzijn", coach_names={}, today=TODAY)
    assert len(report.cohorts) == 60
    pdf = outcome_pdf(report.overall, report.cohorts, organisation="Welzijn", colour="#ffee00", today=TODAY)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") == 1


def test_production_refuses_the_development_research_export_key() -> None:
    from services.coaching.settings import CoachingSettings

    real = {"env": "production", "metrics_token": "m" * 20, "licensor_secret": "l" * 20}
    with pytest.raises(ValueError, match="MEER_RESEARCH_EXPORT_KEY"):
        CoachingSettings(**real)  # type: ignore[arg-type]
    assert CoachingSettings(**real, research_export_key="r" * 32).research_export_key == "r" * 32  # type: ignore[arg-type]


def test_an_intake_answer_counts_only_before_the_day_2_lesson_was_sent() -> None:
    from datetime import UTC, datetime, timedelta

    day_2_sent = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)
    assert outcomes.counts_as_intake(day_2_sent - timedelta(minutes=1), day_2_sent)
    assert not outcomes.counts_as_intake(day_2_sent, day_2_sent)
    assert not outcomes.counts_as_intake(day_2_sent + timedelta(days=2), day_2_sent)
    assert outcomes.counts_as_intake(day_2_sent + timedelta(days=200), None)
