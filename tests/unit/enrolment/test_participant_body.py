"""The enrolment API's body is validated once, by the rules the CSV import and the sign-up
form use (ParticipantFields); what it hands on equals what those rules make of the same input."""

from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.enrolment.domain import ParticipantFields
from services.enrolment.schemas import ParticipantCreate


@pytest.mark.parametrize(
    "body",
    [
        {"first_name": "  Sanne ", "email": " Sanne@Example.ORG ", "phone": "06-12 34 56 78"},
        {"first_name": "Anna", "email": "anna@example.org", "start_date": "2026-12-24", "send_time": "07:30"},
        {"first_name": "Piet", "email": "piet@example.org", "timezone": "Europe/Brussels", "variant": "kort"},
    ],
)
def test_the_body_hands_on_the_fields_as_the_csv_and_the_form_validate_them(body: dict[str, str]) -> None:
    created = ParticipantCreate.model_validate({**body, "coach_id": str(uuid4())})
    assert created.fields() == ParticipantFields.model_validate(body)
    assert type(created.fields()) is ParticipantFields


@pytest.mark.parametrize("bad", [{"email": "geen-adres"}, {"phone": "12"}, {"first_name": "A\x00na"}])
def test_the_body_refuses_what_the_fields_refuse(bad: dict[str, str]) -> None:
    for model in (ParticipantFields, ParticipantCreate):
        with pytest.raises(ValidationError):
            model.model_validate({"first_name": "Anna", "email": "anna@example.org", **bad})
