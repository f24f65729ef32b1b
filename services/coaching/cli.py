"""Coaching's command line: `python -m services.coaching.cli rebuild` recomputes the
projection from the topics, from the beginning (see rebuild.py for how);
`publish-plans` tells the other services every participant's call plan and alerts again
where they differ from what was told (after an upgrade or a rebuild)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import typer
from sqlmodel import col, select
from tqdm import tqdm

from services.coaching import use_cases
from services.coaching.rebuild import Rebuild, RebuildResult
from services.coaching.settings import CoachingSettings
from services.coaching.tables import DashboardRow
from shared.db import Database
from shared.kafka import kafka_security
from shared.logging import configure_logging
from shared.settings import read_settings

app = typer.Typer(help="Coaching service tools.", no_args_is_help=True, add_completion=False)


async def _rebuild(settings: CoachingSettings, show_progress: bool) -> RebuildResult:
    database = Database(settings.database_url, pool_size=1)
    bar = tqdm(total=0, unit="ev", unit_scale=True, desc="rebuild", disable=not show_progress)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        rebuild = Rebuild(database, settings.kafka_bootstrap, progress=bar.update, security=kafka_security(settings))
        return await rebuild.run(on_total=on_total)
    finally:
        bar.close()
        await database.dispose()


async def _publish_plans(settings: CoachingSettings, batch: int = 200) -> tuple[int, int]:
    """(participants looked at, events staged); one short transaction per participant."""
    database = Database(settings.database_url, pool_size=1)
    tz, seen, staged, after = ZoneInfo(settings.display_timezone), 0, 0, None
    try:
        while True:
            async with database.session() as session:
                query = select(DashboardRow.participant_id).order_by(col(DashboardRow.participant_id)).limit(batch)
                if after is not None:
                    query = query.where(col(DashboardRow.participant_id) > after)
                ids = list((await session.execute(query)).scalars())
            for participant_id in ids:
                async with database.session() as session:
                    staged += await use_cases.republish_call_plan(
                        session, participant_id=participant_id, tz=tz, now=datetime.now(UTC)
                    )
            seen += len(ids)
            if len(ids) < batch:
                return seen, staged
            after = ids[-1]
    finally:
        await database.dispose()


@app.callback()
def main() -> None:
    """Coaching service tools."""


@app.command()
def rebuild(progress: bool = typer.Option(True, help="Show a progress bar.")) -> None:
    """Rebuild the dashboard projection from all topics; what coaches wrote is kept."""
    settings = read_settings(CoachingSettings)
    configure_logging("coaching-cli", "WARNING")
    result = asyncio.run(_rebuild(settings, progress))
    typer.echo(
        f"rebuilt the projection from {result.events_read} events "
        f"({result.events_applied} applied, {result.duplicates} redelivered, {result.ignored} not for coaching, "
        f"{result.invalid + result.failed} unusable) in {result.seconds:.2f}s: "
        f"{result.events_per_second:,.0f} events/s"
    )
    typer.echo("rows: " + ", ".join(f"{name} {count}" for name, count in result.rows.items()))


@app.command("publish-plans")
def publish_plans() -> None:
    """Publish every participant's call plan and alerts where they differ from what was published
    (the running service's outbox relay sends them)."""
    settings = read_settings(CoachingSettings)
    configure_logging("coaching-cli", "WARNING")
    seen, staged = asyncio.run(_publish_plans(settings))
    typer.echo(f"looked at {seen} participants; staged {staged} events")


if __name__ == "__main__":
    app()
