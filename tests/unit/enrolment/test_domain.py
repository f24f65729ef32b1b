"""Enrolment rules: defaults, the coach choice, fields, the licence and the lifecycle."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.enrolment.domain import (
    ParticipantFields,
    check_start_date,
    check_stop_reason,
    check_variant,
    choose_coach,
    default_start_date,
    display_phone,
    is_transition_noop,
    licence_state,
    next_status,
    normalise_email,
    normalise_phone,
    remaining_capacity,
)
from services.enrolment.use_cases.participants import new_participant
from shared.errors import Refusal


def test_default_start_is_tomorrow_in_the_participants_time_zone() -> None:
    # 23:30 UTC on 23 November is already the 24th in Amsterdam: tomorrow is the 25th.
    assert default_start_date(datetime(2026, 11, 23, 23, 30, tzinfo=UTC), "Europe/Amsterdam") == date(2026, 11, 25)
    assert default_start_date(datetime(2026, 11, 23, 23, 30, tzinfo=UTC), "UTC") == date(2026, 11, 24)


def test_least_busy_coach_is_chosen_when_none_is_asked_for() -> None:
    busy, quiet = uuid4(), uuid4()
    assert choose_coach(None, {busy: 12, quiet: 3}) == quiet


def test_requested_coach_must_belong_to_the_organisation() -> None:
    mine = uuid4()
    assert choose_coach(mine, {mine: 40}) == mine
    with pytest.raises(Refusal) as refused:
        choose_coach(uuid4(), {mine: 0})
    assert refused.value.kind == "invalid" and refused.value.field == "coach_id"


def test_no_coach_at_all_is_refused() -> None:
    with pytest.raises(Refusal) as refused:
        choose_coach(None, {})
    assert refused.value.kind == "conflict"


def test_variant_must_be_licensed_and_defaults_to_the_first() -> None:
    assert check_variant("op-afstand", ("standaard", "op-afstand")) == "op-afstand"
    assert check_variant(None, ("op-afstand", "standaard")) == "op-afstand"
    with pytest.raises(Refusal) as refused:
        check_variant("op-afstand", ("standaard",))
    assert refused.value.field == "variant"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("06 12345678", "+31612345678"),
        ("06-1234 5678", "+31612345678"),
        ("+31 6 12345678", "+31612345678"),
        ("0031612345678", "+31612345678"),
        ("020 123 4567", "+31201234567"),
        ("+32 470 12 34 56", "+32470123456"),
    ],
)
def test_phone_numbers_become_e164_with_dutch_as_default(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12345", "06 1234", "bel me maar", "+31 6 1234567890123"])
def test_invalid_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        normalise_phone(raw)


def test_an_organisations_phone_is_shown_the_way_people_read_it() -> None:
    assert display_phone("0201234567") == "020 123 4567"
    assert display_phone("+32470123456") == "+32 470 12 34 56"


def test_email_addresses_are_checked_and_lower_cased() -> None:
    assert normalise_email(" Ans@Example.ORG ") == "ans@example.org"
    for bad in ("ans", "ans@@example.org", "ans@example"):
        with pytest.raises(ValueError, match="e-mail"):
            normalise_email(bad)


def test_participant_fields_have_the_documented_defaults() -> None:
    fields = ParticipantFields(first_name=" Ans ", email="ANS@example.org", phone="")
    assert fields.first_name == "Ans" and fields.email == "ans@example.org" and fields.phone is None
    assert fields.send_time == time(8, 0) and fields.timezone == "Europe/Amsterdam"
    with pytest.raises(ValidationError) as invalid:
        ParticipantFields(first_name="Ans", email="ans@example.org", timezone="Mars/Olympus")
    assert invalid.value.errors()[0]["loc"] == ("timezone",)
    assert invalid.value.errors()[0]["msg"].startswith("unknown time zone 'Mars/Olympus'"), "no 'Value error,' noise"


def test_start_date_may_not_lie_in_the_past_or_far_ahead() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert check_start_date(date(2026, 11, 22), now, "Europe/Amsterdam") == date(2026, 11, 22)
    with pytest.raises(Refusal):
        check_start_date(date(2026, 11, 21), now, "Europe/Amsterdam")
    with pytest.raises(Refusal):
        check_start_date(date(2027, 12, 1), now, "Europe/Amsterdam")


# --- the licence -----------------------------------------------------------------------------------


def test_licence_runs_from_its_first_to_its_last_day() -> None:
    start, end = date(2026, 1, 1), date(2026, 12, 31)
    assert licence_state(start, end, date(2025, 12, 31)) == "not_yet_valid"
    assert licence_state(start, end, start) == "valid"
    assert licence_state(start, end, end) == "valid"
    assert licence_state(start, end, date(2027, 1, 1)) == "expired"


def test_remaining_capacity_counts_running_participants() -> None:
    assert (
        remaining_capacity(
            valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31), maximum=10, running=7, today=date(2026, 6, 1)
        )
        == 3
    )


def test_a_full_licence_is_refused_with_the_numbers() -> None:
    with pytest.raises(Refusal) as refused:
        remaining_capacity(
            valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31), maximum=2, running=2, today=date(2026, 6, 1)
        )
    assert refused.value.kind == "conflict" and refused.value.field == "licence"
    assert "2 of 2" in refused.value.message


def test_an_expired_licence_is_refused_with_its_end_date() -> None:
    with pytest.raises(Refusal) as refused:
        remaining_capacity(
            valid_from=date(2025, 1, 1), valid_until=date(2025, 12, 31), maximum=9, running=0, today=date(2026, 1, 1)
        )
    assert refused.value.kind == "conflict" and "2025-12-31" in refused.value.message


# --- the lifecycle ------------------------------------------------------------------------------------


def test_the_lifecycle_follows_the_issue() -> None:
    status = next_status("pending", "confirm")
    assert status == "enrolled"
    assert next_status(status, "start") == "active"
    assert next_status("active", "pause") == "paused"
    assert next_status("paused", "resume", started=True) == "active"
    assert next_status("paused", "resume", started=False) == "enrolled"
    assert next_status("active", "complete") == "completed"
    for running in ("enrolled", "active", "paused"):
        assert next_status(running, "stop") == "stopped"
    for any_status in ("pending", "enrolled", "active", "paused", "completed", "stopped"):
        assert next_status(any_status, "erase") == "erased"


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("pending", "pause"),
        ("paused", "pause"),
        ("active", "resume"),
        ("stopped", "resume"),
        ("completed", "stop"),
        ("erased", "erase"),
        ("erased", "resume"),
        ("enrolled", "confirm"),
    ],
)
def test_changes_that_do_not_apply_are_refused(status: str, action: str) -> None:
    with pytest.raises(Refusal) as refused:
        next_status(status, action)  # type: ignore[arg-type]
    assert refused.value.kind == "conflict"


def test_a_repeated_request_for_the_same_end_is_a_no_op() -> None:
    assert is_transition_noop("stopped", "stop")
    assert is_transition_noop("completed", "complete")
    assert is_transition_noop("erased", "stop")
    assert not is_transition_noop("active", "stop")


def test_a_coach_gives_a_reason_when_stopping_someone() -> None:
    with pytest.raises(Refusal) as refused:
        check_stop_reason("coach", "  ")
    assert refused.value.field == "reason"
    assert check_stop_reason("coach", " verhuisd ") == "verhuisd"
    assert check_stop_reason("participant", None) is None


def test_participant_ids_are_time_ordered_so_recent_participants_share_index_pages() -> None:
    # Every table of every service that indexes participant_id gets a morning's opens for
    # recent participants, whose index entries then sit together at the right-hand end.
    fields = ParticipantFields(first_name="Ans", email="ans@example.org")
    made = [
        new_participant(
            org_id=uuid4(),
            fields=fields,
            coach_id=uuid4(),
            start_date=date(2026, 12, 2),
            variant="standaard",
            source="api",
            now=datetime(2026, 12, 1, 9, tzinfo=UTC),
        )
        for _ in range(2)
    ]
    ids = [row["id"] for row, _ in made]
    assert [one.version for one in ids] == [7, 7]
    assert ids[0].bytes[:6] <= ids[1].bytes[:6]
    for row, events in made:
        assert {event.participant_id for event in events} == {row["id"]}
