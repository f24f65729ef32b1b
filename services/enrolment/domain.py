"""Enrolment rules, free of I/O: defaults for a new participant and who coaches them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

DEFAULT_SEND_TIME = time(8, 0)
DEFAULT_TIMEZONE = "Europe/Amsterdam"
ACTIVE_STATUSES = ("enrolled", "active", "paused")


class EnrolmentRefused(Exception):
    """An enrolment that the rules do not allow; the message says why (for the API)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def default_start_date(now: datetime, timezone: str) -> date:
    """Tomorrow in the participant's own time zone."""
    return now.astimezone(ZoneInfo(timezone)).date() + timedelta(days=1)


def choose_coach(requested: UUID | None, active_per_coach: Mapping[UUID, int]) -> UUID:
    """The requested coach if they belong to the organisation, else the least busy one.

    Ties go to the coach id that sorts first, so the choice is repeatable.
    """
    if requested is not None:
        if requested not in active_per_coach:
            raise EnrolmentRefused(422, "This coach does not work for this organisation.", "coach_id")
        return requested
    if not active_per_coach:
        raise EnrolmentRefused(409, "This organisation has no coach yet; add a coach first.", "coach_id")
    return min(active_per_coach, key=lambda coach: (active_per_coach[coach], str(coach)))


def check_variant(variant: str, allowed: tuple[str, ...]) -> str:
    if variant not in allowed:
        raise EnrolmentRefused(422, f"Variant '{variant}' is not in this organisation's licence.", "variant")
    return variant
