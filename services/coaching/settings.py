"""Coaching settings (MEER_* environment variables)."""

from shared.settings import ServiceSettings


class CoachingSettings(ServiceSettings):
    """Settings of the coaching service."""

    http_port: int = 8004
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_coaching"
