"""The De Jong Gierveld scoring, checked over every combination of answers against an
independent formulation written here from the manual's rules."""

from __future__ import annotations

import itertools

import pytest

from services.tracking.questionnaire import (
    ITEM_ORDER,
    AnswerRefused,
    Scores,
    read_answers,
    score,
)

CHOICES = ("ja", "min_of_meer", "nee", None)


def expected(combo: tuple[str | None, ...]) -> Scores:
    """The manual's rules, written independently: positions 0-2 emotional, 3-5 social."""
    lonely = [
        None if answer is None else int(answer != "nee") if position < 3 else int(answer != "ja")
        for position, answer in enumerate(combo)
    ]
    emotional = None if None in lonely[:3] else sum(lonely[:3])
    social = None if None in lonely[3:] else sum(lonely[3:])
    gaps = [position for position, value in enumerate(lonely) if value is None]
    imputed = len(gaps) == 1
    if len(gaps) > 1:
        total = None
    elif not gaps:
        total = sum(lonely)
    else:
        group = range(3) if gaps[0] < 3 else range(3, 6)
        others = [lonely[p] for p in group if p != gaps[0]]
        # documented rule: the mean of the subscale's other two items, rounded half up
        total = sum(v for v in lonely if v is not None) + (1 if sum(others) >= 1 else 0)
    band = None
    if total is not None:
        band = {0: "not_lonely", 1: "not_lonely", 5: "severely_lonely", 6: "severely_lonely"}.get(
            total, "moderately_lonely"
        )
    return Scores(emotional, social, total, imputed, band)


def test_every_combination_of_answers_scores_as_the_manual_says() -> None:
    combos = list(itertools.product(CHOICES, repeat=6))
    assert len(combos) == 4096
    for combo in combos:
        answers = dict(zip(ITEM_ORDER, combo, strict=True))
        assert score(answers) == expected(combo), combo


def test_the_bands_and_missing_rules_on_known_cases() -> None:
    all_lonely = {"e1": "ja", "e2": "min_of_meer", "e3": "ja", "s1": "nee", "s2": "min_of_meer", "s3": "nee"}
    assert score(all_lonely) == Scores(3, 3, 6, False, "severely_lonely")
    none_lonely = {"e1": "nee", "e2": "nee", "e3": "nee", "s1": "ja", "s2": "ja", "s3": "ja"}
    assert score(none_lonely) == Scores(0, 0, 0, False, "not_lonely")
    # one emotional item missing, the other two disagree: imputed as 1 (0.5 rounded half up)
    one_gap = {"e1": "ja", "e2": "nee", "s1": "ja", "s2": "ja", "s3": "nee"}
    assert score(one_gap) == Scores(None, 1, 3, True, "moderately_lonely")
    # one social item missing, both others not lonely: imputed as 0
    assert score({**none_lonely, "s3": None}) == Scores(0, None, 0, True, "not_lonely")
    # two missing in different subscales: both subscales and the total are missing
    assert score({**none_lonely, "e1": None, "s1": None}) == Scores(None, None, None, False, None)
    assert score({}) == Scores(None, None, None, False, None)


def test_a_form_gives_the_six_items_and_refuses_an_unknown_answer() -> None:
    assert read_answers({"e1": "ja", "s2": "", "x": "nee"}) == {
        "e1": "ja", "e2": None, "e3": None, "s1": None, "s2": None, "s3": None,
    }  # fmt: skip
    with pytest.raises(AnswerRefused, match="Kies 'Ja', 'Min of meer' of 'Nee'"):
        read_answers({"e1": "misschien"})
    with pytest.raises(AnswerRefused):
        read_answers({"s3": "4"})


def test_the_form_goes_one_question_at_a_time_and_may_skip_or_go_back() -> None:
    from services.tracking.questionnaire import FormRefused, read_step

    start = read_step({"step": "0", "action": "next"})
    assert start.show == 1 and not start.done and set(start.answers.values()) == {None}
    assert read_step({"step": "1", "e1": "ja"}).show == 2
    unanswered = read_step({"step": "2", "e1": "ja", "action": "next"})
    assert unanswered.show == 2 and unanswered.error is not None and "Sla over" in unanswered.error
    skipped = read_step({"step": "2", "e1": "ja", "e2": "nee", "action": "skip"})
    assert skipped.show == 3 and skipped.answers["e2"] is None and skipped.answers["e1"] == "ja"
    assert read_step({"step": "3", "e1": "ja", "action": "back"}).show == 2
    last = read_step({"step": "6", "e1": "ja", "s3": "nee"})
    assert last.done and last.answers == {"e1": "ja", "e2": None, "e3": None, "s1": None, "s2": None, "s3": "nee"}
    out_of_range = read_step({"step": "4", "e1": "ja", "s1": "7"})
    assert out_of_range.show == 4 and out_of_range.error is not None and not out_of_range.done
    assert out_of_range.answers["e1"] == "ja" and out_of_range.answers["s1"] is None
    for bad in ({"step": "7"}, {"step": "-1"}, {"step": "x"}, {"step": "1", "action": "submit-all"}):
        with pytest.raises(FormRefused):
            read_step(bad)
