"""Dead-letter reasons say what was wrong and where, never with the values."""

from __future__ import annotations

from pydantic import ValidationError

from shared.events import ContactDetailsSet, Envelope, UnknownEventError
from shared.kafka import dead_letter_reason


def test_a_validation_error_is_described_by_place_and_rule_without_input_values() -> None:
    try:
        ContactDetailsSet.model_validate(
            {"name": ["Ans van Dijk"], "email": "ans.vandijk@example.org", "phone": 612345678}
        )
    except ValidationError as error:
        reason = dead_letter_reason(error)
    assert reason.startswith("ValidationError: ")
    assert "name string_type" in reason and "person_id missing" in reason
    for value in ("Ans", "vandijk", "612345678", "input"):
        assert value not in reason


def test_an_envelope_that_is_not_one_is_described_without_its_content() -> None:
    try:
        Envelope.model_validate_json(b'{"type": "participant.enrolled", "payload": "Ans van Dijk, 0612345678"}')
    except ValidationError as error:
        reason = dead_letter_reason(error)
    assert "payload dict_type" in reason and "Ans" not in reason and "0612345678" not in reason


def test_other_errors_give_their_type_only() -> None:
    assert dead_letter_reason(ValueError("invalid input for query argument $1: 'ans@example.org'")) == "ValueError"
    assert dead_letter_reason(UnknownEventError("unknown event x.y v9")) == "UnknownEventError: unknown event x.y v9"
