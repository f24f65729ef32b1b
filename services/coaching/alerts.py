"""Alerts a coach can act on, from the figures of one participant at one moment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.coaching.calls import PlannedCall
from services.coaching.projection import two_low_scores_in_a_row

NO_OPEN_DAYS = 3
"""After this many whole days without a human open, the coach is told."""
NO_OPEN_DURATION = timedelta(days=NO_OPEN_DAYS)


@dataclass(frozen=True)
class Alert:
    """One thing the coach may want to act on; the message is what the page says."""

    code: str
    message: str


def alerts_for(
    *,
    status: str,
    days_without_open: int | None,
    scores: Sequence[int],
    failure_unresolved: bool,
    planned: Sequence[PlannedCall],
    unsubscribe_requested_at: datetime | None,
    stopped_by: str | None,
) -> list[Alert]:
    """Alerts in the order a coach should look at them."""
    found: list[Alert] = []
    if status == "stopped":
        who = "zelf gestopt" if stopped_by == "participant" else "gestopt"
        found.append(Alert("stopped", f"Is {who} met het programma. Een belletje kan goed doen."))
    elif unsubscribe_requested_at is not None and status not in ("completed", "erased"):
        found.append(Alert("wants_to_stop", "Wil stoppen met de mails. Bel om te horen hoe het gaat."))
    if status == "paused":
        found.append(Alert("paused", "Is gepauzeerd: er gaan nu geen mails uit."))
    for call in planned:
        if call.status == "overdue":
            when = f" (gepland op {call.due_date:%d-%m})" if call.due_date else ""
            found.append(Alert("call_overdue", f"Gesprek {call.number} is te laat{when}."))
    if failure_unresolved and status not in ("stopped", "erased"):
        found.append(Alert("mail_failed", "Een mail kwam niet aan. Klopt het e-mailadres nog?"))
    if status == "active" and days_without_open is not None and days_without_open >= NO_OPEN_DAYS:
        found.append(Alert("no_open_3_days", f"Heeft al {days_without_open} dagen geen mail geopend."))
    if status not in ("erased",) and two_low_scores_in_a_row(scores):
        found.append(Alert("low_scores", "De laatste twee opdrachten gingen moeilijk (score 2 of lager)."))
    return found


PUBLISHED_ALERTS: tuple[str, ...] = ("no_open_3_days", "low_scores", "mail_failed")
"""The alerts that travel as events (the coach's morning mail lists them)."""


def standing_alerts(
    *,
    status: str,
    without_open_since: datetime | None,
    scores: Sequence[int],
    failure_unresolved: bool,
    now: datetime,
) -> Mapping[str, datetime | None]:
    """The published alerts that hold at `now`, by code, with the moment from which each holds
    (None: as long as it is published).

    The same rules as `alerts_for`. No open for three days holds from three days after the
    last open (or the first mail): it is published once it holds (coaching looks every
    minute, see callplan.raise_due_no_open_alerts) and cleared by the next open, so an open
    of someone who opens their mails changes nothing that travels.
    """
    found: dict[str, datetime | None] = {}
    if status == "active" and without_open_since is not None and without_open_since + NO_OPEN_DURATION <= now:
        found["no_open_3_days"] = without_open_since + NO_OPEN_DURATION
    if status not in ("erased",) and two_low_scores_in_a_row(scores):
        found["low_scores"] = None
    if failure_unresolved and status not in ("stopped", "erased"):
        found["mail_failed"] = None
    return found
