"""Enrolment's refusals, read from its one error shape, become the coach's Dutch message beside
the field at fault."""

import httpx

from services.coaching.intake_routes import enrolment_refusal
from shared.errors import Refusal
from shared.runtime import error_body


def answer(status: int, *fields: str) -> httpx.Response:
    return httpx.Response(status, json=error_body(status, "refused", [{"field": f, "reason": "x"} for f in fields]))


def test_a_refused_start_date_is_said_beside_the_start_date() -> None:
    refused = enrolment_refusal(answer(422, "start_date"))
    assert isinstance(refused, Refusal) and refused.field == "start_date"
    assert "startdatum" in refused.dutch


def test_a_refused_address_is_said_beside_the_address() -> None:
    refused = enrolment_refusal(answer(422, "email"))
    assert isinstance(refused, Refusal) and refused.field == "email"
    assert refused.dutch == "Dit e-mailadres klopt niet."


def test_other_refused_details_get_the_general_message() -> None:
    refused = enrolment_refusal(answer(422, "phone"))
    assert isinstance(refused, Refusal) and "nam de gegevens niet aan" in refused.dutch


def test_an_answer_that_is_not_the_error_shape_still_gets_a_message() -> None:
    refused = enrolment_refusal(httpx.Response(422, text="<html>proxy error</html>"))
    assert isinstance(refused, Refusal) and "nam de gegevens niet aan" in refused.dutch
