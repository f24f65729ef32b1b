"""Bad input to the enrolment API answers 4xx with a reason and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ENROLMENT, LICENSOR, add_coach, create_organisation, db_count, unique_email

pytestmark = pytest.mark.stack


async def enrol(http: httpx.AsyncClient, org_id: str, body: dict[str, Any], headers: Any = None) -> httpx.Response:
    return await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/participants", json=body, headers=headers or LICENSOR
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": "Ans"}, "email"),
        ({"first_name": "Ans", "email": "niet-een-adres"}, "email"),
        ({"first_name": "Ans", "email": "ans@@example.org"}, "email"),
        ({"first_name": "   ", "email": "ans@example.org"}, "first_name"),
        ({"first_name": "Ans", "email": "ans@example.org", "timezone": "Mars/Olympus"}, "timezone"),
        ({"first_name": "Ans", "email": "ans@example.org", "send_time": "25:00"}, "send_time"),
        ({"first_name": "Ans", "email": "ans@example.org", "variant": "onbekend"}, "variant"),
    ],
)
async def test_invalid_participant_is_refused_with_the_field_named(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    response = await enrol(http, organisation["id"], body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["status"] == 422 and error["message"]
    assert field in [f["field"] for f in error["fields"]], error
    assert (
        await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(organisation["id"]))
        == 0
    )


async def test_unknown_organisation_is_404_and_writes_nothing(http: httpx.AsyncClient) -> None:
    before = await db_count("enrolment", "SELECT count(*) FROM participant")
    response = await enrol(http, str(uuid.uuid4()), {"first_name": "Ans", "email": unique_email()})
    assert response.status_code == 404
    assert "does not exist" in response.json()["error"]["message"]
    assert await db_count("enrolment", "SELECT count(*) FROM participant") == before


async def test_duplicate_enrolment_is_409_and_writes_nothing(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    email = unique_email()
    first = await enrol(http, organisation["id"], {"first_name": "Ans", "email": email})
    assert first.status_code == 201
    again = await enrol(http, organisation["id"], {"first_name": "Ans", "email": email.upper()})
    assert again.status_code == 409
    assert again.json()["error"]["fields"][0]["field"] == "email"
    assert (
        await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(organisation["id"]))
        == 1
    )


async def test_enrolment_without_a_coach_is_refused(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    response = await enrol(http, organisation["id"], {"first_name": "Ans", "email": unique_email()})
    assert response.status_code == 409
    assert "coach" in response.json()["error"]["message"]


async def test_coach_of_another_organisation_is_refused(http: httpx.AsyncClient) -> None:
    mine, other = await create_organisation(http), await create_organisation(http)
    await add_coach(http, mine["id"])
    foreign = await add_coach(http, other["id"])
    response = await enrol(http, mine["id"], {"first_name": "Ans", "email": unique_email(), "coach_id": foreign["id"]})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "coach_id"


async def test_without_the_licensor_secret_nothing_is_written(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    response = await enrol(
        http,
        organisation["id"],
        {"first_name": "Ans", "email": unique_email()},
        headers={"Authorization": "Bearer wrong"},
    )
    assert response.status_code == 401
    assert (
        await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(organisation["id"]))
        == 0
    )


async def test_malformed_json_is_a_clear_422(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        content=b"{not json",
        headers={**LICENSOR, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"]


async def test_the_openapi_spec_documents_every_response(http: httpx.AsyncClient) -> None:
    spec = (await http.get(f"{ENROLMENT}/openapi.json")).json()
    error_ref = "#/components/schemas/ErrorResponse"
    checked = 0
    for path, operations in spec["paths"].items():
        if not path.startswith(("/api/", "/logos/")):
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            successes = [code for code in responses if code.startswith("2")]
            assert successes, f"{where}: no success response"
            for code in successes:
                if code != "204":
                    assert responses[code].get("content"), f"{where}: {code} has no response model"
            errors = [code for code in responses if code.startswith("4")]
            assert "422" in errors, f"{where}: 422 not documented"
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_ref}, f"{where}: {code} is not in the one error shape"
            assert operation.get("summary") or operation.get("description"), where
            checked += 1
    assert checked >= 30


async def test_list_pagination_is_bounded_and_counts_everything(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    for _ in range(3):
        assert (
            await enrol(http, organisation["id"], {"first_name": "Ans", "email": unique_email()})
        ).status_code == 201
    url = f"{ENROLMENT}/api/organisations/{organisation['id']}/participants"
    pages = [(await http.get(url, params={"limit": 2, "offset": offset}, headers=LICENSOR)).json() for offset in (0, 2)]
    assert [len(page["items"]) for page in pages] == [2, 1] and {page["total"] for page in pages} == {3}
    assert len({item["id"] for page in pages for item in page["items"]}) == 3
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"status": "onbekend"}):
        bad = await http.get(url, params=params, headers=LICENSOR)
        assert bad.status_code == 422 and bad.json()["error"]["fields"], params
