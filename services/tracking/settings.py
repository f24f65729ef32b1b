"""Tracking settings (MEER_* environment variables)."""

from pydantic import Field

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings


class TrackingSettings(ServiceSettings):
    """Settings of the tracking service."""

    http_port: int = 8003
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_tracking"
    tracking_keys: str = Field(
        default=f"{DEV_SECRET_PREFIX}tracking-key",
        description="Comma-separated HMAC keys that verify tracking tokens, newest first.",
    )
