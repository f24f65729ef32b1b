"""Start command: python -m services.enrolment"""

from pathlib import Path

from services.enrolment.app import create_app
from services.enrolment.settings import EnrolmentSettings
from shared.runtime import run_service
from shared.settings import read_settings

run_service("enrolment", read_settings(EnrolmentSettings), create_app, Path(__file__).parent / "migrations")
