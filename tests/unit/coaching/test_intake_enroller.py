"""Coaching's call of enrolment's normal path from a signal: what it sends, and each answer
turned into a participant id, a Dutch refusal or "unavailable" (nothing written, try again)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from uuid import uuid4

import httpx
import pytest

from services.coaching.intake_routes import HttpEnroller
from services.coaching.intake_use_cases import EnrolmentRequest, EnrolmentUnavailable
from shared.errors import Refusal
from shared.runtime import error_body

REQUEST = EnrolmentRequest(
    org_id=uuid4(),
    signal_id=uuid4(),
    coach_id=uuid4(),
    first_name="Riek",
    email="riek@example.org",
    phone="+31612345678",
    token="coach-token",
    consent_given_at=datetime(2026, 11, 30, 14, 0, tzinfo=UTC),
    start_date=date(2026, 12, 1),
    send_time=time(9, 30),
)


def enroller(answer: httpx.Response | Exception, seen: list[httpx.Request] | None = None) -> HttpEnroller:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return HttpEnroller("http://enrolment.test/", 5, transport=httpx.MockTransport(handle))


async def test_it_posts_the_person_the_coach_and_consent_via_the_signal_with_the_coachs_token() -> None:
    participant = uuid4()
    seen: list[httpx.Request] = []
    found = await enroller(httpx.Response(201, json={"id": str(participant)}), seen).enrol(REQUEST)
    assert found == participant
    (sent,) = seen
    assert str(sent.url) == f"http://enrolment.test/api/organisations/{REQUEST.org_id}/participants"
    assert sent.headers["Authorization"] == "Bearer coach-token"
    assert json.loads(sent.content) == {
        "first_name": "Riek",
        "email": "riek@example.org",
        "phone": "+31612345678",
        "coach_id": str(REQUEST.coach_id),
        "consent": {"given_at": "2026-11-30T14:00:00+00:00", "via": "signal", "signal_id": str(REQUEST.signal_id)},
        "start_date": "2026-12-01",
        "send_time": "09:30",
    }


async def test_a_repeat_answers_the_first_participant() -> None:
    participant = uuid4()
    assert await enroller(httpx.Response(200, json={"id": str(participant)})).enrol(REQUEST) == participant


@pytest.mark.parametrize(
    ("status", "kind", "dutch"),
    [
        (409, "conflict", "al aangemeld"),
        (422, "invalid", "nam de gegevens niet aan"),
        (403, "forbidden", "licentie"),
        (404, "forbidden", "licentie"),
        (401, "forbidden", "Log opnieuw in"),
    ],
)
async def test_enrolments_refusals_are_told_in_dutch(status: int, kind: str, dutch: str) -> None:
    with pytest.raises(Refusal) as refused:
        await enroller(httpx.Response(status, json={"error": {"message": "no"}})).enrol(REQUEST)
    assert refused.value.kind == kind and dutch in refused.value.dutch


def refused_field(field: str) -> httpx.Response:
    """Enrolment's 422 in the one error shape of every API, naming the field at fault."""
    return httpx.Response(422, json=error_body(422, "bad", [{"field": field, "reason": "not valid"}]))


async def test_a_refused_address_names_the_e_mail_field() -> None:
    with pytest.raises(Refusal) as refused:
        await enroller(refused_field("email")).enrol(REQUEST)
    assert refused.value.field == "email" and refused.value.dutch == "Dit e-mailadres klopt niet."


async def test_a_refused_start_date_names_the_start_date_field() -> None:
    with pytest.raises(Refusal) as refused:
        await enroller(refused_field("start_date")).enrol(REQUEST)
    assert refused.value.field == "start_date" and "startdatum" in refused.value.dutch


async def test_an_answer_in_another_shape_gets_the_general_message() -> None:
    with pytest.raises(Refusal) as refused:
        await enroller(httpx.Response(422, text="<html>proxy error</html>")).enrol(REQUEST)
    assert "nam de gegevens niet aan" in refused.value.dutch


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(201, json={"no": "id"}),
        httpx.Response(201, text="not json"),
    ],
)
async def test_unreachable_or_unexpected_is_unavailable(answer: httpx.Response | Exception) -> None:
    with pytest.raises(EnrolmentUnavailable):
        await enroller(answer).enrol(REQUEST)
