"""Enrolling from a signal: consent is recorded with when and how it was given, never later
than now, and a coach may enrol only from a signal and only as the person's own coach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.enrolment import domain
from services.enrolment.schemas import ParticipantCreate
from shared.errors import Refusal
from shared.events import ParticipantEnrolled

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def test_consent_given_now_or_earlier_is_kept_as_given() -> None:
    for given in (NOW - timedelta(days=20), NOW, NOW + timedelta(minutes=4)):
        assert domain.check_consent_given_at(given, NOW) == given


def test_consent_in_the_future_is_refused_on_its_field() -> None:
    with pytest.raises(Refusal) as refused:
        domain.check_consent_given_at(NOW + timedelta(minutes=6), NOW)
    assert (refused.value.kind, refused.value.field) == ("invalid", "consent.given_at")


def test_a_coach_enrols_from_a_signal_as_the_persons_own_coach() -> None:
    coach = uuid4()
    assert domain.coach_enrolling_from_signal(coach, None, "signal") == coach
    assert domain.coach_enrolling_from_signal(coach, coach, "signal") == coach


def test_a_coach_without_a_signal_or_for_another_coach_is_refused() -> None:
    coach = uuid4()
    with pytest.raises(Refusal) as without:
        domain.coach_enrolling_from_signal(coach, coach, None)
    assert (without.value.kind, without.value.field) == ("forbidden", "consent")
    with pytest.raises(Refusal) as other:
        domain.coach_enrolling_from_signal(coach, uuid4(), "signal")
    assert (other.value.kind, other.value.field) == ("forbidden", "coach_id")


def body(**consent: object) -> dict[str, object]:
    return {"first_name": "Ans", "email": "ans@example.org", "consent": consent}


def test_the_consent_shape() -> None:
    signal = uuid4()
    parsed = ParticipantCreate.model_validate(
        body(given_at="2026-11-30T13:00:00+01:00", via="signal", signal_id=str(signal))
    )
    assert parsed.consent is not None
    assert (parsed.consent.via, parsed.consent.signal_id) == ("signal", signal)
    assert parsed.consent.given_at == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert ParticipantCreate.model_validate({"first_name": "Ans", "email": "ans@example.org"}).consent is None


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ({"given_at": "2026-11-30T13:00:00", "via": "signal", "signal_id": str(uuid4())}, "given_at"),
        ({"given_at": "2026-11-30T13:00:00Z", "via": "telefoon", "signal_id": str(uuid4())}, "via"),
        ({"given_at": "2026-11-30T13:00:00Z", "via": "signal", "signal_id": "signaal-1"}, "signal_id"),
        ({"given_at": "2026-11-30T13:00:00Z", "via": "signal"}, "signal_id"),
    ],
)
def test_a_malformed_consent_names_its_field(consent: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        ParticipantCreate.model_validate(body(**consent))
    assert [error["loc"] for error in invalid.value.errors()] == [("consent", field)]


def test_participant_enrolled_names_the_signal_and_older_events_still_parse() -> None:
    signal = uuid4()
    common = {
        "coach_id": str(uuid4()),
        "start_date": "2026-12-01",
        "send_time": "08:00",
        "timezone": "Europe/Amsterdam",
    }
    assert (
        ParticipantEnrolled.model_validate({**common, "variant": "standaard", "signal_id": str(signal)}).signal_id
        == signal
    )
    assert ParticipantEnrolled.model_validate({**common, "variant": "standaard"}).signal_id is None
