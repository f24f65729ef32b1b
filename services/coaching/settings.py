"""Coaching settings (MEER_* environment variables)."""

from pathlib import Path

from pydantic import Field

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings


class CoachingSettings(ServiceSettings):
    """Settings of the coaching service."""

    http_port: int = 8004
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_coaching"
    staff_token_public_key_path: Path | None = Field(
        default=None, description="PEM public key that verifies staff tokens from enrolment (Ed25519)."
    )
    enrolment_base_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Enrolment's address: the login goes there, and the sign-up link of the recruitment kit.",
    )
    display_timezone: str = Field(
        default="Europe/Amsterdam", description="Time zone of the coaches: dates, 'today' and charts use it."
    )
    login_timeout_s: float = Field(default=5.0, gt=0, description="How long a login may wait for enrolment.")
    logo_timeout_s: float = Field(default=3.0, gt=0, description="How long the recruitment kit waits for a logo.")
    logo_max_bytes: int = Field(default=2_000_000, gt=0, description="Larger logos are left out of the kit.")
    live_ping_s: float = Field(default=15.0, gt=0, description="Keep-alive interval of the live dashboard stream.")
    alert_check_interval_s: float = Field(
        default=60.0, gt=0, description="How often coaching looks for 'no open for 3 days' alerts that started to hold."
    )
    cookie_secure: bool | None = Field(
        default=None, description="Secure flag of the login cookie; default: always in production, else over https."
    )
    licensor_secret: str = Field(
        default=f"{DEV_SECRET_PREFIX}licensor-secret",
        description="Bearer secret of the licensor: the outcome reports across organisations.",
    )
    research_export_key: str = Field(
        default=f"{DEV_SECRET_PREFIX}research-export-key",
        min_length=16,
        description="HMAC key of the researchers' export: one stable pseudonym per participant per key.",
    )
