"""Start command: python -m services.mailer"""

from pathlib import Path

from services.mailer.app import create_app
from services.mailer.settings import MailerSettings
from shared.runtime import run_service

run_service("mailer", MailerSettings(), create_app, Path(__file__).parent / "migrations")
