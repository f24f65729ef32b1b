"""A participant's timeline and opens-per-day chart, from the projection rows, without I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from services.coaching.tables import CallLog, CallSeen, LifecycleSeen, MailSeen, OpenSeen, PlanVersion, ReportSeen

CHART_DAYS = 70
"""The chart shows at most this many days, ending today."""

LIFECYCLE_TEXT: Mapping[str, str] = {
    "participant.enrolled": "Aangemeld voor het programma",
    "participant.paused": "Gepauzeerd",
    "participant.resumed": "Weer verder gegaan na een pauze",
    "participant.stopped": "Gestopt met het programma",
    "participant.completed": "Programma afgerond",
    "participant.coach_changed": "Heeft een andere coach gekregen",
    "participant.unsubscribe_requested": "Vroeg om te stoppen met de mails",
}


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline."""

    at: datetime
    kind: str
    day: int | None
    text: str
    detail: str | None = None


@dataclass(frozen=True)
class OpensOnDay:
    """How often the mails were opened on one day, by a person and automatically."""

    date: date
    human: int
    automated: int


def _call_text(call: CallSeen, log: CallLog | None, offer_names: Mapping[str, str]) -> tuple[str, str | None]:
    if call.reached:
        which = f"Gesprek {call.planned_call}" if call.planned_call else "Extra gesprek"
        text = f"{which} gevoerd ({call.duration_minutes} min.)"
    else:
        text = "Gebeld, maar niet bereikt"
    if log is None:
        return text, None
    parts = []
    if log.lessons_discussed:
        parts.append("Besproken lessen: " + ", ".join(str(day) for day in sorted(log.lessons_discussed)))
    if log.notes:
        parts.append(log.notes)
    if log.next_agreement:
        parts.append(f"Afspraak: {log.next_agreement}")
    if log.offer_id is not None:
        parts.append(f"Doorverwezen naar: {offer_names.get(str(log.offer_id), 'een aanbod dat er niet meer is')}")
    return text, "\n".join(parts) or None


def build_timeline(
    *,
    mails: Iterable[MailSeen],
    reports: Iterable[ReportSeen],
    calls: Iterable[CallSeen],
    call_logs: Mapping[UUID, CallLog],
    lifecycle: Iterable[LifecycleSeen],
    plans: Iterable[PlanVersion],
    unsubscribe_requested_at: datetime | None = None,
    offer_names: Mapping[str, str] | None = None,
) -> list[TimelineEntry]:
    """Mails, opens, reports, calls, pauses and plan changes, newest first."""
    entries: list[TimelineEntry] = []
    for mail in mails:
        title = f": {mail.lesson_title}" if mail.lesson_title else ""
        if mail.sent_at is not None:
            entries.append(TimelineEntry(mail.sent_at, "mail_sent", mail.day, f"Les {mail.day} verstuurd{title}"))
        if mail.failed_at is not None:
            entries.append(
                TimelineEntry(
                    mail.failed_at, "mail_failed", mail.day, f"Les {mail.day} kwam niet aan", mail.failure_reason
                )
            )
        if mail.human_opened_at is not None:
            again = f"Daarna nog {mail.human_opens - 1} keer geopend." if mail.human_opens > 1 else None
            entries.append(TimelineEntry(mail.human_opened_at, "opened", mail.day, f"Les {mail.day} geopend", again))
        elif mail.automated_opened_at is not None:
            entries.append(
                TimelineEntry(
                    mail.automated_opened_at,
                    "opened_automated",
                    mail.day,
                    f"Les {mail.day} mogelijk automatisch geopend",
                    "Waarschijnlijk een virusscanner of mailprogramma, niet de deelnemer zelf.",
                )
            )
        if mail.first_clicked_at is not None:
            entries.append(
                TimelineEntry(mail.first_clicked_at, "clicked", mail.day, f"Klikte op een link in les {mail.day}")
            )
    for report in reports:
        entries.append(
            TimelineEntry(
                report.reported_at,
                "report",
                report.day,
                f"Opdracht van les {report.day}: score {report.score} van 5",
                report.note,
            )
        )
    for call in calls:
        text, detail = _call_text(call, call_logs.get(call.call_id), offer_names or {})
        entries.append(TimelineEntry(call.called_at, "call", None, text, detail))
    for change in lifecycle:
        text = LIFECYCLE_TEXT.get(change.type, change.type)
        if change.type == "participant.stopped" and change.by == "participant":
            text = "Is zelf gestopt met het programma"
        entries.append(TimelineEntry(change.occurred_at, change.type.split(".", 1)[1], None, text))
    for plan in plans:
        entries.append(
            TimelineEntry(plan.created_at, "plan", None, f"Persoonlijk plan bijgewerkt (versie {plan.version})")
        )
    if unsubscribe_requested_at is not None:
        entries.append(
            TimelineEntry(
                unsubscribe_requested_at,
                "unsubscribe_requested",
                None,
                LIFECYCLE_TEXT["participant.unsubscribe_requested"],
            )
        )
    return sorted(entries, key=lambda entry: (entry.at, entry.kind), reverse=True)


def opens_per_day(opens: Sequence[OpenSeen], *, first_day: date | None, today: date, tz: ZoneInfo) -> list[OpensOnDay]:
    """Opens per calendar day (in the coach's time zone), from the first mail until today."""
    human = Counter(o.opened_at.astimezone(tz).date() for o in opens if not o.likely_automated)
    automated = Counter(o.opened_at.astimezone(tz).date() for o in opens if o.likely_automated)
    start = first_day or min([*human, *automated], default=today)
    start = max(start, today - timedelta(days=CHART_DAYS - 1))
    days = (today - start).days + 1
    return [
        OpensOnDay(day, human.get(day, 0), automated.get(day, 0))
        for day in (start + timedelta(days=offset) for offset in range(max(days, 0)))
    ]
