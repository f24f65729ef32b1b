"""Enrolment settings (MEER_* environment variables)."""

from pathlib import Path

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
    mailer_link_keys: str = Field(
        default=f"{DEV_SECRET_PREFIX}mailer-link-key",
        description="Keys that seal set-password and confirm links for the mailer, newest first; same as the mailer's.",
    )
    enrolment_base_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Public URL of this service: logo URLs, set-password and confirmation links start with it.",
    )
    staff_token_private_key_path: Path | None = Field(
        default=None, description="PEM file of the Ed25519 key that signs staff tokens (enrolment only)."
    )
    staff_token_public_key_path: Path | None = Field(
        default=None, description="PEM file of the matching public key, to check staff tokens."
    )
    staff_token_ttl_s: int = Field(default=900, ge=60, le=86_400, description="Lifetime of a staff access token.")
    invitation_ttl_hours: int = Field(default=72, ge=1, description="How long a set-password link works.")
    confirmation_ttl_hours: int = Field(default=72, ge=1, description="How long a sign-up confirmation link works.")
    unconfirmed_retention_days: int = Field(
        default=7, ge=1, description="Unconfirmed sign-ups are deleted this long after their link expired."
    )
    login_failures_per_source: int = Field(
        default=10, ge=1, description="Failed logins from one address in an hour before delays start."
    )
    login_failures_per_subnet: int = Field(
        default=30, ge=1, description="Failed logins from one /24 (IPv4) or /64 (IPv6) in an hour before delays start."
    )
    login_failures_before_lock: int = Field(
        default=5,
        ge=1,
        description="Failed logins of one account from one address (or one known browser) before delays.",
    )
    login_failures_per_account: int = Field(
        default=50, ge=1, description="Failed logins of one account from unknown browsers before delays start."
    )
    login_lock_minutes: int = Field(
        default=15, ge=1, description="Longest delay; delays start at a second and double with each failure."
    )
    device_cookie_days: int = Field(
        default=180, ge=1, description="How long a browser that logged in is exempt from others' failures."
    )
    logo_max_bytes: int = Field(default=1_000_000, ge=1_000, description="Largest logo file accepted.")
    logo_max_side_px: int = Field(default=2_000, ge=16, description="Largest logo width or height accepted.")
    import_max_bytes: int = Field(default=10_000_000, ge=1_000, description="Largest CSV file accepted by the API.")
    signups_per_source_per_hour: int = Field(
        default=10, ge=1, description="Public sign-ups per client (IPv4 address or IPv6 /64) per hour."
    )
    signups_per_mailbox_per_day: int = Field(
        default=3, ge=1, description="Confirmation mails per mailbox (lower case, no +tag) per day, all organisations."
    )
    consent_text_version: str = Field(
        default="2026-1", max_length=20, description="Version of the consent text on the sign-up page."
    )
    export_timeout_minutes: int = Field(
        default=30, ge=1, description="A subject-access export whose parts are not all in by then shows them missing."
    )
    export_retention_days: int = Field(
        default=7, ge=1, description="A subject-access export (its key and bundle) is deleted this long after it."
    )
