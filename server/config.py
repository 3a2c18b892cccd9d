"""Process configuration: environment > config/app.yaml > defaults (DESIGN.md §4.4).

One settings class for the whole server; the environment variable names are the
contract (PORT, GRPC_PORT, ORCHESTRATOR_DATABASE_URL, ...), so each field names its
variable explicitly instead of relying on a prefix.
"""

from __future__ import annotations

import os
import re
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/app.yaml")
CONFIG_FILE_VARIABLE = "ORCHESTRATOR_CONFIG_FILE"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting the server cannot start with, in one line naming its environment
    variable ("PORT: Input should be a valid integer ..., got 'abc'"): what the command
    line prints before exiting 2, instead of a traceback."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")


def _whole_number(value: Any) -> Any:
    """An integer setting as written: an integer, or its decimal digits (an optional
    sign, `_` between digits as in Python and YAML 1.1). Refused here, before
    pydantic's lax conversion would take them: `true`/`false` (a YAML boolean is an
    int in Python, so `PORT: true` was port 1), a float (`80.0` in YAML), text with a
    fraction or exponent (`ORCHESTRATOR_GC_GEN0_THRESHOLD=1.0` was 1), and any other
    type a program may pass (`Decimal("8080.0")`, `b"8080"`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE_NUMBER.fullmatch(text):
            raise ValueError("must be a whole number")
        return text
    raise ValueError("must be a whole number")


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class Settings(BaseSettings):
    """Everything the server reads at start-up."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", validation_alias=_env("HOST", "host"))
    port: WholeNumber = Field(5099, ge=0, le=65535, validation_alias=_env("PORT", "port"))
    grpc_port: WholeNumber = Field(
        50051, ge=0, le=65535, validation_alias=_env("GRPC_PORT", "grpc_port")
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/orchestrator.db",
        validation_alias=_env("ORCHESTRATOR_DATABASE_URL", "database_url"),
    )
    # Redis for the state replicas share per request (the DPoP replay cache, the
    # failed-secret throttle); unset, that state lives in the database.
    redis_host: str | None = Field(None, validation_alias=_env("REDIS_HOST", "redis_host"))
    redis_port: WholeNumber = Field(
        6379, ge=1, le=65535, validation_alias=_env("REDIS_PORT", "redis_port")
    )
    # Peer orchestrators (issue 12): comma-separated base URLs (a YAML list also works),
    # each may carry `client_id:client_secret@` (percent-encoded) of a client the peer
    # issued. Secret-bearing: never shown, logged or returned (server/mesh/peers.py
    # `redact_peer_urls` shows the URLs without credentials).
    peer_urls_secret: SecretStr = Field(
        SecretStr(""), validation_alias=_env("ORCHESTRATOR_PEERS", "peers", "peer_urls_secret")
    )
    # Mesh timeouts (seconds), concurrency and the OpenAPI size cap (bytes): a poll
    # fetches at most REGISTRY_FETCH_CONCURRENCY documents at once, each within
    # REGISTRY_FETCH_TIMEOUT_SECONDS; a sync talks to PEER_SYNC_CONCURRENCY peers at
    # once, each exchange within PEER_TIMEOUT_SECONDS.
    registry_fetch_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("REGISTRY_FETCH_TIMEOUT_SECONDS")
    )
    registry_fetch_concurrency: WholeNumber = Field(
        8, ge=1, le=256, validation_alias=_env("REGISTRY_FETCH_CONCURRENCY")
    )
    registry_openapi_max_bytes: WholeNumber = Field(
        10 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        validation_alias=_env("REGISTRY_OPENAPI_MAX_BYTES"),
    )
    peer_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("PEER_TIMEOUT_SECONDS")
    )
    peer_sync_concurrency: WholeNumber = Field(
        8, ge=1, le=256, validation_alias=_env("PEER_SYNC_CONCURRENCY")
    )
    reporting_url: str | None = Field(None, validation_alias=_env("REPORTING_URL", "reporting_url"))
    doc_store_url: str | None = Field(None, validation_alias=_env("DOC_STORE_URL", "doc_store_url"))
    notification_url: str | None = Field(
        None, validation_alias=_env("NOTIFICATION_URL", "notification_url")
    )
    # --- issue 13 block: upstreams (server/upstreams/). Base URLs; unset = not configured
    # (their proxy methods answer 503 naming the setting; notification jobs wait). Per
    # attempt: connect and read timeouts (seconds); idempotent calls are retried
    # UPSTREAM_RETRIES times with exponential backoff and jitter; a breaker per upstream
    # opens after UPSTREAM_BREAKER_FAILURES consecutive failures for
    # UPSTREAM_BREAKER_RESET_SECONDS; an answer over UPSTREAM_MAX_BODY_BYTES is a 502.
    secure_analyzer_url: str | None = Field(
        None, validation_alias=_env("SECURE_ANALYZER_URL", "secure_analyzer_url")
    )
    upstream_connect_timeout_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("UPSTREAM_CONNECT_TIMEOUT_SECONDS")
    )
    upstream_read_timeout_seconds: float = Field(
        5.0, gt=0, le=300, validation_alias=_env("UPSTREAM_READ_TIMEOUT_SECONDS")
    )
    upstream_retries: WholeNumber = Field(2, ge=0, le=10, validation_alias=_env("UPSTREAM_RETRIES"))
    upstream_breaker_failures: WholeNumber = Field(
        5, ge=1, le=1000, validation_alias=_env("UPSTREAM_BREAKER_FAILURES")
    )
    upstream_breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("UPSTREAM_BREAKER_RESET_SECONDS")
    )
    upstream_max_body_bytes: WholeNumber = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        validation_alias=_env("UPSTREAM_MAX_BODY_BYTES"),
    )
    # How often (seconds) the notification delivery loop looks for notify.consolidation
    # jobs while none are waiting, and how many it delivers at once per tenant.
    notify_poll_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("NOTIFY_POLL_SECONDS")
    )
    notify_concurrency: WholeNumber = Field(
        8, ge=1, le=256, validation_alias=_env("NOTIFY_CONCURRENCY")
    )
    log_collector_url: str | None = Field(
        None, validation_alias=_env("LOG_COLLECTOR_URL", "log_collector_url")
    )
    # Log shipping to LOG_COLLECTOR_URL (issue 13, server/observability/log_shipping.py):
    # lines waiting at most (more are dropped and counted), lines per POST, seconds
    # between drains, seconds a POST (and the flush at shutdown) may take.
    log_shipping_queue_max: WholeNumber = Field(
        10_000, ge=1, le=1_000_000, validation_alias=_env("LOG_SHIPPING_QUEUE_MAX")
    )
    log_shipping_batch_max: WholeNumber = Field(
        500, ge=1, le=10_000, validation_alias=_env("LOG_SHIPPING_BATCH_MAX")
    )
    log_shipping_interval_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("LOG_SHIPPING_INTERVAL_SECONDS")
    )
    log_shipping_timeout_seconds: float = Field(
        5.0, gt=0, le=60, validation_alias=_env("LOG_SHIPPING_TIMEOUT_SECONDS")
    )
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL", "log_level"))
    # Tracing (issue 13, server/observability/tracing.py): OpenTelemetry spans kept in a
    # ring of the last N traces (each at most M spans); off = no spans at all. OTLP
    # export follows the SDK's own OTEL_EXPORTER_OTLP_* variables.
    tracing_enabled: bool = Field(
        True, validation_alias=_env("ORCHESTRATOR_TRACING_ENABLED", "tracing_enabled")
    )
    tracing_max_traces: WholeNumber = Field(
        1000, ge=1, le=100_000, validation_alias=_env("ORCHESTRATOR_TRACING_MAX_TRACES")
    )
    tracing_max_spans_per_trace: WholeNumber = Field(
        1000, ge=1, le=100_000, validation_alias=_env("ORCHESTRATOR_TRACING_MAX_SPANS_PER_TRACE")
    )
    # The cyclic garbage collector of `serve` and `gateway` (server/garbage_collection.py):
    # the youngest generation's threshold, set after start-up freezes what it built.
    gc_gen0_threshold: WholeNumber = Field(
        10_000, ge=1, le=10_000_000, validation_alias=_env("ORCHESTRATOR_GC_GEN0_THRESHOLD")
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds")
    )
    # Secret for continuation-token signatures. Empty means "use the one stored in
    # the database", which every replica sharing that database agrees on.
    page_token_secret: SecretStr = Field(
        SecretStr(""), validation_alias=_env("ORCHESTRATOR_PAGE_TOKEN_SECRET", "page_token_secret")
    )
    max_request_body_bytes: WholeNumber = Field(
        4 * 1024 * 1024, ge=1, validation_alias=_env("MAX_REQUEST_BODY_BYTES")
    )
    # The URL clients use to reach the HTTP API (behind TLS and proxies): the token
    # issuer, the audience, the base of the discovery documents and DPoP's `htu`.
    # Empty: the http URL of the address actually served, known once the HTTP socket is
    # bound (so `PORT=0` works); `Application.settings` then holds that URL.
    public_url: str = Field("", validation_alias=_env("ORCHESTRATOR_PUBLIC_URL", "public_url"))
    # Take DPoP's `htu` scheme and host from x-forwarded-proto/-host metadata; only
    # when the hop that sets them overwrites whatever a client sent.
    trust_forwarded_headers: bool = Field(
        False,
        validation_alias=_env("ORCHESTRATOR_TRUST_FORWARDED_HEADERS", "trust_forwarded_headers"),
    )

    # Quota policy maxima (DESIGN §4.2): a quota asking for more is INVALID_ARGUMENT
    # naming the field. Counts are int32 in the API, hence the upper bounds.
    quota_max_active_max: WholeNumber = Field(
        10_000, ge=0, le=2**31 - 1, validation_alias=_env("QUOTA_MAX_ACTIVE_MAX")
    )
    quota_max_per_hour_max: WholeNumber = Field(
        1_000_000, ge=0, le=2**31 - 1, validation_alias=_env("QUOTA_MAX_PER_HOUR_MAX")
    )
    quota_burst_max: WholeNumber = Field(
        10_000, ge=1, le=2**31 - 1, validation_alias=_env("QUOTA_BURST_MAX")
    )
    # Tokens per second.
    quota_refill_per_second_max: float = Field(
        10_000.0, ge=0, validation_alias=_env("QUOTA_REFILL_PER_SECOND_MAX")
    )

    # --- issue 10 block: schedules and backfills (server/domain/schedules.py, backfills.py)
    # The scheduler loop looks for due schedules this often (seconds); a tick handled
    # more than the misfire grace (seconds) after it was due is missed (misfire policy).
    scheduler_interval_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("SCHEDULER_INTERVAL_SECONDS")
    )
    schedule_misfire_grace_seconds: float = Field(
        60.0, ge=0, validation_alias=_env("SCHEDULE_MISFIRE_GRACE_SECONDS")
    )
    # A backfill's window is at most this long (seconds, 31 days); a window of a source
    # that is not a scheduler is covered by slices of this size (seconds, aligned from
    # the Unix epoch); one backfill enqueues at most this many jobs; a request whose
    # window overlaps a backfill of its scope finished less than this long ago
    # (seconds) is a duplicate, as it is while that backfill is active.
    backfill_max_window_seconds: float = Field(
        31 * 86_400.0, gt=0, validation_alias=_env("BACKFILL_MAX_WINDOW_SECONDS")
    )
    backfill_slice_seconds: float = Field(
        3600.0, ge=1, validation_alias=_env("BACKFILL_SLICE_SECONDS")
    )
    backfill_max_jobs: WholeNumber = Field(
        1000, ge=1, le=10_000, validation_alias=_env("BACKFILL_MAX_JOBS")
    )
    backfill_suppression_seconds: float = Field(
        3600.0, ge=0, validation_alias=_env("BACKFILL_SUPPRESSION_SECONDS")
    )

    # Jobs (issue 9): a payload larger than this, serialized as compact JSON, is
    # INVALID_ARGUMENT naming `payload` (job.proto: 64 KiB by default).
    job_payload_max_bytes: WholeNumber = Field(
        64 * 1024, ge=1, le=16 * 1024 * 1024, validation_alias=_env("JOB_PAYLOAD_MAX_BYTES")
    )
    # Finished jobs (succeeded, canceled, dead-lettered) and their events are deleted
    # this long after they finished; 7 days by default.
    job_retention_seconds: float = Field(
        7 * 86_400.0, gt=0, validation_alias=_env("JOB_RETENTION_SECONDS")
    )
    # Pruning deletes at most this many jobs per statement, pausing between batches
    # (seconds), and looks for more work every interval (seconds).
    job_prune_batch_size: WholeNumber = Field(
        1000, ge=1, le=10_000, validation_alias=_env("JOB_PRUNE_BATCH_SIZE")
    )
    job_prune_pause_seconds: float = Field(
        0.05, ge=0, validation_alias=_env("JOB_PRUNE_PAUSE_SECONDS")
    )
    job_prune_interval_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("JOB_PRUNE_INTERVAL_SECONDS")
    )
    # Dead letters (issue 10): the most pending entries one replay-pending call
    # examines; a larger `limit` is coerced to it, a larger queue takes several calls.
    deadletter_replay_pending_max: WholeNumber = Field(
        1000, ge=1, le=10_000, validation_alias=_env("DEADLETTER_REPLAY_PENDING_MAX")
    )
    # Orchestra (issue 11): the most an instance's variables may take as compact JSON
    # (a start, signal or set over it is INVALID_ARGUMENT); how often (seconds) the
    # engine looks for due timers and ended service-task jobs when no hint wakes it.
    orchestra_variables_max_bytes: WholeNumber = Field(
        256 * 1024,
        ge=1,
        le=16 * 1024 * 1024,
        validation_alias=_env("ORCHESTRA_VARIABLES_MAX_BYTES"),
    )
    orchestra_poll_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("ORCHESTRA_POLL_SECONDS")
    )
    # The lease reaper looks for expired leases this often (seconds); an expired
    # lease is returned to the queue within this interval of its expiry.
    lease_reaper_interval_seconds: float = Field(
        5.0, gt=0, le=15, validation_alias=_env("LEASE_REAPER_INTERVAL_SECONDS")
    )
    # Pack runs (issue 10, domain/pack_runs.py): how often (seconds) each replica looks
    # for runs whose jobs ended; a job ending in this process advances its run at once.
    pack_run_advance_interval_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("PACK_RUN_ADVANCE_INTERVAL_SECONDS")
    )
    # Events publication (issue 12, storage/event_publisher.py): how often (seconds)
    # the watchers' fan-out and the Redis outbox read new events; how long (seconds) an
    # id missing below committed ones is waited for (a transaction committing late)
    # before it counts as rolled back; the Redis stream (REDIS_HOST set) and its
    # approximate length cap; the WatchEvents heartbeat (seconds).
    events_poll_interval_seconds: float = Field(
        0.2, gt=0, le=10, validation_alias=_env("EVENTS_POLL_INTERVAL_SECONDS")
    )
    events_gap_grace_seconds: float = Field(
        10.0, gt=0, le=3600, validation_alias=_env("EVENTS_GAP_GRACE_SECONDS")
    )
    events_stream: str = Field(
        "orchestrator:events", min_length=1, max_length=200, validation_alias=_env("EVENTS_STREAM")
    )
    events_stream_maxlen: WholeNumber = Field(
        1_000_000, ge=1, validation_alias=_env("EVENTS_STREAM_MAXLEN")
    )
    events_watch_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, validation_alias=_env("EVENTS_WATCH_HEARTBEAT_SECONDS")
    )
    # /health/system gives each dependency this long (seconds) to answer; all are
    # checked at once, so the answer takes about this long at most.
    health_check_timeout_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("HEALTH_CHECK_TIMEOUT_SECONDS")
    )

    @field_validator("peer_urls_secret", mode="before")
    @classmethod
    def _peer_list(cls, value: Any) -> Any:
        """A YAML list of peer URLs is the comma-separated string."""
        if isinstance(value, list):
            return ",".join(str(item) for item in value)
        return value

    @field_validator("peer_urls_secret")
    @classmethod
    def _peer_urls(cls, value: SecretStr) -> SecretStr:
        """Each peer an http(s) base URL (server/mesh/peers.py); the error never quotes
        the value, which may hold credentials."""
        from server.mesh.peers import parse_peers

        parse_peers(value.get_secret_value())
        return value

    @field_validator("page_token_secret")
    @classmethod
    def _long_enough_secret(cls, value: SecretStr) -> SecretStr:
        """Empty (the database's own secret) or at least 16 bytes: a shorter HMAC key
        would make continuation tokens guessable (RFC 2104 §3: not shorter than L/2)."""
        length = len(value.get_secret_value().encode())
        if 0 < length < 16:
            raise ValueError(f"must be at least 16 bytes or empty, not {length} bytes")
        return value

    @field_validator("log_collector_url")
    @classmethod
    def _collector_url(cls, value: str | None) -> str | None:
        """Unset, or an absolute http(s) URL the log lines are POSTed to (its password
        is redacted wherever the value is shown)."""
        if not value:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """One of Python's logging level names, any case (logging §Logging Levels)."""
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        """A SQLAlchemy URL whose dialect and driver are installed (SQLAlchemy
        "Engine Configuration"): a bogus scheme fails here, not at the first query."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ValueError(
                "must be a SQLAlchemy URL such as postgresql+asyncpg://user:password@host/db "
                "or sqlite+aiosqlite:///path"
            ) from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get(CONFIG_FILE_VARIABLE, DEFAULT_CONFIG_FILE))
        yaml_source = _OrchestratorSection(settings_cls, yaml_file=config_file)
        return (init_settings, env_settings, yaml_source)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets (and URL passwords) hidden."""
        values = self.model_dump()
        values["page_token_secret"] = "**redacted**" if self.page_token_secret else ""
        values["database_url"] = _redact_url(self.database_url)
        if self.log_collector_url:
            values["log_collector_url"] = _redact_url(self.log_collector_url)
        from server.mesh.peers import redact_peer_urls

        values["peer_urls_secret"] = redact_peer_urls(self.peer_urls_secret.get_secret_value())
        return values


_YAML_INT: Final = "tag:yaml.org,2002:int"
_YAML_FLOAT: Final = "tag:yaml.org,2002:float"


class _SettingsYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with decimal numbers only. YAML 1.1, which PyYAML
    implements, reads `017` as octal 15, `0x1F` as 31, `0b101` as 5, `1:30` as 90 and
    `1:30.5` as 90.5 (base 60), while the same text in an environment variable is 17
    or refused: one setting, two values. Here a plain scalar is an integer only when it
    is decimal digits (a sign, `_` between digits), read in base 10, and a float only
    in decimal notation; the other forms stay text, which a number setting refuses
    ("must be a whole number")."""


_SettingsYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_YAML_INT, _YAML_FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SettingsYamlLoader.add_implicit_resolver(
    _YAML_INT, re.compile(r"^[-+]?[0-9]+(?:_[0-9]+)*$"), list("-+0123456789")
)
_SettingsYamlLoader.add_implicit_resolver(
    _YAML_FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _decimal_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = str(loader.construct_scalar(node))
    try:
        return int(text.replace("_", ""), 10)
    except ValueError:  # `!!int 0x1F` written out: text, refused by the setting
        return text


_SettingsYamlLoader.add_constructor(_YAML_INT, _decimal_int)


class _OrchestratorSection(YamlConfigSettingsSource):
    """Reads config/app.yaml: top-level keys, overlaid by its `orchestrator:` section;
    integers as YAML 1.2 reads them (`_SettingsYamlLoader`)."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        """The file's settings. Raises ConfigError for a file that is not UTF-8 YAML,
        or whose top level or `orchestrator:` section is not a mapping."""
        encoding = self.yaml_file_encoding or "utf-8"
        try:
            with file_path.open(encoding=encoding) as yaml_file:
                data = yaml.load(yaml_file, Loader=_SettingsYamlLoader)
        except UnicodeDecodeError:
            raise ConfigError(f"{file_path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"{file_path}: not valid YAML{where}: {problem}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file_path}: must be a mapping of settings")
        if "orchestrator" in data and not isinstance(data["orchestrator"], dict | None):
            raise ConfigError(f"{file_path}: its orchestrator section must be a mapping")
        return data

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        section = data.pop("orchestrator", None)
        if isinstance(section, dict):
            data.update(section)
        return data


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:**redacted**@{host}"


def config_file() -> Path | None:
    """The configuration file settings are read from: ORCHESTRATOR_CONFIG_FILE, else
    config/app.yaml; None when that is not a regular file (absent, or os.devnull)."""
    path = Path(os.environ.get(CONFIG_FILE_VARIABLE, DEFAULT_CONFIG_FILE))
    return path if path.is_file() else None


def value_sources(settings: Settings) -> dict[str, str]:
    """Where each field of `settings` came from, by field name, in precedence order:
    "override" (set by the program, e.g. `Settings(port=0)` or `model_copy`: its value
    differs from what the environment and file give), "env" (an environment variable
    of the field, any case, as pydantic-settings reads them), "file" (a key of the
    configuration file or its `orchestrator:` section), else "default". Reads the
    environment and the file now: call it when the settings are loaded."""
    try:
        baseline: Settings | None = Settings()
    except Exception:  # the environment or file changed since: judge by presence alone
        baseline = None
    environment = {name.lower() for name in os.environ}
    path = config_file()
    try:
        in_file = set(_OrchestratorSection(Settings, yaml_file=path)()) if path else set()
    except Exception:  # unreadable now: it was read when the settings were loaded
        in_file = set()
    sources: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = (
            [c for c in alias.choices if isinstance(c, str)]
            if isinstance(alias, AliasChoices)
            else []
        )
        names = {name, *choices}
        if baseline is not None and getattr(settings, name) != getattr(baseline, name):
            sources[name] = "override"
        elif any(candidate.lower() in environment for candidate in names):
            sources[name] = "env"
        elif names & in_file:
            sources[name] = "file"
        elif name in settings.model_fields_set:
            sources[name] = "override"
        else:
            sources[name] = "default"
    return sources


def variable_of(field_name: str) -> str:
    """The environment variable a field is read from (its first alias), e.g. "PORT"."""
    return _variable(field_name)


def load_settings(**overrides: Any) -> Settings:
    """The settings of this process. Raises ConfigError for a value that does not
    validate (naming its environment variable, without pydantic's help URL) and for an
    ORCHESTRATOR_CONFIG_FILE that names nothing (an explicit file is never
    silently skipped; only the default config/app.yaml may be absent)."""
    named = os.environ.get(CONFIG_FILE_VARIABLE)
    if named is not None and not Path(named).exists():
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: no such file: {named!r}")
    if named is not None and Path(named).is_dir():
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: a directory, not a file: {named!r}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(error) for error in exc.errors())) from None


def _variable(name: str) -> str:
    """The environment variable of a field, or of one of its other names."""
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else []
        if name == field_name or name in choices:
            first = choices[0] if choices else field_name
            return first if isinstance(first, str) else field_name
    return name


def _problem(error: Any) -> str:
    where = _variable(str(error["loc"][0])) if error.get("loc") else "configuration"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if where in ("ORCHESTRATOR_PAGE_TOKEN_SECRET", "ORCHESTRATOR_PEERS"):
        value = "**redacted**"
    elif where in ("ORCHESTRATOR_DATABASE_URL", "LOG_COLLECTOR_URL") and isinstance(value, str):
        value = _redact_url(value)
    shown = repr(value)
    if len(shown) > 80:  # a 5,000-digit PORT is not repeated whole
        shown = shown[:60] + "..." + shown[-10:]
    return f"{where}: {message}, got {shown}"
