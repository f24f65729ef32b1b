"""Tracking settings (MEER_* environment variables)."""

from pydantic import Field, field_validator

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings
from shared.tracking_tokens import parse_keys


class TrackingSettings(ServiceSettings):
    """Settings of the tracking service."""

    http_port: int = 8003
    database_url: str = "postgresql+asyncpg://meer@127.0.0.1:55432/meer_tracking"
    tracking_keys: str = Field(
        default=f"{DEV_SECRET_PREFIX}tracking-key",
        description=(
            "HMAC keys for tracking tokens, newest first: 'new,old@2026-12-31' means the old key "
            "still verifies until the end of 31 December 2026 (UTC). The mailer signs with the first."
        ),
    )
    fast_hit_s: float = Field(
        default=60.0,
        ge=0,
        description="A hit this many seconds after sending hints at a machine (privacy proxies fetch on delivery).",
    )
    instant_click_s: float = Field(
        default=10.0,
        ge=0,
        description="A link followed this soon after sending was checked by a scanner, not read by a person.",
    )
    burst_window_s: float = Field(
        default=10.0, gt=0, description="Hits on different links of one mail within this window form a burst."
    )
    burst_min_links: int = Field(
        default=2, ge=2, description="How many different links of one mail in one window make a scanner's burst."
    )
    pixel_batch_max: int = Field(
        default=500, ge=1, description="Most pixel hits appended in one commit (hits that arrive together)."
    )
    pixel_writers: int = Field(
        default=1,
        ge=1,
        le=8,
        description=(
            "Pixel writers, each with its own database connection. One makes the largest groups: hits that come"
            " during a commit go together in the next (more writers overlap commits that wait on a slow disk)."
        ),
    )
    pixel_journal_dir: str = Field(
        default="var/pixel-journal",
        description=(
            "Folder of the local journal: answered pixel hits PostgreSQL did not take are fsync'd here and "
            "written to it when it is back (also after a crash, at the next start). Keep it on a durable disk."
        ),
    )
    hit_batch_max: int = Field(
        default=500, ge=1, description="Most pixel hits the hit processor judges per transaction."
    )
    hit_poll_interval_s: float = Field(
        default=1.0, gt=0, description="The hit processor looks for hits this often when no commit notified it."
    )
    hit_batch_interval_s: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "After a batch that was not full, the hit processor starts the next no sooner than this after the last"
            " one began, so the hits of many small commits are judged together (0: at once)."
        ),
    )
    hit_metrics_port: int = Field(
        default=8009,
        ge=1,
        le=65535,
        description="The hit processor serves /metrics (and /healthz) here, on MEER_HTTP_HOST; it has no API.",
    )
    held_open_release_s: float = Field(
        default=2.0, gt=0, description="How often opens held for a mail not yet seen sent are checked again."
    )
    held_open_retention_hours: float = Field(
        default=72.0, gt=0, description="Held opens whose mail is never seen sent are deleted after this long."
    )
    pixel_record_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A group of pixel hits PostgreSQL has not committed after this long goes to the journal.",
    )

    @field_validator("tracking_keys")
    @classmethod
    def _keys_parse(cls, value: str) -> str:
        parse_keys(value)  # a bad key list stops the service at start, not at the first hit
        return value
