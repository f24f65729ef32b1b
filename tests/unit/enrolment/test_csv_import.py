"""CSV import rules: reading Dutch spreadsheet exports and judging every row."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import UUID

import pytest

from services.enrolment.csv_rows import CsvFileError, ImportContext, plan_import, read_csv

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
COACH_A, COACH_B = UUID(int=1), UUID(int=2)


def context(**overrides: object) -> ImportContext:
    values: dict[str, object] = {
        "now": NOW,
        "variants": ("standaard", "op-afstand"),
        "coaches": {"karin@org.nl": COACH_A, str(COACH_A): COACH_A, "piet@org.nl": COACH_B, str(COACH_B): COACH_B},
        "active_per_coach": {COACH_A: 5, COACH_B: 0},
        "running_emails": frozenset({"al@example.org"}),
        "capacity": 100,
    }
    values.update(overrides)
    return ImportContext(**values)  # type: ignore[arg-type]


def problems(plan: object, row: int) -> dict[str, str]:
    rejected = {r.row: r for r in plan.rejected}  # type: ignore[attr-defined]
    return {p.field: p.reason for p in rejected[row].problems}


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("delimiter", [";", ","])
def test_dutch_exports_with_either_delimiter_and_with_or_without_bom_are_read(bom: bytes, delimiter: str) -> None:
    text = delimiter.join(["Voornaam", "E-mailadres", "Telefoonnummer", "Startdatum", "Verzendtijd"]) + "\r\n"
    text += delimiter.join(["Ans", "ans@example.org", "06 12345678", "01-12-2026", "8.30"]) + "\r\n"
    table = read_csv(bom + text.encode())
    assert table.delimiter == delimiter
    assert table.columns == ("first_name", "email", "phone", "start_date", "send_time")
    (row,) = table.rows
    assert row.number == 2 and row.cells["first_name"] == "Ans"
    plan = plan_import(table.rows, context())
    (accepted,) = plan.accepted
    assert accepted.fields.phone == "+31612345678"
    assert accepted.start_date == date(2026, 12, 1)
    assert accepted.fields.send_time == time(8, 30)


def test_quoted_cells_may_hold_the_delimiter() -> None:
    table = read_csv(b'voornaam;email;opmerking\n"Jan; de tweede";jan@example.org;"a;b"\n')
    assert table.rows[0].cells["first_name"] == "Jan; de tweede"
    assert table.ignored_columns == ("opmerking",)


def test_empty_rows_are_skipped_but_row_numbers_stay_those_of_the_sheet() -> None:
    table = read_csv(b"voornaam;email\nAns;ans@example.org\n;\n\nBep;bep@example.org\n")
    assert [row.number for row in table.rows] == [2, 5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"voornaam;telefoon\nAns;0612345678\n", "email"),
        (b"naam;email;e-mail\n", "twice"),
        ("voornaam;email\nJosé;jose@example.org\n".encode("cp1252"), "UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_says_why(data: bytes, message: str) -> None:
    with pytest.raises(CsvFileError, match=message):
        read_csv(data)


def test_every_bad_row_is_reported_with_its_number_and_field() -> None:
    csv = (
        "voornaam;email;telefoon;startdatum;verzendtijd;variant;coach\n"
        "Ans;ans@example.org;;;;;\n"  # 2 ok
        ";leeg@example.org;;;;;\n"  # 3 no first name
        "Bep;bep@;;;;;\n"  # 4 bad address
        "Cor;cor@example.org;12345;;;;\n"  # 5 bad phone
        "Dirk;dirk@example.org;;31-02-2026;;;\n"  # 6 no such date
        "Eef;eef@example.org;;;25:00;;\n"  # 7 no such time
        "Fem;fem@example.org;;;;luxe;\n"  # 8 variant not licensed
        "Gijs;gijs@example.org;;;;;onbekend@org.nl\n"  # 9 unknown coach
        "Han;AL@example.org;;;;;\n"  # 10 already enrolled
        "Ida;ans@example.org;;;;;\n"  # 11 earlier in this file
        "Jan;jan@example.org;;01-01-2020;;;\n"  # 12 start in the past
    )
    plan = plan_import(read_csv(csv.encode()).rows, context())
    assert [row.row for row in plan.accepted] == [2]
    assert [row.row for row in plan.rejected] == list(range(3, 13))
    assert "first_name" in problems(plan, 3)
    assert "email" in problems(plan, 4)
    assert "phone" in problems(plan, 5)
    assert "start_date" in problems(plan, 6)
    assert "send_time" in problems(plan, 7)
    assert "variant" in problems(plan, 8)
    assert "coach" in problems(plan, 9)
    assert "already enrolled" in problems(plan, 10)["email"]
    assert "row 2" in problems(plan, 11)["email"]
    assert "past" in problems(plan, 12)["start_date"]


def test_a_row_with_several_faults_names_them_all() -> None:
    plan = plan_import(read_csv(b"voornaam;email;telefoon\n;geen-adres;123\n").rows, context())
    assert set(problems(plan, 2)) == {"first_name", "email", "phone"}


def test_coaches_are_balanced_across_the_import_and_may_be_named() -> None:
    rows = "\n".join(f"P{i};p{i}@example.org;" for i in range(8))
    rows += f"\nQ;q@example.org;karin@org.nl\nR;r@example.org;{COACH_B}"
    plan = plan_import(read_csv(f"voornaam;email;coach\n{rows}\n".encode()).rows, context())
    chosen = [row.coach_id for row in plan.accepted]
    # B starts at 0 and A at 5: the first five go to B, then they alternate.
    assert chosen[:5] == [COACH_B] * 5
    assert chosen[5:8] == [COACH_A, COACH_B, COACH_A]
    assert chosen[8:] == [COACH_A, COACH_B]


def test_rows_beyond_the_licence_are_refused_as_licence_full() -> None:
    rows = "\n".join(f"P{i};p{i}@example.org" for i in range(5))
    plan = plan_import(read_csv(f"voornaam;email\n{rows}\n".encode()).rows, context(capacity=3))
    assert len(plan.accepted) == 3
    assert [problems(plan, r.row) for r in plan.rejected] == [{"licence": plan.rejected[0].problems[0].reason}] * 2
    assert "licence is full" in plan.rejected[0].problems[0].reason


def test_defaults_fill_in_what_the_sheet_leaves_empty() -> None:
    plan = plan_import(read_csv(b"voornaam;email\nAns;ans@example.org\n").rows, context())
    (row,) = plan.accepted
    assert row.start_date == date(2026, 11, 24)  # tomorrow in Amsterdam
    assert row.fields.send_time == time(8, 0) and row.fields.timezone == "Europe/Amsterdam"
    assert row.variant == "standaard" and row.coach_id == COACH_B


def test_no_coach_in_the_organisation_refuses_each_row() -> None:
    plan = plan_import(read_csv(b"voornaam;email\nAns;ans@example.org\n").rows, context(active_per_coach={}))
    assert "coach" in problems(plan, 2)


def test_a_row_with_extra_cells_is_refused_not_guessed() -> None:
    table = read_csv(b"voornaam;email\nAns;ans@example.org;extra\nBep;bep@example.org\n")
    assert [row.row for row in table.bad_rows] == [2]
    assert [row.number for row in table.rows] == [3]
