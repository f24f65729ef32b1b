"""The participant lifecycle's one transition table and the rules that ask it."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest

from services.enrolment.domain import (
    ACTIVE_STATUSES,
    NO_OPS,
    STATUSES,
    TRANSITIONS,
    Action,
    allows,
    already_done,
    awaits_confirmation,
    check_editable,
    is_running,
    is_transition_noop,
    next_status,
    stop_applies,
)
from shared.errors import Refusal

ACTIONS: tuple[Action, ...] = get_args(Action)

# The lifecycle as the design describes it, written out pair by pair (edit keeps the status).
SPECIFIED = {
    ("pending", "confirm"): "enrolled",
    ("enrolled", "start"): "active",
    ("enrolled", "pause"): "paused",
    ("active", "pause"): "paused",
    ("paused", "resume"): "active",
    ("enrolled", "stop"): "stopped",
    ("active", "stop"): "stopped",
    ("paused", "stop"): "stopped",
    ("enrolled", "complete"): "completed",
    ("active", "complete"): "completed",
    ("paused", "complete"): "completed",
    ("pending", "erase"): "erased",
    ("enrolled", "erase"): "erased",
    ("active", "erase"): "erased",
    ("paused", "erase"): "erased",
    ("completed", "erase"): "erased",
    ("stopped", "erase"): "erased",
    ("pending", "edit"): "pending",
    ("enrolled", "edit"): "enrolled",
    ("active", "edit"): "active",
    ("paused", "edit"): "paused",
}


def test_the_table_holds_exactly_the_specified_transitions() -> None:
    table = {(status, action): after for action, row in TRANSITIONS.items() for status, after in row.items()}
    assert table == SPECIFIED
    assert set(TRANSITIONS) == set(ACTIONS)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(STATUSES, ACTIONS)))
def test_next_status_answers_what_the_table_says_or_refuses(status: str, action: Action) -> None:
    if (status, action) in SPECIFIED:
        assert allows(status, action)
        assert next_status(status, action, started=True) == SPECIFIED[(status, action)]
    else:
        assert not allows(status, action)
        with pytest.raises(Refusal) as refused:
            next_status(status, action)
        assert refused.value.kind == "conflict" and refused.value.field == "status"
        assert refused.value.message.startswith(f"Cannot {action}: this participant ")


def test_a_resume_before_the_first_lesson_is_enrolled_again() -> None:
    assert next_status("paused", "resume", started=False) == "enrolled"
    assert next_status("paused", "resume", started=True) == "active"


def test_an_unknown_status_is_refused_and_named() -> None:
    with pytest.raises(Refusal) as refused:
        next_status("archived", "stop")
    assert "has status 'archived'" in refused.value.message


def test_erased_is_the_end_and_nothing_leads_back_to_pending() -> None:
    assert not any(allows("erased", action) for action in ACTIONS)
    into_pending = [
        (status, action) for action, row in TRANSITIONS.items() for status, after in row.items() if after == "pending"
    ]
    assert into_pending == [("pending", "edit")]
    assert [action for action in ACTIONS if allows("completed", action)] == ["erase"]
    assert [action for action in ACTIONS if allows("stopped", action)] == ["erase"]


def test_running_participants_are_the_ones_that_can_stop_or_complete() -> None:
    assert set(ACTIVE_STATUSES) == set(TRANSITIONS["stop"]) == set(TRANSITIONS["complete"])
    assert [status for status in STATUSES if is_running(status)] == list(ACTIVE_STATUSES)


def test_a_no_op_never_overlaps_a_transition() -> None:
    for action, statuses in NO_OPS.items():
        assert not statuses & set(TRANSITIONS[action]), action
        assert "erased" in statuses
        assert all(is_transition_noop(status, action) for status in statuses)
    assert not is_transition_noop("active", "stop")
    assert not is_transition_noop("stopped", "erase")


def test_only_a_pending_sign_up_awaits_confirmation() -> None:
    assert [status for status in STATUSES if awaits_confirmation(status)] == ["pending"]


@pytest.mark.parametrize("status", ["pending", "enrolled", "active", "paused"])
def test_details_and_coach_change_until_the_programme_ends(status: str) -> None:
    check_editable(status)


@pytest.mark.parametrize("status", ["completed", "stopped", "erased"])
def test_details_and_coach_are_refused_once_the_programme_ended(status: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_editable(status)
    assert refused.value.kind == "conflict" and refused.value.field == "status"
    assert refused.value.message == f"This participant's programme has ended ({status})."


def test_already_done_reads_where_the_action_leads() -> None:
    assert already_done("stopped", "stop")
    assert already_done("completed", "complete")
    assert not already_done("paused", "stop")


@pytest.mark.parametrize("status", ACTIVE_STATUSES)
def test_a_running_participant_is_stopped_by_anyone(status: str) -> None:
    assert stop_applies(status, "participant")
    assert stop_applies(status, "coach")
    assert stop_applies(status, "organisation")


def test_a_repeated_unsubscribe_changes_nothing_but_staff_are_told() -> None:
    assert not stop_applies("stopped", "participant")
    for by in ("coach", "organisation"):
        with pytest.raises(Refusal) as refused:
            stop_applies("stopped", by)
        assert refused.value.kind == "conflict"
        assert refused.value.message == "This participant has already stopped."


def test_stopping_someone_erased_changes_nothing_for_anyone() -> None:
    assert not any(stop_applies("erased", by) for by in ("participant", "coach", "organisation"))


@pytest.mark.parametrize("status", ["pending", "completed"])
def test_a_stop_that_does_not_apply_goes_on_to_the_table_refusal(status: str) -> None:
    assert stop_applies(status, "coach")
    with pytest.raises(Refusal):
        next_status(status, "stop")
