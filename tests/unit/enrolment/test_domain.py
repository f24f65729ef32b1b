"""Enrolment rules: default start date and the choice of coach."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from services.enrolment.domain import EnrolmentRefused, check_variant, choose_coach, default_start_date


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
    with pytest.raises(EnrolmentRefused) as refused:
        choose_coach(uuid4(), {mine: 0})
    assert refused.value.status == 422 and refused.value.field == "coach_id"


def test_no_coach_at_all_is_refused() -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        choose_coach(None, {})
    assert refused.value.status == 409


def test_variant_must_be_licensed() -> None:
    assert check_variant("op-afstand", ("standaard", "op-afstand")) == "op-afstand"
    with pytest.raises(EnrolmentRefused):
        check_variant("op-afstand", ("standaard",))
