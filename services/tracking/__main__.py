"""Start command: python -m services.tracking"""

from pathlib import Path

from services.tracking.app import create_app
from services.tracking.settings import TrackingSettings
from shared.runtime import run_service
from shared.settings import read_settings

run_service("tracking", read_settings(TrackingSettings), create_app, Path(__file__).parent / "migrations")
