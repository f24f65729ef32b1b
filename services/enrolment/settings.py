"""Enrolment settings (MEER_* environment variables)."""

from pydantic import Field

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings


class EnrolmentSettings(ServiceSettings):
    """Settings of the enrolment service."""

    http_port: int = 8001
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_enrolment"
    licensor_secret: str = Field(
        default=f"{DEV_SECRET_PREFIX}licensor-secret",
        description="Bearer secret of the licensor (platform admin).",
    )
