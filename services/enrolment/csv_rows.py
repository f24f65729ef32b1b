"""Participants from a CSV file, free of I/O: reading a spreadsheet export (delimiter, encoding,
Dutch or English column names) and checking every row against the organisation before anything
is written."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from services.enrolment.domain import (
    FieldProblem,
    ParticipantFields,
    check_start_date,
    check_variant,
    choose_coach,
    default_start_date,
    parse_clock_time,
    problems_from_validation,
)
from shared.errors import Refusal


class CsvFileError(ValueError):
    """The file as a whole cannot be read (encoding, header, size); no row is looked at."""


_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("firstname", "voornaam", "roepnaam", "naam", "name"),
    "email": ("email", "emailadres", "mail", "mailadres", "emailaddress"),
    "phone": ("phone", "telefoon", "telefoonnummer", "tel", "mobiel", "mobielnummer", "mobilephone"),
    "send_time": ("sendtime", "verzendtijd", "tijd", "mailtijd", "time"),
    "timezone": ("timezone", "tijdzone"),
    "start_date": ("startdate", "startdatum", "start", "begindatum"),
    "variant": ("variant", "programma", "programmavariant"),
    "coach": ("coach", "coachemail", "coachid", "coachemailadres"),
}


_ALIAS_TO_FIELD = {alias: name for name, aliases in _COLUMN_ALIASES.items() for alias in aliases}


REQUIRED_COLUMNS = ("first_name", "email")


MAX_IMPORT_ROWS = 50_000


def _normalise_header(cell: str) -> str:
    return re.sub(r"[\s_\-.]", "", cell.strip().lower())


@dataclass(frozen=True)
class CsvRow:
    """One data row: its row number as a spreadsheet shows it (header = 1) and its cells."""

    number: int
    cells: dict[str, str]


@dataclass(frozen=True)
class CsvTable:
    """A read CSV file: the recognised columns, the ignored ones, and the data rows."""

    delimiter: str
    columns: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    rows: tuple[CsvRow, ...]
    bad_rows: tuple[RowRejection, ...] = ()


def _decode(data: bytes) -> str:
    try:
        # utf-8-sig drops the byte order mark that Excel's "CSV UTF-8" puts in front.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CsvFileError(
            f"The file is not UTF-8 (first bad byte on line {line}). "
            "Save it as 'CSV UTF-8 (comma delimited)' and try again."
        ) from None


def _sniff_delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"


def read_csv(data: bytes) -> CsvTable:
    """Read a spreadsheet export: `;` or `,` (or tab) separated, UTF-8 with or without BOM.

    Columns are recognised by English or Dutch names in any case ("E-mailadres",
    "Voornaam"); rows with no cells filled in are skipped, as spreadsheets leave them.
    """
    text = _decode(data)
    if not text.strip():
        raise CsvFileError("The file is empty.")
    first_line = text.lstrip("\r\n").splitlines()[0]
    delimiter = _sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        records = list(reader)
    except csv.Error as error:
        raise CsvFileError(f"The file is not valid CSV near line {reader.line_num}: {error}.") from None
    while records and not any(cell.strip() for cell in records[0]):
        records.pop(0)
    if not records:
        raise CsvFileError("The file has no header row.")
    header, body = records[0], records[1:]
    fields: list[str | None] = []
    ignored: list[str] = []
    for cell in header:
        name = _ALIAS_TO_FIELD.get(_normalise_header(cell))
        if name is not None and name in fields:
            raise CsvFileError(f"The column '{cell.strip()}' appears twice in the header.")
        fields.append(name)
        if name is None and cell.strip():
            ignored.append(cell.strip())
    missing = [name for name in REQUIRED_COLUMNS if name not in fields]
    if missing:
        raise CsvFileError(
            f"The header has no column for {', '.join(missing)}. "
            "Use for example the columns: voornaam;e-mail;telefoon;startdatum;verzendtijd."
        )
    if len(body) > MAX_IMPORT_ROWS:
        raise CsvFileError(f"The file has {len(body)} rows; at most {MAX_IMPORT_ROWS} per import.")
    rows: list[CsvRow] = []
    bad: list[RowRejection] = []
    for index, record in enumerate(body, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(fields) and any(cell.strip() for cell in record[len(fields) :]):
            bad.append(
                RowRejection(
                    index,
                    (FieldProblem("row", f"has {len(record)} cells but the header has {len(fields)} columns"),),
                )
            )
            continue
        cells = {name: value.strip() for name, value in zip(fields, record, strict=False) if name is not None}
        rows.append(CsvRow(number=index, cells=cells))
    return CsvTable(
        delimiter=delimiter,
        columns=tuple(name for name in fields if name is not None),
        ignored_columns=tuple(ignored),
        rows=tuple(rows),
        bad_rows=tuple(bad),
    )


_DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y")


def parse_dutch_date(value: str) -> date:
    """2026-12-01, 01-12-2026, 1/12/2026 or 1.12.2026 (day before month, as in Dutch)."""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError("not a date; write it as 31-12-2026 or 2026-12-31")


@dataclass(frozen=True)
class RowRejection:
    """A row that was not imported, and every reason why."""

    row: int
    problems: tuple[FieldProblem, ...]


@dataclass(frozen=True)
class AcceptedRow:
    """A row ready to insert: validated, defaults filled in, a coach chosen."""

    row: int
    fields: ParticipantFields
    coach_id: UUID
    start_date: date
    variant: str


@dataclass(frozen=True)
class ImportContext:
    """What the rules need to know about the organisation at the moment of import."""

    now: datetime
    variants: tuple[str, ...]
    coaches: Mapping[str, UUID]
    """Coach by lower-cased e-mail address and by id as text."""
    active_per_coach: Mapping[UUID, int]
    running_emails: frozenset[str]
    capacity: int
    """How many more participants the licence allows now."""


@dataclass
class ImportPlan:
    """Which rows would be imported and which not (with reasons), before anything is written."""

    accepted: list[AcceptedRow] = field(default_factory=list)
    rejected: list[RowRejection] = field(default_factory=list)


def _cell(cells: Mapping[str, str], name: str) -> str | None:
    value = cells.get(name)
    return value if value else None


def _row_fields(cells: Mapping[str, str]) -> tuple[dict[str, Any], list[FieldProblem]]:
    values: dict[str, Any] = {
        name: value for name in ("first_name", "email", "phone", "timezone", "variant") if (value := _cell(cells, name))
    }
    problems: list[FieldProblem] = []
    if (raw := _cell(cells, "send_time")) is not None:
        try:
            values["send_time"] = parse_clock_time(raw)
        except ValueError as error:
            problems.append(FieldProblem("send_time", str(error)))
    if (raw := _cell(cells, "start_date")) is not None:
        try:
            values["start_date"] = parse_dutch_date(raw)
        except ValueError as error:
            problems.append(FieldProblem("start_date", str(error)))
    return values, problems


def plan_import(rows: Iterable[CsvRow], context: ImportContext) -> ImportPlan:
    """Validate every row against the rules and the organisation; choose coaches.

    Rows are taken in file order: a repeated address is refused from its second row on,
    and rows beyond the licence's free places are refused as 'licence full'.
    """
    plan = ImportPlan()
    seen: dict[str, int] = {}
    load = dict(context.active_per_coach)
    capacity = context.capacity
    for row in rows:
        values, problems = _row_fields(row.cells)
        fields: ParticipantFields | None = None
        try:
            fields = ParticipantFields.model_validate(values)
        except ValidationError as error:
            known = {problem.field for problem in problems}
            problems += [p for p in problems_from_validation(error) if p.field not in known]
        coach_ref = _cell(row.cells, "coach")
        requested_coach: UUID | None = None
        if coach_ref is not None:
            requested_coach = context.coaches.get(coach_ref.lower())
            if requested_coach is None:
                problems.append(FieldProblem("coach", f"no coach '{coach_ref}' in this organisation"))
        variant = start = coach_id = None
        if fields is not None:
            if fields.email in context.running_emails:
                problems.append(FieldProblem("email", "this address is already enrolled here"))
            elif fields.email in seen:
                problems.append(FieldProblem("email", f"this address is also on row {seen[fields.email]}"))
            else:
                seen[fields.email] = row.number
            for check in ("variant", "start_date"):
                try:
                    if check == "variant":
                        variant = check_variant(fields.variant, context.variants)
                    else:
                        start = check_start_date(
                            fields.start_date or default_start_date(context.now, fields.timezone),
                            context.now,
                            fields.timezone,
                        )
                except Refusal as refused:
                    problems.append(FieldProblem(refused.field or check, refused.message))
        if not problems:
            try:
                coach_id = choose_coach(requested_coach, load)
            except Refusal as refused:
                problems.append(FieldProblem("coach", refused.message))
        if not problems and capacity <= 0:
            problems.append(FieldProblem("licence", "the licence is full; this row would exceed the maximum"))
        if problems or fields is None or coach_id is None or start is None or variant is None:
            plan.rejected.append(RowRejection(row.number, tuple(problems)))
            continue
        load[coach_id] += 1
        capacity -= 1
        plan.accepted.append(AcceptedRow(row.number, fields, coach_id, start, variant))
    return plan
