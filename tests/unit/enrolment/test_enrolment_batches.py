"""The API's enrolment batches without a database: a unique index that refuses a batch makes it go
again one by one, and a lost database is an outage (the service's 503), never a server error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.enrolment.domain import ParticipantFields
from services.enrolment.enrolment_batches import EnrolmentBatches
from services.enrolment.use_cases.participants import ALREADY_ENROLLED, EnrolmentRequest
from shared.errors import Refusal

ORG = UUID(int=1)


def request(email: str) -> EnrolmentRequest:
    return EnrolmentRequest(fields=ParticipantFields(first_name="Sanne", email=email), coach_id=None, source="api")


def batches_answering(answer: Callable[[list[EnrolmentRequest]], Any]) -> tuple[EnrolmentBatches, list[int]]:
    """EnrolmentBatches whose batches are answered by `answer(requests)` (the outcomes, or an
    exception to raise), and the sizes of the batches it was asked."""
    batches = EnrolmentBatches("postgresql+asyncpg://nobody@localhost/none", on_commit=lambda: None)
    sizes: list[int] = []

    async def enrol(org_id: UUID, requests: list[EnrolmentRequest]) -> list[Any]:
        sizes.append(len(requests))
        result = answer(requests)
        if isinstance(result, BaseException):
            raise result
        return list(result)

    batches._enrol = enrol  # type: ignore[method-assign,assignment]
    return batches, sizes


async def test_a_batch_refused_by_a_unique_index_goes_again_one_by_one() -> None:
    def answer(requests: list[EnrolmentRequest]) -> Any:
        if len(requests) > 1:
            return asyncpg.UniqueViolationError("uq_participant_active_email")
        if requests[0].fields.email == "twice@example.org":
            return asyncpg.UniqueViolationError("uq_participant_active_email")
        return [{"email": requests[0].fields.email}]

    batches, sizes = batches_answering(answer)
    emails = ["a@example.org", "twice@example.org", "b@example.org"]

    answers = await asyncio.gather(*(batches.enrol(ORG, request(email)) for email in emails), return_exceptions=True)

    assert answers[0] == {"email": "a@example.org"} and answers[2] == {"email": "b@example.org"}
    refused = answers[1]
    assert isinstance(refused, Refusal) and refused.kind == "conflict" and refused.message == ALREADY_ENROLLED
    assert sizes[0] > 1 and sizes[-3:] == [1, 1, 1]


@pytest.mark.parametrize(
    "outage",
    [TimeoutError(), asyncpg.CannotConnectNowError("starting up"), ConnectionRefusedError()],
    ids=["timeout", "starting-up", "refused"],
)
async def test_a_lost_database_answers_every_request_of_the_batch_as_an_outage(outage: Exception) -> None:
    batches, _ = batches_answering(lambda requests: outage)

    answers = await asyncio.gather(
        *(batches.enrol(ORG, request(f"p{i}@example.org")) for i in range(3)), return_exceptions=True
    )

    assert all(isinstance(answer, ConnectionError) for answer in answers), answers


async def test_a_bug_stays_a_bug() -> None:
    batches, _ = batches_answering(lambda requests: ValueError("a bug"))

    with pytest.raises(ValueError, match="a bug"):
        await batches.enrol(ORG, request("p@example.org"))
