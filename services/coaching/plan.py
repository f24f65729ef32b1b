"""The personal plan: signal, discuss, clarify the person's own question, investigate the
causes, then agree on goals and steps. Rules for a new version, without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.errors import Refusal

CAUSES: Mapping[str, str] = {
    "loss_of_partner": "Verlies van een partner of dierbare",
    "moved_house": "Verhuisd naar een nieuwe omgeving",
    "health": "Gezondheid of minder goed kunnen bewegen",
    "unsure_in_contact": "Zich onzeker voelen in contact met anderen",
    "negative_thoughts": "Negatieve gedachten over zichzelf of anderen",
    "work_or_retirement": "Werk kwijt of met pensioen",
    "money": "Weinig geld om mee te doen",
    "caring_for_someone": "Zorgen voor een ander (mantelzorg)",
}
"""The causes checklist: keys are stored, labels are shown."""

TEXT_FIELDS: Sequence[str] = ("noticed_how", "own_question", "causes_other", "goals", "steps")
MAX_TEXT = 4000


@dataclass(frozen=True)
class PlanContent:
    """What one version of the plan says."""

    noticed_how: str | None
    own_question: str | None
    causes: tuple[str, ...]
    causes_other: str | None
    goals: str | None
    steps: str | None
    offer_ids: tuple[str, ...] = ()
    """Local offers of the organisation that the goals name (ids)."""


def clean_text(value: str | None) -> str | None:
    """Trim; an empty answer is no answer."""
    if value is None:
        return None
    value = value.replace("\r\n", "\n").strip()
    return value or None


def normalise(
    *,
    noticed_how: str | None,
    own_question: str | None,
    causes: Sequence[str],
    causes_other: str | None,
    goals: str | None,
    steps: str | None,
    offer_ids: Sequence[str] = (),
) -> PlanContent:
    """A plan version as stored: trimmed text, known causes in checklist order, not empty."""
    unknown = [cause for cause in causes if cause not in CAUSES]
    if unknown:
        raise Refusal("invalid", f"Unknown cause: {unknown[0]}.", field="causes", dutch="Kies oorzaken uit de lijst.")
    texts = {
        "noticed_how": clean_text(noticed_how),
        "own_question": clean_text(own_question),
        "causes_other": clean_text(causes_other),
        "goals": clean_text(goals),
        "steps": clean_text(steps),
    }
    for name, text in texts.items():
        if text is not None and len(text) > MAX_TEXT:
            raise Refusal(
                "invalid",
                f"At most {MAX_TEXT} characters.",
                field=name,
                dutch=f"Gebruik hier niet meer dan {MAX_TEXT} tekens.",
            )
    content = PlanContent(
        causes=tuple(key for key in CAUSES if key in set(causes)), offer_ids=tuple(dict.fromkeys(offer_ids)), **texts
    )
    if not content.causes and not content.offer_ids and all(text is None for text in texts.values()):
        raise Refusal(
            "invalid",
            "The plan is empty; fill in at least one part.",
            dutch="Het plan is nog leeg. Vul ten minste één deel in.",
        )
    return content


def changed(previous: PlanContent | None, new: PlanContent) -> bool:
    """Whether saving makes a new version (saving the same plan twice does not)."""
    return previous != new


def cause_labels(causes: Sequence[str]) -> list[str]:
    """The Dutch labels of checked causes, for pages and the export."""
    return [CAUSES[cause] for cause in causes if cause in CAUSES]


# --- the loneliness scores beside the plan ----------------------------------------------------

MOMENT_LABELS: Mapping[str, str] = {
    "intake": "Bij de start",
    "end": "Aan het eind van de training",
    "follow_up": "Drie maanden later",
}
CATEGORY_LABELS: Mapping[str, str] = {
    "not_lonely": "niet eenzaam (0-1)",
    "moderately_lonely": "matig eenzaam (2-4)",
    "severely_lonely": "(zeer) ernstig eenzaam (5-6)",
}


class AnsweredScores(Protocol):
    """One moment's scores as coaching keeps them."""

    @property
    def moment(self) -> str: ...
    @property
    def total(self) -> int | None: ...
    @property
    def emotional(self) -> int | None: ...
    @property
    def social(self) -> int | None: ...
    @property
    def total_imputed(self) -> bool: ...
    @property
    def category(self) -> str | None: ...
    @property
    def answered_at(self) -> datetime: ...


@dataclass(frozen=True)
class QuestionnaireRow:
    """One line of the scores table on the participant page."""

    moment: str
    total: int | None
    emotional: int | None
    social: int | None
    total_imputed: bool
    category: str | None
    answered_at: datetime


def questionnaire_rows(answers: Sequence[AnsweredScores]) -> list[QuestionnaireRow]:
    """The participant's scores per moment, in the programme's order, with Dutch labels."""
    order = list(MOMENT_LABELS)
    return [
        QuestionnaireRow(
            moment=MOMENT_LABELS.get(answer.moment, answer.moment),
            total=answer.total,
            emotional=answer.emotional,
            social=answer.social,
            total_imputed=answer.total_imputed,
            category=CATEGORY_LABELS.get(answer.category) if answer.category else None,
            answered_at=answer.answered_at,
        )
        for answer in sorted(answers, key=lambda a: order.index(a.moment) if a.moment in order else len(order))
    ]
