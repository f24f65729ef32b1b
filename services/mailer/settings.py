"""Mailer settings (MEER_* environment variables)."""

from datetime import time
from pathlib import Path

from pydantic import Field, model_validator

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings


class MailerSettings(ServiceSettings):
    """Settings of the mailer service."""

    http_port: int = 8002
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_mailer"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 30.0
    sending_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="A sender's lease on a mail it is sending; an interrupted send is retried when it ends."
        " Longer than a send can take (connect and the SMTP commands, each up to smtp_timeout_s).",
    )
    mail_from_address: str = Field(default="training@meercontact.local", description="Envelope and From address.")
    message_id_domain: str = "meercontact.local"
    tracking_base_url: str = Field(default="http://127.0.0.1:8003", description="Public URL of the tracking service.")
    tracking_keys: str = Field(
        default=f"{DEV_SECRET_PREFIX}tracking-key",
        description="HMAC keys for tracking tokens, newest first (the newest signs); same value as tracking's.",
    )
    mailer_link_keys: str = Field(
        default=f"{DEV_SECRET_PREFIX}mailer-link-key",
        description="Keys that open the links enrolment sealed for the mailer, newest first; same as enrolment's.",
    )
    pack_dir: Path | None = Field(default=None, description="Programme pack folder; default: the built-in v1 pack.")
    schedule_interval_s: float = Field(default=5.0, gt=0, description="How often due mails are looked for.")
    sender_concurrency: int = Field(default=4, ge=1, le=64, description="Mails in flight at once (SMTP connections).")
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="Mails per second, all organisations.")
    rate_limit_per_org_per_second: float = Field(default=20.0, gt=0, description="Mails per second per organisation.")
    dkim_domain: str | None = Field(
        default=None, description="DKIM d= domain; signing is on when this and the key are set."
    )
    dkim_selector: str = "meer"
    dkim_private_key_path: Path | None = None
    digest_local_time: time = Field(default=time(7, 30), description="When coaches get 'wie bel ik vandaag'.")
    digest_timezone: str = "Europe/Amsterdam"
    coaching_base_url: str = Field(
        default="http://127.0.0.1:8004", description="Coaching's address: the digest links to participant pages."
    )
    licensor_secret: str = Field(
        default=f"{DEV_SECRET_PREFIX}licensor-secret", description="Bearer secret of the licensor."
    )
    staff_token_public_key_path: Path | None = Field(default=None, description="Verifies staff tokens (preview).")

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> "MailerSettings":
        # A lease that ends while its send is still under way lets a second sender repeat the mail.
        if self.sending_lease_s < 2 * self.smtp_timeout_s:
            raise ValueError("MEER_SENDING_LEASE_S must be at least twice MEER_SMTP_TIMEOUT_S")
        return self
