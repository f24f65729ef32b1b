"""Settings every service shares, read once from MEER_* environment variables.

Each service subclasses ServiceSettings with its own fields; the local stack and the
container files set the values per process (see the README's table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-only-"  # noqa: S105 - marks defaults that production refuses


class KafkaClientSettings(BaseSettings):
    """Where Kafka is and how to log in: the services and the operators' tools (dead letters)."""

    model_config = SettingsConfigDict(env_prefix="MEER_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to reach Kafka: PLAINTEXT only on loopback (the local stack)."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = Field(default=None, description="The service's Kafka user (SASL_*).")
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA certificate(s) that signed the brokers' (SSL, SASL_SSL); default: the system's."
    )

    @model_validator(mode="after")
    def _kafka_login_with_sasl(self) -> KafkaClientSettings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("MEER_KAFKA_SASL_USERNAME and MEER_KAFKA_SASL_PASSWORD are needed with SASL")
        return self


class ServiceSettings(KafkaClientSettings):
    """Database, Kafka, HTTP and start-up settings of one service process."""

    model_config = SettingsConfigDict(env_prefix="MEER_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default="postgresql+asyncpg://meer@127.0.0.1:55432/meer",
        description="SQLAlchemy URL of this service's own database (asyncpg driver).",
    )
    database_pool_size: int = 10
    kafka_partitions: int = Field(default=3, ge=1, description="Partitions for topics this service creates.")
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Copies of each partition for topics this service creates (3 on a cluster)."
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    startup_timeout_s: float = Field(
        default=60.0, gt=0, description="How long to wait for PostgreSQL and Kafka at start."
    )
    consumer_group: str | None = Field(
        default=None, description="Kafka consumer group; default: the service's name. Tests use their own."
    )
    kafka_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts: everything, or only new events."
    )
    handler_max_attempts: int = Field(
        default=5, ge=1, description="Tries per event before it goes to the dead-letter topic."
    )
    consumer_units_in_flight: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Units of work a large consumer batch is split into and applied side by side (by key).",
    )
    outbox_poll_interval_s: float = 0.25
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto are believed (comma-separated IPs or networks, or *).",
    )
    api_docs: bool | None = Field(
        default=None, description="Serve /docs and /openapi.json; default: on, except in production."
    )
    metrics_token: str | None = Field(
        default=None, description="Bearer token /metrics asks for; required in production, open when unset."
    )

    @property
    def api_docs_enabled(self) -> bool:
        """Whether the API docs and the OpenAPI document are served."""
        return self.api_docs if self.api_docs is not None else self.env != "production"

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> ServiceSettings:
        if self.env == "production":
            for name, value in self:
                if isinstance(value, str) and value.startswith(DEV_SECRET_PREFIX):
                    raise ValueError(f"MEER_{name.upper()} still has its development default; set a real secret")
            if not self.metrics_token:
                raise ValueError("MEER_METRICS_TOKEN must be set in production: /metrics is not public there")
        return self


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def read_settings(kind: type[SettingsT]) -> SettingsT:
    """A process's settings from its environment. A wrong value stops the process with one line
    per problem that names the variable, never with a traceback, and never with the value
    itself (it may be a password)."""
    try:
        return kind()
    except ValidationError as error:
        prefix = str(kind.model_config.get("env_prefix", ""))
        problems = [
            f"{prefix}{str(problem['loc'][0]).upper()}: {problem['msg']}"
            if problem["loc"]
            else f"settings: {problem['msg']}"
            for problem in error.errors(include_input=False, include_url=False)
        ]
        heading = "invalid settings (see the README's table of environment variables):"
        raise SystemExit("\n  ".join([heading, *problems])) from None
