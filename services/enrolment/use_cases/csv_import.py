"""Participants from a CSV file: check every row against the organisation, then write the accepted
rows with their events in the caller's transaction, and report per row."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import csv_rows, storage
from services.enrolment.schemas import ImportedRowPublic, ImportReport, RejectedRowPublic, RowProblem
from services.enrolment.tables import Organisation
from services.enrolment.use_cases.participants import capacity, stage_new_participant
from shared.errors import Refusal

ImportMode = Literal["valid_rows", "all_or_nothing"]
Progress = Callable[[int], None]


async def import_context(*, session: AsyncSession, organisation: Organisation, now: datetime) -> csv_rows.ImportContext:
    """What the row rules need; refuses the whole import when the licence does not run."""
    return csv_rows.ImportContext(
        now=now,
        variants=tuple(organisation.variants),
        coaches=await storage.coach_lookup(session=session, org_id=organisation.id),
        active_per_coach=await storage.active_participants_per_coach(session=session, org_id=organisation.id),
        running_emails=await storage.running_emails(session=session, org_id=organisation.id),
        capacity=await capacity(session=session, organisation=organisation, now=now),
    )


async def write_import(
    *,
    session: AsyncSession,
    organisation: Organisation,
    accepted: Iterable[csv_rows.AcceptedRow],
    now: datetime,
    progress: Progress | None = None,
    chunk: int = 1000,
) -> list[ImportedRowPublic]:
    """Insert the accepted rows with one participant.enrolled each, in the caller's transaction."""
    imported: list[ImportedRowPublic] = []
    batch: list[dict[str, object]] = []

    async def flush() -> None:
        await storage.insert_participants(session=session, rows=batch)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for row in accepted:
        participant = stage_new_participant(
            session,
            org_id=organisation.id,
            fields=row.fields,
            coach_id=row.coach_id,
            start_date=row.start_date,
            variant=row.variant,
            source="csv",
            now=now,
        )
        batch.append(participant)
        imported.append(ImportedRowPublic(row=row.row, participant_id=participant["id"]))
        if len(batch) >= chunk:
            await flush()
    if batch:
        await flush()
    return imported


def import_report(
    *,
    table: csv_rows.CsvTable,
    plan: csv_rows.ImportPlan,
    imported: list[ImportedRowPublic],
    mode: ImportMode,
    dry_run: bool,
) -> ImportReport:
    """The report of an import: imported rows, rejected rows with reasons."""
    rejected = sorted([*table.bad_rows, *plan.rejected], key=lambda rejection: rejection.row)
    return ImportReport(
        mode=mode,
        dry_run=dry_run,
        rows=len(table.rows) + len(table.bad_rows),
        imported=imported,
        rejected=[
            RejectedRowPublic(
                row=rejection.row, problems=[RowProblem(field=p.field, reason=p.reason) for p in rejection.problems]
            )
            for rejection in rejected
        ],
        ignored_columns=list(table.ignored_columns),
        would_import=len(plan.accepted),
    )


def should_write(table: csv_rows.CsvTable, plan: csv_rows.ImportPlan, mode: ImportMode, dry_run: bool) -> bool:
    """valid_rows: every valid row goes in; all_or_nothing: only when no row was rejected."""
    if dry_run:
        return False
    return mode == "valid_rows" or not (plan.rejected or table.bad_rows)


async def import_csv(
    *,
    session: AsyncSession,
    organisation: Organisation,
    data: bytes,
    mode: ImportMode,
    dry_run: bool,
    now: datetime,
) -> ImportReport:
    """Read, check every row, then insert the rows that may go in, in one transaction.

    Refuses (invalid, on `file`) a file that cannot be read at all, and (conflict) an
    import when the licence does not run; then nothing is written.
    """
    try:
        table = csv_rows.read_csv(data)
    except csv_rows.CsvFileError as error:
        raise Refusal("invalid", str(error), field="file") from None
    context = await import_context(session=session, organisation=organisation, now=now)
    plan = csv_rows.plan_import(table.rows, context)
    imported: list[ImportedRowPublic] = []
    if should_write(table, plan, mode, dry_run):
        imported = await write_import(session=session, organisation=organisation, accepted=plan.accepted, now=now)
    return import_report(table=table, plan=plan, imported=imported, mode=mode, dry_run=dry_run)
