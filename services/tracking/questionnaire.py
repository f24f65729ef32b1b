"""The 6-item De Jong Gierveld loneliness scale (De Jong Gierveld & Van Tilburg, 2006), without I/O:
the items, what a filled-in form says, and the scores.

Scoring, per the scale's manual: an emotional item (e1-e3) scores 1 for "ja" or "min of meer",
a social item (s1-s3, worded positively) scores 1 for "nee" or "min of meer". Subscales 0-3 each,
total 0-6: 0-1 not lonely, 2-4 moderately lonely, 5-6 severely lonely.

When the intake counts: the intake is the baseline before the programme has had an effect, so
an intake answer is taken only before the participant's day-2 lesson was sent (the link comes
with the day-1 lesson; reading that lesson is part of the start). Later the intake link shows a
page saying so and stores nothing (`intake_closed`); coaching's reports apply the same rule.

Missing answers: a subscale is missing when any of its three items is missing. The total is
missing when more than one item is missing. When exactly one item is missing, the total is
imputed and flagged (`total_imputed`): the missing item is scored as the mean of the two
answered items of its own subscale, rounded half up (both 0 -> 0; one of each -> 1;
both 1 -> 1), and added to the five answered items. The subscale it belongs to stays missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

Answer = Literal["ja", "min_of_meer", "nee"]
Moment = Literal["intake", "end", "follow_up"]
Category = Literal["not_lonely", "moderately_lonely", "severely_lonely"]

SCALE_VERSION: Final = "djg6-2006"
MOMENTS: Final[tuple[Moment, ...]] = ("intake", "end", "follow_up")
ANSWERS: Final[dict[Answer, str]] = {"ja": "Ja", "min_of_meer": "Min of meer", "nee": "Nee"}
_ANSWER_BY_VALUE: Final[dict[str, Answer]] = {answer: answer for answer in ANSWERS}

EMOTIONAL_ITEMS: Final = ("e1", "e2", "e3")
SOCIAL_ITEMS: Final = ("s1", "s2", "s3")
ITEMS: Final[dict[str, str]] = {
    "e1": "Ik ervaar een leegte om me heen.",
    "e2": "Ik mis mensen om me heen.",
    "e3": "Vaak voel ik me in de steek gelaten.",
    "s1": "Er zijn genoeg mensen op wie ik in geval van narigheid kan terugvallen.",
    "s2": "Ik heb veel mensen op wie ik volledig kan vertrouwen.",
    "s3": "Er zijn voldoende mensen met wie ik me nauw verbonden voel.",
}
ITEM_ORDER: Final[tuple[str, ...]] = tuple(ITEMS)

_LONELY_ANSWERS: Final[dict[str, frozenset[Answer]]] = {
    **dict.fromkeys(EMOTIONAL_ITEMS, frozenset({"ja", "min_of_meer"})),
    **dict.fromkeys(SOCIAL_ITEMS, frozenset({"nee", "min_of_meer"})),
}


@dataclass(frozen=True)
class Scores:
    """What one completed questionnaire says."""

    emotional: int | None
    social: int | None
    total: int | None
    total_imputed: bool
    category: Category | None


def item_score(item: str, answer: Answer) -> int:
    """1 when the answer points to loneliness on this item, else 0."""
    return 1 if answer in _LONELY_ANSWERS[item] else 0


def category(total: int) -> Category:
    """The scale's three bands of the total score."""
    if total <= 1:
        return "not_lonely"
    return "moderately_lonely" if total <= 4 else "severely_lonely"


def _subscale(items: tuple[str, ...], answers: Mapping[str, Answer | None]) -> int | None:
    given = [answers.get(item) for item in items]
    if any(answer is None for answer in given):
        return None
    return sum(item_score(item, answer) for item, answer in zip(items, given, strict=True) if answer is not None)


def score(answers: Mapping[str, Answer | None]) -> Scores:
    """Subscales, total and category of the answers (items absent from the mapping are missing)."""
    emotional = _subscale(EMOTIONAL_ITEMS, answers)
    social = _subscale(SOCIAL_ITEMS, answers)
    missing = [item for item in ITEM_ORDER if answers.get(item) is None]
    answered = sum(item_score(item, answer) for item in ITEM_ORDER if (answer := answers.get(item)) is not None)
    if len(missing) > 1:
        return Scores(emotional, social, None, False, None)
    if not missing:
        return Scores(emotional, social, answered, False, category(answered))
    (gap,) = missing
    siblings = EMOTIONAL_ITEMS if gap in EMOTIONAL_ITEMS else SOCIAL_ITEMS
    sibling_scores = [item_score(item, answer) for item in siblings if (answer := answers.get(item)) is not None]
    # Rounded half up: the mean of two 0/1 scores is 0, 0.5 or 1, and 0.5 becomes 1.
    imputed = 1 if 2 * sum(sibling_scores) >= len(sibling_scores) else 0
    total = answered + imputed
    return Scores(emotional, social, total, True, category(total))


def intake_closed(moment: Moment, now: datetime, next_lesson_sent_at: datetime | None) -> bool:
    """True when an answer for `moment` given at `now` can no longer be the intake: the
    participant's first lesson after day 1 was sent at `next_lesson_sent_at` (None: not yet)."""
    return moment == "intake" and next_lesson_sent_at is not None and now >= next_lesson_sent_at


class AnswerRefused(ValueError):
    """A submitted answer is not one of the scale's three (the message is Dutch, for the page)."""


def read_answer(raw: str | None) -> Answer | None:
    """One item's answer from a form field: one of the three, or '' / absent for "no answer"."""
    if raw is None or raw == "":
        return None
    answer = _ANSWER_BY_VALUE.get(raw)
    if answer is None:
        raise AnswerRefused("Dit antwoord kennen we niet. Kies 'Ja', 'Min of meer' of 'Nee', of sla de vraag over.")
    return answer


def valid_answers(form: Mapping[str, str]) -> dict[str, Answer | None]:
    """The answers of a refused form that are valid, to show the form again without the rest."""
    return {item: _ANSWER_BY_VALUE.get(form.get(item) or "") for item in ITEM_ORDER}


def read_answers(form: Mapping[str, str]) -> dict[str, Answer | None]:
    """All six items from a form (absent or empty: no answer); AnswerRefused for anything else."""
    return {item: read_answer(form.get(item)) for item in ITEM_ORDER}


# --- the form: one question per page, the answers so far carried in the form itself --------

QUESTION_COUNT: Final = len(ITEM_ORDER)
FormAction = Literal["next", "skip", "back"]


@dataclass(frozen=True)
class FormStep:
    """Where the participant is after one press: the answers so far and the page to show.

    `show` is 0 for the introduction, 1-6 for a question, and 7 when all six are done."""

    answers: dict[str, Answer | None]
    show: int
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.show > QUESTION_COUNT


class FormRefused(ValueError):
    """The form is not one this page made (a step out of range, an unknown action)."""


def read_step(form: Mapping[str, str]) -> FormStep:
    """The next page after a press on question `step` (0: the introduction's start button);
    with `error` set the same question is shown again with what to change.

    "next" needs an answer to the current question, "skip" leaves it unanswered (the
    questionnaire is voluntary, every question too), "back" returns to the previous one."""
    raw_step, action = form.get("step", ""), form.get("action", "next")
    if not raw_step.isdigit() or int(raw_step) > QUESTION_COUNT:
        raise FormRefused("Deze pagina klopt niet meer. Open de link in de mail opnieuw.")
    if action not in ("next", "skip", "back"):
        raise FormRefused("Deze knop kennen we niet. Open de link in de mail opnieuw.")
    step = int(raw_step)
    try:
        answers = read_answers(form)
    except AnswerRefused as refused:
        # Show the question again with the valid answers kept; nothing is stored.
        return FormStep(valid_answers(form), max(step, 1), str(refused))
    if step == 0:
        return FormStep(answers, 1)
    item = ITEM_ORDER[step - 1]
    if action == "back":
        return FormStep(answers, step - 1 if step > 1 else 1)
    if action == "skip":
        answers[item] = None
    elif answers[item] is None:
        return FormStep(
            answers, step, "Kies een antwoord. Wil je deze vraag liever niet beantwoorden? Kies dan 'Sla over'."
        )
    return FormStep(answers, step + 1)
