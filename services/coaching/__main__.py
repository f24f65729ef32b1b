"""Start command: python -m services.coaching"""

from pathlib import Path

from services.coaching.app import create_app
from services.coaching.settings import CoachingSettings
from shared.runtime import run_service
from shared.settings import read_settings

run_service("coaching", read_settings(CoachingSettings), create_app, Path(__file__).parent / "migrations")
