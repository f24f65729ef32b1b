"""running participants per coach, kept by triggers: the enrolment API's counts read a row per coach

Revision ID: e4b9c2d7a1f3
Revises: d7e3a1f4b806
Create Date: 2026-12-01 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "e4b9c2d7a1f3"
down_revision: str | None = "d7e3a1f4b806"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every batch of API enrolments counted the organisation's running participants while it held
# the organisation's lock: 7 ms at 22,000 participants, and growing with the organisation.
# Triggers keep the count per coach instead, on every path that changes a participant
# (enrolment, import, confirmation, pause, stop, another coach, erasure), in the same
# transaction as the change. Statement-level triggers with transition tables: a batch of 200
# enrolments is one upsert, not 200.
RUNNING = "('enrolled', 'active', 'paused')"
"""services.enrolment.domain.ACTIVE_STATUSES (tests/e2e/test_running_participants.py checks both)."""

# What each event adds (+1) or takes away (-1); a trigger can read only the transition tables
# its event has, so each event has its own function.
CHANGES = {
    "INSERT": f"SELECT org_id, coach_id, 1 AS change FROM new_rows WHERE status IN {RUNNING}",
    "DELETE": f"SELECT org_id, coach_id, -1 AS change FROM old_rows WHERE status IN {RUNNING}",
    "UPDATE": (
        f"SELECT org_id, coach_id, 1 AS change FROM new_rows WHERE status IN {RUNNING}"
        f" UNION ALL SELECT org_id, coach_id, -1 FROM old_rows WHERE status IN {RUNNING}"
    ),
}
TRANSITION_TABLES = {
    "INSERT": "NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def count_function(event: str) -> str:
    # Rows change in (org_id, coach_id) order, so two transactions that change the same
    # coaches' counts wait for each other instead of deadlocking.
    return f"""
CREATE FUNCTION count_running_participants_{event.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO running_participants AS r (org_id, coach_id, running)
  SELECT org_id, coach_id, sum(change) FROM ({CHANGES[event]}) AS changes
   GROUP BY org_id, coach_id HAVING sum(change) <> 0
   ORDER BY org_id, coach_id
  ON CONFLICT (org_id, coach_id) DO UPDATE SET running = r.running + EXCLUDED.running;
  RETURN NULL;
END
$$"""


def upgrade() -> None:
    op.create_table(
        "running_participants",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("coach_id", sa.Uuid(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "coach_id"),
    )
    # Counted under a lock that lets no participant change until the triggers are in place.
    op.execute("LOCK TABLE participant IN SHARE ROW EXCLUSIVE MODE")
    for event in CHANGES:
        op.execute(count_function(event))
        op.execute(
            f"CREATE TRIGGER count_running_participants_{event.lower()} AFTER {event} ON participant"
            f" REFERENCING {TRANSITION_TABLES[event]} FOR EACH STATEMENT"
            f" EXECUTE FUNCTION count_running_participants_{event.lower()}()"
        )
    op.execute("""
CREATE FUNCTION forget_running_participants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM running_participants;
  RETURN NULL;
END
$$""")
    op.execute(
        "CREATE TRIGGER forget_running_participants AFTER TRUNCATE ON participant"
        " FOR EACH STATEMENT EXECUTE FUNCTION forget_running_participants()"
    )
    op.execute(f"""
INSERT INTO running_participants (org_id, coach_id, running)
SELECT org_id, coach_id, count(*) FROM participant WHERE status IN {RUNNING} GROUP BY org_id, coach_id
""")


def downgrade() -> None:
    op.execute("DROP TRIGGER forget_running_participants ON participant")
    op.execute("DROP FUNCTION forget_running_participants()")
    for event in CHANGES:
        op.execute(f"DROP TRIGGER count_running_participants_{event.lower()} ON participant")
        op.execute(f"DROP FUNCTION count_running_participants_{event.lower()}()")
    op.drop_table("running_participants")
