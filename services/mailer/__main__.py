"""Start command: python -m services.mailer"""

from pathlib import Path

from services.mailer.app import create_app
from services.mailer.settings import MailerSettings
from shared.runtime import run_service
from shared.settings import read_settings

run_service("mailer", read_settings(MailerSettings), create_app, Path(__file__).parent / "migrations")
