"""Subject-access exports, the rules without I/O: which parts an export waits for, where it
stands, enrolment's own part, the bundle of all parts, and the readable Dutch page."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.export_parts import Part, make_part
from shared.templating import template_environment

SERVICES_ASKED = ("mailer", "tracking", "coaching")
"""The services that answer export.requested with a part of their own."""
EXPECTED_PARTS = ("enrolment", *SERVICES_ASKED)
BUNDLE_FORMAT = "meer-contact-subject-access-export"
BUNDLE_VERSION = 1
PARTICIPANT_COLUMNS_NOT_EXPORTED = frozenset({"confirm_token_hash"})
"""A hash of a one-time link says nothing about the person and must not leave the service."""
DISPLAY_TIMEZONE = ZoneInfo("Europe/Amsterdam")

ExportStatus = Literal["pending", "complete", "timed_out"]


def export_status(
    *,
    expected: Sequence[str],
    received: Sequence[str],
    requested_at: datetime,
    completed_at: datetime | None,
    now: datetime,
    timeout: timedelta,
) -> tuple[ExportStatus, list[str]]:
    """Where an export stands and which parts are still missing (in the expected order)."""
    if completed_at is not None:
        return "complete", []
    missing = [service for service in expected if service not in received]
    return ("timed_out" if now - requested_at > timeout else "pending"), missing


def enrolment_part(*, participant: Mapping[str, Any], organisation_name: str, coach_name: str | None) -> Part:
    """Enrolment's own part: the participant as enrolled (consent included), their
    organisation and coach by name."""
    row = {key: value for key, value in participant.items() if key not in PARTICIPANT_COLUMNS_NOT_EXPORTED}
    return make_part(
        "enrolment",
        {
            "participant": [row],
            "organisation": [{"name": organisation_name}],
            "coach": [{"name": coach_name}],
        },
    )


def build_bundle(
    *,
    export_id: UUID,
    org_id: UUID,
    participant_id: UUID,
    requested_at: datetime,
    completed_at: datetime,
    parts: Mapping[str, Part],
) -> dict[str, Any]:
    """All parts in one document, in the expected order (each keeps its own schema version)."""
    ordered = [*EXPECTED_PARTS, *sorted(set(parts) - set(EXPECTED_PARTS))]
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "export_id": str(export_id),
        "org_id": str(org_id),
        "participant_id": str(participant_id),
        "requested_at": requested_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "parts": {
            service: {
                "schema_version": parts[service].get("schema_version"),
                "tables": parts[service].get("tables", {}),
            }
            for service in ordered
            if service in parts
        },
        # The platform asks no questionnaires yet; their answers will be listed here.
        "questionnaires": [],
    }


# --- the readable page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A part of the page: one table of one service, with the columns that matter most."""

    title: str
    service: str
    table: str
    columns: tuple[str, ...]
    empty: str


SECTIONS = (
    Section(
        "Je aanmelding en toestemming",
        "enrolment",
        "participant",
        (
            "first_name",
            "email",
            "phone",
            "status",
            "start_date",
            "send_time",
            "timezone",
            "variant",
            "source",
            "consent_text_version",
            "consented_at",
            "consent_via",
            "confirmed_at",
            "started_at",
            "stopped_by",
            "stop_reason",
            "ended_at",
            "created_at",
        ),
        "Er zijn geen gegevens van je aanmelding.",
    ),
    Section(
        "Mails die we je stuurden",
        "mailer",
        "delivery",
        ("day", "lesson_title", "status", "sent_at"),
        "We hebben je nog geen mail gestuurd.",
    ),
    Section(
        "Mails die je opende",
        "tracking",
        "open_record",
        ("day", "opened_at", "likely_automated"),
        "We hebben niet gezien dat je een mail opende.",
    ),
    Section(
        "Links waarop je klikte",
        "tracking",
        "link_hit",
        ("day", "kind", "target", "hit_at", "likely_automated"),
        "We hebben niet gezien dat je op een link klikte.",
    ),
    Section(
        "Hoe de opdrachten gingen",
        "tracking",
        "assignment_report",
        ("day", "score", "note", "reported_at"),
        "Je hebt nog niet verteld hoe een opdracht ging.",
    ),
    Section(
        "Gesprekken met je coach",
        "coaching",
        "call_log",
        ("called_at", "reached", "duration_minutes", "planned_call", "notes", "next_agreement"),
        "Er zijn nog geen gesprekken vastgelegd.",
    ),
    Section(
        "Je persoonlijke plan",
        "coaching",
        "plan_version",
        ("version", "created_at", "noticed_how", "own_question", "causes", "causes_other", "goals", "steps"),
        "Er is nog geen persoonlijk plan.",
    ),
)

SERVICE_NAMES = {
    "enrolment": "Aanmelding",
    "mailer": "Mails versturen",
    "tracking": "Mails lezen en opdrachten",
    "coaching": "Coaching",
}
LABELS = {
    "first_name": "Voornaam",
    "email": "E-mailadres",
    "phone": "Telefoonnummer",
    "status": "Status",
    "start_date": "Startdatum",
    "send_time": "Tijd van de dagelijkse mail",
    "timezone": "Tijdzone",
    "variant": "Soort training",
    "source": "Aangemeld via",
    "consent_text_version": "Versie van de toestemmingstekst",
    "consented_at": "Toestemming gegeven op",
    "consent_via": "Toestemming gegeven in",
    "confirmed_at": "Aanmelding bevestigd op",
    "started_at": "Eerste mail op",
    "stopped_by": "Gestopt door",
    "stop_reason": "Reden van stoppen",
    "ended_at": "Gestopt of klaar op",
    "created_at": "Vastgelegd op",
    "day": "Dag",
    "lesson_title": "Les",
    "sent_at": "Verstuurd op",
    "opened_at": "Geopend op",
    "likely_automated": "Waarschijnlijk door een computer",
    "kind": "Soort",
    "target": "Adres",
    "hit_at": "Op",
    "score": "Hoe ging het (1 tot 5)",
    "note": "Toelichting",
    "reported_at": "Ingevuld op",
    "called_at": "Gebeld op",
    "reached": "Bereikt",
    "duration_minutes": "Duur (minuten)",
    "planned_call": "Gepland gesprek",
    "notes": "Aantekeningen van de coach",
    "next_agreement": "Afspraak",
    "version": "Versie",
    "noticed_how": "Hoe de eenzaamheid opviel",
    "own_question": "Je eigen vraag",
    "causes": "Oorzaken",
    "causes_other": "Andere oorzaak",
    "goals": "Doelen",
    "steps": "Stappen",
    "name": "Naam",
}


VALUE_WORDS = {
    "status": {
        "pending": "wacht op bevestiging",
        "enrolled": "aangemeld",
        "active": "bezig",
        "paused": "gepauzeerd",
        "completed": "afgerond",
        "stopped": "gestopt",
        "erased": "gewist",
        "due": "nog te versturen",
        "sent": "verstuurd",
        "failed": "niet aangekomen",
        "cancelled": "niet meer versturen",
    },
    "source": {
        "admin": "de organisatie",
        "api": "de organisatie (koppeling)",
        "signup": "het aanmeldformulier",
        "signal": "je coach, na een signaal",
    },
    "consent_via": {"signal": "het gesprek met je coach"},
    "stopped_by": {"participant": "jijzelf", "coach": "je coach", "organisation": "de organisatie"},
    "kind": {"click": "link", "report": "opdrachtpagina", "unsubscribe": "afmeldpagina"},
}
"""Stored words in Dutch, per column; others are shown as stored."""


def display_field(column: str, value: Any) -> str:
    """A stored value of a column as a person reads it (Dutch words for known codes)."""
    if isinstance(value, str) and value in VALUE_WORDS.get(column, {}):
        return VALUE_WORDS[column][value]
    if column == "send_time" and isinstance(value, str) and len(value) == 8:  # hh:mm:ss
        return value[:5]
    return display_value(value)


def display_value(value: Any) -> str:
    """A stored value as a person reads it: ja/nee, Dutch dates in Dutch time, lists joined."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "ja" if value else "nee"
    if isinstance(value, list):
        return ", ".join(display_value(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return moment.astimezone(DISPLAY_TIMEZONE).strftime("%d-%m-%Y %H:%M")
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value[8:10]}-{value[5:7]}-{value[0:4]}"
    return str(value)


def _table_view(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    shown = [column for column in columns if any(column in row for row in rows)] or sorted(
        {column for row in rows for column in row}
    )
    return {
        "headers": [LABELS.get(column, column) for column in shown],
        "rows": [[display_field(column, row.get(column)) for column in shown] for row in rows],
    }


def page_view(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows: the main sections, then every stored row of every service."""
    parts: Mapping[str, Any] = bundle.get("parts", {})

    def rows_of(service: str, table: str) -> list[dict[str, Any]]:
        found = parts.get(service, {}).get("tables", {}).get(table, [])
        return found if isinstance(found, list) else []

    participant = next(iter(rows_of("enrolment", "participant")), {})
    organisation = next(iter(rows_of("enrolment", "organisation")), {})
    sections: list[dict[str, Any]] = []
    for section in SECTIONS:
        rows = rows_of(section.service, section.table)
        if section.table == "participant":
            fields = [(LABELS.get(c, c), display_field(c, participant.get(c))) for c in section.columns]
            sections.append({"title": section.title, "fields": fields, "table": None, "empty": None})
        else:
            table = _table_view(rows, section.columns) if rows else None
            sections.append({"title": section.title, "fields": None, "table": table, "empty": section.empty})
    everything = [
        {
            "service": SERVICE_NAMES.get(service, service),
            "tables": [
                {"name": name, "view": _table_view(rows, ())} for name, rows in part.get("tables", {}).items() if rows
            ],
        }
        for service, part in parts.items()
    ]
    return {
        "first_name": participant.get("first_name"),
        "organisation": organisation.get("name"),
        "completed_at": display_value(bundle.get("completed_at")),
        "export_id": bundle.get("export_id"),
        "sections": sections,
        "questionnaires": bundle.get("questionnaires", []),
        "everything": everything,
    }


_templates = template_environment(Path(__file__).parent / "templates")


def render_page(bundle: Mapping[str, Any], *, nonce: str) -> str:
    """The bundle as a readable Dutch HTML page (escaped; styles carry the CSP nonce)."""
    return _templates.get_template("export.html.j2").render(view=page_view(bundle), nonce=nonce)
