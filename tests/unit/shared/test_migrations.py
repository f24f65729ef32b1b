"""Each service's Alembic revisions form one line: branches written in parallel must be
chained before they land, or `upgrade head` refuses to start the service."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from shared.migrations import alembic_config

SERVICES = Path(__file__).resolve().parents[3] / "services"


@pytest.mark.parametrize("service", ["enrolment", "mailer", "tracking", "coaching"])
def test_each_service_has_one_migration_head(service: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(SERVICES / service / "migrations", "postgresql://unused"))
    heads = script.get_heads()
    assert len(heads) == 1, f"{service} has several migration heads {heads}: set one's down_revision to the other"
    # Every revision is reachable from that head: no orphan that a fresh database would skip.
    walked = {revision.revision for revision in script.walk_revisions()}
    files = {path.stem.split("_", 1)[0] for path in (SERVICES / service / "migrations" / "versions").glob("*.py")}
    assert walked == files
