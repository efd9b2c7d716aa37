"""Settings: one class read by the server and every CLI command.

Sources, strongest first: ``CITYPILOT_*`` environment variables, the TOML file
given with ``--config`` (or ``CITYPILOT_CONFIG``), then the defaults below, which
run the embedded store in ``./citypilot-data``.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_DATA_DIR = "citypilot-data"


class Settings(BaseSettings):
    """Everything CityPilot can be configured with."""

    model_config = SettingsConfigDict(env_prefix="CITYPILOT_", extra="forbid")

    data_dir: Path = Field(Path(DEFAULT_DATA_DIR), description="Embedded store directory")
    store: Literal["sqlite", "postgres"] = Field("sqlite", description="State/history backend")
    postgres_dsn: str = Field(
        "postgresql://postgres@127.0.0.1:5432/citypilot", description="PostgreSQL connection"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    mqtt_url: str | None = Field(None, description="e.g. mqtt://127.0.0.1:1883; None: no MQTT")
    mqtt_topic_root: str = "citypilot"
    mqtt_dynsec_url: str | None = Field(
        None,
        description="mqtt://admin:password@host:port of Mosquitto's dynamic security "
        "plugin: each device key becomes an MQTT client bound like its HTTP key; None: not",
    )
    jwt_secret: str | None = Field(None, description="Token signing key; kept in data_dir if unset")
    token_ttl_s: int = Field(15 * 60, ge=60, le=24 * 3600, description="Access token lifetime")
    refresh_ttl_s: int = Field(
        12 * 3600, ge=300, le=90 * 86400, description="Refresh token lifetime (a session)"
    )
    # -- sign-in with an identity provider (OpenID Connect; docs/security.md) --
    oidc_issuer: str | None = Field(None, description="The provider's issuer (iss); None: off")
    oidc_audience: str | None = Field(None, description="The audience (aud) tokens must name")
    oidc_jwks_url: str | None = Field(
        None, description="The provider's JWKS (default: from its openid-configuration)"
    )
    oidc_groups_claim: str = Field("groups", description="The claim listing the groups")
    oidc_username_claim: str = Field("preferred_username", description="The claim naming who")
    oidc_group_grants: dict[str, list[dict[str, str]]] = Field(
        default_factory=dict, description="Each provider group's CityPilot grants"
    )
    oidc_jwks_cache_s: float = Field(300.0, ge=10, description="The JWKS is reused this long")
    account_check_s: float = Field(
        2.0, ge=0, le=60, description="An account's state is reused this long per API process"
    )
    # -- logins (docs/security.md, "Logins") --
    login_free_failures_per_account: int = Field(
        5, ge=1, description="Failed logins of one account before back-off starts"
    )
    login_free_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one address before back-off starts"
    )
    login_max_backoff_s: float = Field(
        300.0, ge=1, le=86_400, description="Longest wait imposed after failed logins"
    )
    password_hash_slots: int = Field(
        max(1, (os.cpu_count() or 2) - 1),
        ge=1,
        description="Password hashes computed at once (off the event loop)",
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(50_000, ge=1)
    types_file: Path | None = Field(None, description="TOML/JSON file of extra entity types")
    strict_types: bool = Field(
        False, description="Refuse NGSI-LD entities of unregistered types (else open-world)"
    )
    open311_services: Path | None = Field(
        None, description="TOML catalogue of the 311 desk's services (default: the shipped one)"
    )
    stream_interval_ms: int = Field(250, ge=20, le=10_000)
    # -- bounds on untrusted input (docs/configuration.md, "Limits") --
    max_json_depth: int = Field(
        64, ge=4, le=200, description="Deepest nesting of a JSON document (HTTP, MQTT)"
    )
    max_inflight_requests: int = Field(
        16, ge=1, description="Ingest and batch write requests in flight per process (503 past)"
    )
    max_inflight_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Their body bytes in flight per process"
    )
    overload_retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After of a 503")
    notify_retry_min_s: float = Field(
        1.0, gt=0, le=3600, description="First wait before a failed notification is sent again"
    )
    notify_retry_max_s: float = Field(
        300.0, gt=0, le=86_400, description="Longest wait between two tries of a notification"
    )
    log_level: str = "info"
    # -- retention (see docs/privacy.md and docs/security.md) --
    audit_retention_days: int = Field(
        3650, ge=365, description="Audit log entries kept this long (at least a year)"
    )
    personal_retention_days: int = Field(
        30, ge=0, description="Personal identifiers kept this long in state and history"
    )
    personal_retention: dict[str, int] = Field(
        default_factory=dict, description="Per type: days its personal identifiers are kept"
    )
    retention_interval_s: int = Field(3600, ge=60, description="How often expired data is purged")
    # -- device commands (docs/commands.md) --
    command_retry_s: float = Field(10.0, gt=0, description="Resend a command unanswered this long")
    command_max_attempts: int = Field(3, ge=1, le=20, description="Sends before a command fails")
    # -- rules (docs/rules.md) --
    rules_dir: Path | None = Field(
        None, description="Directory of rule YAML files read at start (added when new)"
    )
    rule_pack: bool = Field(False, description="Load the built-in rule pack at start")
    # -- incident response (see docs/incidents.md) --
    priority_lead_s: float = Field(
        30.0, ge=0, le=600, description="Signal priority requested this long before the ETA"
    )

    # -- several processes: NATS JetStream bus and workers (docs/deploy.md) -------
    bus: Literal["memory", "nats"] = Field("memory", description="Event bus: in-process or NATS")
    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server(s), comma-separated")
    nats_prefix: str = Field("citypilot", description="Subject prefix and stream name prefix")
    nats_replicas: int = Field(1, ge=1, le=5, description="JetStream replicas of each stream")
    nats_ack_wait_s: float = Field(30.0, gt=0, description="Redelivery delay of unacked events")
    max_stream_lag: int = Field(
        2000, ge=1, description="Observation messages waiting for writers before ingest pauses"
    )
    max_publish_in_flight: int = Field(
        256, ge=1, description="JetStream publishes awaiting PubAck before ingest pauses"
    )
    mqtt_share_group: str = Field("citypilot", description="MQTT shared subscription group")
    mqtt_max_in_flight: int = Field(
        20_000, ge=1, description="MQTT messages received and not yet acknowledged, at most"
    )
    engine: Literal["embedded", "worker"] = Field(
        "embedded",
        description="Where commands, alarms, rules, modes and the subscription notifier run: "
        "in each API process, or in `citypilot worker engine` (one active at a time, "
        "through a lease; bus = nats)",
    )
    worker_id: str | None = Field(None, description="Stable name of this worker (MQTT session)")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Workers' /metrics port")
    writer_batch: int = Field(64, ge=1, description="Observation messages per writer batch")
    http_metrics: bool = Field(True, description="Time every HTTP request for /metrics")
    retention_days: dict[str, int] = Field(
        default_factory=dict, description='Raw history days per type ("*": the others)'
    )
    retention_interval_s: int = Field(3600, ge=60, description="Pause between retention runs")
    # -- JSON-LD @contexts of the NGSI-LD API (api/ldcontexts.py) --
    jsonld_remote_contexts: bool = Field(
        False, description="Fetch a remote @context a request names (else 503 for an unknown one)"
    )
    jsonld_fetch_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Longest wait for a remote @context"
    )
    jsonld_max_context_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest remote @context document"
    )
    # -- anonymous reads (api/public.py) --
    public_read_types: list[str] = Field(
        default_factory=list, description="Entity types anyone may read without a credential"
    )
    # -- NGSI-LD tenants (api/tenants.py) --
    max_tenants: int = Field(
        100, ge=0, description="NGSI-LD tenants that may be created at most (403 past)"
    )
    tenants_allowed: list[str] | None = Field(
        None, description="The only NGSI-LD tenant names that may be created (default: any)"
    )

    @field_validator("tenants_allowed")
    @classmethod
    def _check_tenant_names(cls, value: list[str] | None) -> list[str] | None:
        from citypilot.model.errors import BadRequestData
        from citypilot.store.tenants import check_tenant_name

        for name in value or ():
            try:
                check_tenant_name(name)
            except BadRequestData as exc:
                raise ValueError(f"tenants_allowed: {exc.detail}") from None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_weak_secret(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 32 or value in {"secret", "changeme"}):
            raise ValueError("jwt_secret must be at least 32 characters and not a default")
        return value

    @property
    def data_path(self) -> Path:
        """The data directory, absolute."""
        return self.data_dir.expanduser().resolve()

    def signing_key(self) -> str:
        """The token signing key: configured, or generated once and kept in the data dir."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_path / "jwt-secret"
        if not path.exists():
            from citypilot.store.files import private_dir

            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over init values (the TOML file) over defaults."""
        return (env_settings, init_settings)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (``--config`` or ``CITYPILOT_CONFIG``), then the environment."""
    path = config_file or os.environ.get("CITYPILOT_CONFIG")
    values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
        values = values.get("citypilot", values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
