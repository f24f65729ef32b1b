"""How a batch of enrolments through the API is decided (plan_enrolments): one shared count, each
request answered for itself, and the rows and events that go in together."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid4

from services.enrolment.domain import ParticipantFields
from services.enrolment.storage import EnrolmentCounts, LicenceTerms
from services.enrolment.use_cases.participants import ALREADY_ENROLLED, EnrolmentRequest, plan_enrolments
from shared.errors import Refusal

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORG = UUID(int=1)
BUSY, QUIET = UUID(int=10), UUID(int=11)
TERMS = LicenceTerms(valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31), maximum=10, variants=("a", "b"))


def request(email: str, *, coach_id: UUID | None = None, variant: str | None = None) -> EnrolmentRequest:
    fields = ParticipantFields(first_name="Sanne", email=email, variant=variant)
    return EnrolmentRequest(fields=fields, coach_id=coach_id, source="api")


def test_the_batch_shares_one_count_and_spreads_over_the_least_busy_coaches() -> None:
    counts = EnrolmentCounts(running=3, per_coach={BUSY: 2, QUIET: 1})
    requests = [request(f"p{i}@example.org") for i in range(3)]

    plan = plan_enrolments(org_id=ORG, terms=TERMS, counts=counts, taken=frozenset(), requests=requests, now=NOW)

    assert [outcome["coach_id"] for outcome in plan.outcomes if isinstance(outcome, dict)] == [QUIET, BUSY, QUIET]
    assert plan.rows == plan.outcomes
    assert all(row["org_id"] == ORG and row["status"] == "enrolled" for row in plan.rows)


def test_the_licence_is_filled_exactly_and_the_rest_is_refused_as_full() -> None:
    counts = EnrolmentCounts(running=8, per_coach={BUSY: 8})
    requests = [request(f"p{i}@example.org") for i in range(4)]

    plan = plan_enrolments(org_id=ORG, terms=TERMS, counts=counts, taken=frozenset(), requests=requests, now=NOW)

    assert len(plan.rows) == 2
    refusals = plan.outcomes[2:]
    assert all(isinstance(r, Refusal) and r.kind == "conflict" and "full" in r.message for r in refusals)


def test_an_address_running_here_or_twice_in_the_batch_is_refused_alone() -> None:
    counts = EnrolmentCounts(running=0, per_coach={BUSY: 0})
    requests = [request("al@example.org"), request("new@example.org"), request("new@example.org")]

    plan = plan_enrolments(
        org_id=ORG, terms=TERMS, counts=counts, taken=frozenset({"al@example.org"}), requests=requests, now=NOW
    )

    first, second, third = plan.outcomes
    assert isinstance(first, Refusal) and first.message == ALREADY_ENROLLED and first.field == "email"
    assert isinstance(second, dict) and second["email"] == "new@example.org"
    assert isinstance(third, Refusal) and third.message == ALREADY_ENROLLED
    assert plan.rows == [second]


def test_a_bad_request_fails_alone_and_takes_no_place() -> None:
    counts = EnrolmentCounts(running=9, per_coach={BUSY: 9})
    requests = [
        request("x@example.org", variant="c"),
        request("y@example.org", coach_id=uuid4()),
        request("z@example.org"),
    ]

    plan = plan_enrolments(org_id=ORG, terms=TERMS, counts=counts, taken=frozenset(), requests=requests, now=NOW)

    variant, coach, enrolled = plan.outcomes
    assert isinstance(variant, Refusal) and variant.field == "variant"
    assert isinstance(coach, Refusal) and coach.field == "coach_id"
    assert isinstance(enrolled, dict) and enrolled["email"] == "z@example.org"


def test_every_participant_has_its_contact_details_then_participant_enrolled_in_outbox_order() -> None:
    counts = EnrolmentCounts(running=0, per_coach={BUSY: 0})
    requests = [request("p1@example.org"), request("p2@example.org", variant="b")]

    plan = plan_enrolments(org_id=ORG, terms=TERMS, counts=counts, taken=frozenset(), requests=requests, now=NOW)

    assert [(event.participant_id, event.type) for event in plan.events] == [
        (plan.rows[0]["id"], "contact.details_set"),
        (plan.rows[0]["id"], "participant.enrolled"),
        (plan.rows[1]["id"], "contact.details_set"),
        (plan.rows[1]["id"], "participant.enrolled"),
    ]
    enrolled = plan.events[3].payload
    assert enrolled["coach_id"] == str(BUSY) and enrolled["variant"] == "b"
