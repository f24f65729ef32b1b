"""The offer pages' adapter to enrolment: enrolment's 422 fields become Dutch reasons per
form field, and an enrolment that cannot be reached (or fails) becomes a Dutch 503 page,
an ended session a new login."""

from __future__ import annotations

import socket
from uuid import uuid4

import httpx
import pytest

from services.coaching.auth import LoginRequired
from services.coaching.offer_pages import FIELD_PROBLEMS, UNREACHABLE, Enrolment, field_errors
from services.coaching.web import PageError


def refusal(*fields: str) -> httpx.Response:
    body = {"error": {"status": 422, "message": "x", "fields": [{"field": f, "reason": "english"} for f in fields]}}
    return httpx.Response(422, json=body)


def test_each_field_enrolment_names_gets_its_dutch_reason() -> None:
    errors = field_errors(refusal("phone", "website"))
    assert errors == {"phone": FIELD_PROBLEMS["phone"], "website": FIELD_PROBLEMS["website"]}
    assert "telefoonnummer" in errors["phone"] and "https://" in errors["website"]


def test_an_unknown_field_or_an_unreadable_answer_is_said_above_the_form() -> None:
    assert set(field_errors(refusal("offers.0.name.x", "kind"))) == {"form", "kind"}
    assert field_errors(httpx.Response(422, text="<html>")) == {"form": "Kijk het formulier nog eens na."}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def enrolment(base: str) -> Enrolment:
    return Enrolment(enrolment_base_url=base, org_id=uuid4(), token="t", timeout_s=5)


async def test_an_enrolment_that_cannot_be_reached_is_a_dutch_503() -> None:
    with pytest.raises(PageError) as page:
        await enrolment(f"http://127.0.0.1:{closed_port()}").call("GET")
    assert (page.value.status, page.value.message) == (503, UNREACHABLE)


@pytest.mark.parametrize(
    ("status", "expected"), [(500, PageError), (502, PageError), (401, LoginRequired), (404, PageError)]
)
async def test_answers_a_form_cannot_fix_become_a_page(
    status: int, expected: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer(self: httpx.AsyncClient, method: str, url: str, **_: object) -> httpx.Response:
        return httpx.Response(status, json={})

    monkeypatch.setattr(httpx.AsyncClient, "request", answer)
    with pytest.raises(expected) as raised:
        await enrolment("http://enrolment.invalid").call("GET")
    if isinstance(raised.value, PageError):
        assert raised.value.status == (503 if status >= 500 else status)
