"""Enrolment's command line, for the licensor and for scripts.

    python -m services.enrolment.cli license-org --name … --valid-from … --valid-until … --max-participants …
    python -m services.enrolment.cli import-csv FILE --org ORG_ID [--all-or-nothing] [--dry-run]
    python -m services.enrolment.cli licence ORG_ID
    python -m services.enrolment.cli invite-staff --org ORG_ID --name … --email … --role org_admin
    python -m services.enrolment.cli rotate-api-key ORG_ID
    python -m services.enrolment.cli publish-contacts

It works on the enrolment database directly, with the service's own settings (MEER_*)
and the same use cases as the API: every change and its event commit together in the
outbox, and the running service publishes them. Why not through the API: the licensor
runs it on the platform's own hosts, it needs no secret on a command line, and a large
import is not bound by an HTTP timeout.

Exit codes: 0 done; 1 nothing was done (bad input, unreadable file, licence refused);
2 the import finished but some rows were rejected (listed by row number and field).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from services.enrolment import csv_rows, domain, storage
from services.enrolment.schemas import ImportReport, OrganisationCreate, StaffCreate
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases import csv_import, organisations, participants, staff_accounts
from shared.branding import DEFAULT_BRAND_COLOUR
from shared.db import Database, utcnow
from shared.errors import Refusal
from shared.settings import read_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Enrolment: licensing and participant imports.")
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error and give the exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def run_in_session(work: Callable[[AsyncSession, EnrolmentSettings], Awaitable[T]]) -> T:
    """Run `work` in one session on the enrolment database; it commits what it wants to keep."""
    settings = read_settings(EnrolmentSettings)

    async def main() -> T:
        database = Database(settings.database_url, pool_size=1)
        try:
            async with database.session() as session:
                return await work(session, settings)
        finally:
            await database.dispose()

    try:
        return asyncio.run(main())
    except Refusal as refused:
        raise fail(f"{refused.field or 'input'}: {refused.message}") from None
    except (OSError, OperationalError, InterfaceError) as error:
        raise fail(
            f"cannot reach the enrolment database ({type(error).__name__}); is MEER_DATABASE_URL right?"
        ) from None


def validated(model: type[T], values: dict[str, Any]) -> T:
    """The values as `model`, or the field-level reasons printed and exit 1."""
    try:
        return model.model_validate(values)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as error:
        for problem in domain.problems_from_validation(error):
            typer.secho(f"  {problem.field}: {problem.reason}", err=True)
        raise fail("the input is not valid (see above)") from None


@app.command("license-org")
def license_org(
    name: Annotated[str, typer.Option(help="The organisation's name.")],
    valid_from: Annotated[str, typer.Option(help="First day of the licence (YYYY-MM-DD).")],
    valid_until: Annotated[str, typer.Option(help="Last day of the licence (YYYY-MM-DD).")],
    max_participants: Annotated[int, typer.Option(help="Maximum number of active participants.")],
    display_name: Annotated[str | None, typer.Option(help="Name in mails and pages (default: --name).")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="Licensed programme variant (repeat for more).")] = None,
    contact_email: Annotated[str | None, typer.Option()] = None,
    contact_phone: Annotated[str | None, typer.Option()] = None,
    contact_person: Annotated[str | None, typer.Option()] = None,
    website: Annotated[str | None, typer.Option()] = None,
    brand_colour: Annotated[str, typer.Option(help="#rrggbb")] = DEFAULT_BRAND_COLOUR,
) -> None:
    """License an organisation; prints its id and its public sign-up page."""
    values: dict[str, Any] = {
        "name": name,
        "display_name": display_name or name,
        "licence_valid_from": valid_from,
        "licence_valid_until": valid_until,
        "max_active_participants": max_participants,
        "contact_email": contact_email,
        "contact_phone": contact_phone,
        "contact_person": contact_person,
        "website": website,
        "brand_colour": brand_colour,
    }
    if variant:
        values["variants"] = variant
    body = validated(OrganisationCreate, values)

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> tuple[UUID, str]:
        organisation = organisations.license_organisation(
            session=session, body=body, base_url=settings.enrolment_base_url
        )
        await session.commit()
        return organisation.id, settings.enrolment_base_url.rstrip("/")

    org_id, base_url = run_in_session(work)
    typer.echo(f"licensed {body.name}: {org_id}")
    typer.echo(f"public sign-up page: {base_url}/aanmelden/{org_id}")


@app.command("licence")
def licence(org_id: UUID) -> None:
    """Show the licence and its use (active / maximum)."""

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> str:
        organisation = await storage.get_organisation(session=session, org_id=org_id)
        if organisation is None:
            raise Refusal("not_found", f"organisation {org_id} does not exist", field="org")
        use = await organisations.licence_use(session=session, organisation=organisation, now=utcnow())
        return use.model_dump_json(indent=2)

    typer.echo(run_in_session(work))


@app.command("invite-staff")
def invite_staff(
    org: Annotated[UUID, typer.Option(help="Organisation id.")],
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="org_admin, coach or partner")] = "org_admin",
    partner_organisation: Annotated[str | None, typer.Option(help="A partner's own organisation.")] = None,
) -> None:
    """Invite an organisation admin, coach or partner; they get a mail with a set-password link."""
    body = validated(
        StaffCreate, {"name": name, "email": email, "role": role, "partner_organisation": partner_organisation}
    )

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> UUID:
        organisation = await storage.get_organisation(session=session, org_id=org)
        if organisation is None:
            raise Refusal("not_found", f"organisation {org} does not exist", field="org")
        staff, _ = await staff_accounts.invite_staff(
            session=session,
            organisation=organisation,
            name=body.name,
            email=body.email,
            role=body.role,
            partner_organisation=body.partner_organisation,
            settings=settings,
            now=utcnow(),
        )
        await session.commit()
        return staff.id

    typer.echo(f"invited {body.role} {run_in_session(work)}; the invitation mail is on its way")


@app.command("rotate-api-key")
def rotate_api_key(org_id: UUID) -> None:
    """Make a new API key for the organisation (shown once); the previous key stops working."""

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> str:
        organisation = await storage.get_organisation(session=session, org_id=org_id, for_update=True)
        if organisation is None:
            raise Refusal("not_found", f"organisation {org_id} does not exist", field="org")
        key, _ = await organisations.rotate_api_key(session=session, organisation=organisation, now=utcnow())
        await session.commit()
        return key

    typer.echo(run_in_session(work))


def print_report(report: ImportReport) -> None:
    """The per-row report: every rejected row with its number, field and reason."""
    for rejected in report.rejected:
        for problem in rejected.problems:
            typer.echo(f"  row {rejected.row}: {problem.field}: {problem.reason}")
    if report.ignored_columns:
        typer.echo(f"ignored columns: {', '.join(report.ignored_columns)}")
    if report.dry_run:
        verdict = f"dry run: {report.would_import} of {report.rows} rows would be imported"
    else:
        verdict = f"imported {len(report.imported)} of {report.rows} rows"
    typer.echo(f"{verdict}; {len(report.rejected)} rejected")


@app.command("publish-contacts")
def publish_contacts() -> None:
    """Publish every current participant's and staff member's contact details on meer.contact
    (the one-off step when moving to the contact topic, issue 14; safe to repeat)."""

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> int:
        return await participants.republish_contacts(session=session)

    typer.echo(f"{run_in_session(work)} contact details staged for meer.contact")


@app.command("import-csv")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV with a header: ';' or ',' separated, UTF-8 (BOM allowed).")],
    org: Annotated[UUID, typer.Option(help="Organisation id.")],
    all_or_nothing: Annotated[
        bool, typer.Option(help="Import nothing if any row is rejected (default: import every valid row).")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Check every row; import nothing.")] = False,
    report_file: Annotated[Path | None, typer.Option("--report", help="Also write the report as JSON here.")] = None,
) -> None:
    """Import participants from a CSV file, with a report per row.

    Every row is checked first; the valid rows then go in with their events in one transaction.

    The report names each rejected row's number, field and reason; exit code 2 if any.
    """
    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror}") from None
    try:
        table = csv_rows.read_csv(data)
    except csv_rows.CsvFileError as error:
        raise fail(f"{file}: {error}") from None
    mode: csv_import.ImportMode = "all_or_nothing" if all_or_nothing else "valid_rows"

    async def work(session: AsyncSession, settings: EnrolmentSettings) -> ImportReport:
        organisation = await storage.get_organisation(session=session, org_id=org, for_update=True)
        if organisation is None:
            raise Refusal("not_found", f"organisation {org} does not exist", field="org")
        context = await csv_import.import_context(session=session, organisation=organisation, now=utcnow())
        rows = tqdm(table.rows, desc="checking", unit="row", file=sys.stderr)
        plan = csv_rows.plan_import(rows, context)
        imported = []
        if csv_import.should_write(table, plan, mode, dry_run):
            with tqdm(total=len(plan.accepted), desc="importing", unit="row", file=sys.stderr) as bar:
                imported = await csv_import.write_import(
                    session=session,
                    organisation=organisation,
                    accepted=plan.accepted,
                    now=context.now,
                    progress=bar.update,
                )
                await session.commit()
        return csv_import.import_report(table=table, plan=plan, imported=imported, mode=mode, dry_run=dry_run)

    report = run_in_session(work)
    print_report(report)
    if report_file is not None:
        report_file.write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    if report.rejected:
        if mode == "all_or_nothing" and not dry_run:
            typer.secho("nothing was imported, because --all-or-nothing and some rows were rejected", err=True)
        raise typer.Exit(2)


if __name__ == "__main__":
    app()
