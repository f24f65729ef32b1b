"""A new version of the personal plan: trimmed, known causes only, not empty, not a copy."""

from __future__ import annotations

from typing import Any

import pytest

from services.coaching.plan import CAUSES, MAX_TEXT, cause_labels, changed, normalise
from shared.errors import Refusal

EMPTY: dict[str, Any] = {
    "noticed_how": None,
    "own_question": None,
    "causes": [],
    "causes_other": None,
    "goals": None,
    "steps": None,
}


def test_text_is_trimmed_and_causes_follow_the_checklist_order() -> None:
    content = normalise(
        **{**EMPTY, "own_question": "  Ik wil weer eens iemand spreken.\r\n", "causes": ["health", "loss_of_partner"]}
    )
    assert content.own_question == "Ik wil weer eens iemand spreken."
    assert content.causes == ("loss_of_partner", "health")
    assert cause_labels(content.causes)[0] == CAUSES["loss_of_partner"]


def test_an_unknown_cause_is_refused() -> None:
    with pytest.raises(Refusal) as refused:
        normalise(**{**EMPTY, "causes": ["astrology"]})
    assert (refused.value.kind, refused.value.field) == ("invalid", "causes")
    assert refused.value.dutch == "Kies oorzaken uit de lijst."


def test_a_too_long_part_is_refused_by_name() -> None:
    with pytest.raises(Refusal) as refused:
        normalise(**{**EMPTY, "steps": "x" * (MAX_TEXT + 1)})
    assert (refused.value.kind, refused.value.field) == ("invalid", "steps")


def test_an_empty_plan_is_refused() -> None:
    with pytest.raises(Refusal) as refused:
        normalise(**{**EMPTY, "goals": "   "})
    assert refused.value.kind == "invalid" and refused.value.field is None


def test_saving_the_same_plan_again_is_no_new_version() -> None:
    first = normalise(**{**EMPTY, "goals": "Elke week naar het buurthuis"})
    same = normalise(**{**EMPTY, "goals": " Elke week naar het buurthuis "})
    other = normalise(**{**EMPTY, "goals": "Elke week naar het buurthuis", "steps": "Dinsdag koffie"})
    assert not changed(first, same)
    assert changed(first, other)
    assert changed(None, first)
