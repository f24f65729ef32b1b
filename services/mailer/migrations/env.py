"""Alembic environment of the mailer database."""

from services.mailer.tables import MailerTable
from shared.migrations import run_env

run_env(MailerTable.metadata)
