"""Coaching's command line: `python -m services.coaching.cli rebuild` recomputes the
projection from the topics, from the beginning (see rebuild.py for how)."""

from __future__ import annotations

import asyncio

import typer
from tqdm import tqdm

from services.coaching.rebuild import Rebuild, RebuildResult
from services.coaching.settings import CoachingSettings
from shared.db import Database
from shared.logging import configure_logging

app = typer.Typer(help="Coaching service tools.", no_args_is_help=True, add_completion=False)


async def _rebuild(settings: CoachingSettings, show_progress: bool) -> RebuildResult:
    database = Database(settings.database_url, pool_size=1)
    bar = tqdm(total=0, unit="ev", unit_scale=True, desc="rebuild", disable=not show_progress)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        return await Rebuild(database, settings.kafka_bootstrap, progress=bar.update).run(on_total=on_total)
    finally:
        bar.close()
        await database.dispose()


@app.callback()
def main() -> None:
    """Coaching service tools."""


@app.command()
def rebuild(progress: bool = typer.Option(True, help="Show a progress bar.")) -> None:
    """Rebuild the dashboard projection from all topics; what coaches wrote is kept."""
    settings = CoachingSettings()
    configure_logging("coaching-cli", "WARNING")
    result = asyncio.run(_rebuild(settings, progress))
    typer.echo(
        f"rebuilt the projection from {result.events_read} events "
        f"({result.events_applied} applied, {result.duplicates} redelivered, {result.ignored} not for coaching, "
        f"{result.invalid + result.failed} unusable) in {result.seconds:.2f}s: "
        f"{result.events_per_second:,.0f} events/s"
    )
    typer.echo("rows: " + ", ".join(f"{name} {count}" for name, count in result.rows.items()))


if __name__ == "__main__":
    app()
