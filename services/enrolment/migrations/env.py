"""Alembic environment of the enrolment database."""

from services.enrolment.tables import EnrolmentTable
from shared.migrations import run_env

run_env(EnrolmentTable.metadata)
