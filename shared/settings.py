"""Settings shared by every Tandem process, read from ``TANDEM_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_MISSING = "TANDEM_SECRET_KEY must be set (make one with `tandem keygen`)"
ADMIN_TOKEN_MISSING = "TANDEM_ADMIN_TOKEN must be set for the scheduler API"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_client_id: str = "tandem"
    # Real Kafka supports the idempotent producer; Tansu's memory engine (the embedded dev
    # broker) does not, so `tandem dev` turns it off. Consumers dedupe by occurrence id, so
    # a re-sent record is harmless either way.
    kafka_idempotence: bool = True
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    # Bounded redelivery: a record (or a notifier delay-queue job) whose handler raises
    # something that is not a transient failure (a bug, a value the code cannot handle;
    # the transient set is shared.kafka.TRANSIENT) is tried this many times, with a pause
    # between, then dead-lettered to <topic>.dlq with the exception, so the couples behind
    # it on its partition are not held up. Transient failures retry without limit.
    handler_max_attempts: int = Field(default=3, ge=1)
    # Keyed consumers (shared.kafka.KeyedSubscriber): at most this many handler calls in
    # flight at once per consumer (different couples; one couple's records stay in order),
    # at most this many records per batch (one commit each), and how long an idle poll
    # waits for records (one that arrives while it waits is handed over at once; FastStream
    # then sleeps as long again after an empty poll, so this is latency a quiet hop adds).
    # These two waits are the nudges' path's; the urgent lanes and the scheduler's history
    # look less often (shared.service.URGENT_POLL_MS, BACKGROUND_POLL_MS).
    consumer_concurrency: int = Field(default=64, ge=1)
    consumer_max_records: int = Field(default=500, ge=1)
    consumer_batch_timeout_ms: int = Field(default=20, ge=1)
    # How long the broker may hold a fetch that finds nothing new. Kafka answers as soon
    # as a record arrives anyway; a broker that does not (Tansu) makes this the latency
    # one hop adds on a quiet evening, so it is short.
    consumer_fetch_max_wait_ms: int = Field(default=20, ge=1)

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tandem"

    # HTTP API (scheduler)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    admin_token: str | None = None
    # Where partners' phones reach the API, for the action links in nudges
    # (default: http://<api_host>:<api_port>).
    public_url: str | None = None
    # Fernet key (urlsafe base64, 32 bytes) that encrypts channel URLs at rest (and from
    # which the keys of action links and calendar feeds are derived).
    secret_key: str | None = None
    # Keys being rotated out, comma-separated: they still decrypt channel URLs and verify
    # action links and feed URLs, but never encrypt or sign (see `tandem rotate-keys`).
    old_secret_keys: str = ""
    # Limits and fairness (see the README's "Input rules"). Caps answer 409 (rituals,
    # goals) or 422 (channels) with the reason.
    max_rituals_per_couple: int = Field(default=20, ge=1)
    max_goals_per_couple: int = Field(default=50, ge=1)
    max_channels_per_partner: int = Field(default=5, ge=1, le=20)
    # Requests per bearer token (or per client address without one), a moving window kept
    # in Redis, in the `limits` notation ("120/minute", "5/second"). Empty rate_limit: no
    # rate limit. Over it: 429 with Retry-After.
    rate_limit: str = "120/minute"
    admin_rate_limit: str = "1200/minute"

    # Scheduler
    # The longest the firing loop sleeps when nothing is due and nothing wakes it (a ritual
    # saved through another process's API, a lease running out); it normally sleeps until
    # the earliest due instant or until a save wakes it.
    scheduler_tick_seconds: float = Field(default=5.0, gt=0)
    scheduler_batch: int = Field(default=2000, ge=1)
    scheduler_lease_seconds: float = Field(default=15.0, gt=0)
    # The schedule (due tracks, outbox) is split into this many buckets, each under its own
    # Redis Cluster hash tag, so claims spread over a cluster's masters. Fixed for a
    # deployment's lifetime: changing it moves tracks between buckets (see the README).
    scheduler_buckets: int = Field(default=16, ge=1, le=16384)
    # A couple's nudge history: the newest this many occurrences, none older than the TTL.
    history_keep: int = Field(default=100, ge=1)
    history_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    # A missed occurrence may still fire late if it is younger than this fraction of the
    # ritual's cadence (daily -> 2 h, weekly -> 14 h, quarterly -> ~7 days).
    grace_fraction: float = Field(default=1 / 12, gt=0, le=1)
    grace_min_seconds: float = Field(default=120, ge=0)
    grace_max_seconds: float = Field(default=7 * 86400, ge=0)

    # Content
    decks_dir: Path | None = None

    # Notifier
    plugins_dir: Path | None = None
    delivery_max_attempts: int = Field(default=5, ge=1)
    delivery_backoff_seconds: float = Field(default=2.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=300.0, gt=0)
    # Apprise socket timeouts: connect / read, seconds.
    delivery_connect_timeout: float = Field(default=4.0, gt=0)
    delivery_read_timeout: float = Field(default=10.0, gt=0)
    # Sends in flight at once per notifier process: to one provider host, and in all
    # (services/notifier/limits.py). Raise them for a provider that answers slowly but takes
    # many requests at once (8 in flight at 150 ms each is ~50 deliveries a second); at most
    # 64 in all, what the process's 32 deliveries under way (two partners each) can fill.
    delivery_per_host: int = Field(default=8, ge=1, le=64)
    delivery_concurrency: int = Field(default=16, ge=1, le=64)
    # Egress exceptions (see shared/egress.py and the README's "Security"): channels may not
    # reach loopback, link-local, private, multicast, reserved or unspecified addresses
    # unless named here -- comma-separated host:port entries and CIDR ranges, e.g.
    # "127.0.0.1:8025,10.0.5.0/24". Honoured by the API (when a channel is saved) and the
    # notifier (on every connection a send makes).
    channel_allow: str = ""

    # Partners' own door (issue #13): what the channel forms turn into Apprise URLs. Each
    # gateway is an Apprise URL with a placeholder ({address} or {number}) the form fills, e.g.
    # "mailtos://user:pass@smtp.example.com:587?from=tandem@example.com&to={address}"; None:
    # the form is not offered (the "advanced: any Apprise URL" form always is).
    ntfy_server: str = "https://ntfy.sh"
    smtp_relay: str | None = None
    sms_gateway: str | None = None
    signal_gateway: str | None = None
    # An invite link lives this long and works once; a verification code lives code_ttl and
    # allows code_attempts tries; a partner may have codes sent this many times an hour.
    invite_ttl_seconds: int = Field(default=7 * 86400, ge=60)
    code_ttl_seconds: int = Field(default=15 * 60, ge=30)
    code_attempts: int = Field(default=5, ge=1)
    code_sends_per_hour: int = Field(default=5, ge=1)

    # Observability
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    # /healthz, /readyz and /metrics of content and notifier (the scheduler serves them on
    # its API port). None: no ops server, so tests and one-off runs open no extra port.
    ops_host: str = "127.0.0.1"
    ops_port: int | None = Field(default=None, ge=0, le=65535)
    # OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); None: no tracing.
    otlp_endpoint: str | None = None

    @model_validator(mode="after")
    def _per_host_within_concurrency(self) -> Settings:
        if self.delivery_per_host > self.delivery_concurrency:
            raise ValueError(
                f"TANDEM_DELIVERY_PER_HOST ({self.delivery_per_host}) is more than "
                f"TANDEM_DELIVERY_CONCURRENCY ({self.delivery_concurrency}): one provider "
                "host cannot have more sends in flight than the notifier has in all"
            )
        return self

    @field_validator("channel_allow")
    @classmethod
    def _channel_allow_parses(cls, value: str) -> str:
        from shared.egress import policy

        policy(value)  # ValueError naming the bad entry
        return value

    def require_secret_key(self) -> str:
        """``secret_key``, which encrypts channel URLs and signs action links; ValueError
        (saying how to make one) if it is not set."""
        if not self.secret_key:
            raise ValueError(SECRET_KEY_MISSING)
        return self.secret_key

    def old_keys(self) -> list[str]:
        """``old_secret_keys`` as a list (empty items dropped)."""
        return [k.strip() for k in self.old_secret_keys.split(",") if k.strip()]

    def secret_keys(self) -> list[str]:
        """The current secret key first, then the old ones still accepted; ValueError if the
        current one is not set."""
        current = self.require_secret_key()
        return [current, *(k for k in self.old_keys() if k != current)]

    def require_admin_token(self) -> str:
        """``admin_token``, which the scheduler API requires; ValueError if it is not set."""
        if not self.admin_token:
            raise ValueError(ADMIN_TOKEN_MISSING)
        return self.admin_token

    @property
    def api_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
