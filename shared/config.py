"""Settings read from environment variables, with local defaults, validated at start.

Every process reads its configuration through :func:`load_settings`; nothing else reads
``os.environ``. Each field ``foo_bar`` is set by the variable ``INSIDETRACK_FOO_BAR``.
A service that needs more settings subclasses :class:`Settings` and passes its class in.
"""

from __future__ import annotations

import os
import re
from datetime import date, time
from pathlib import Path
from typing import Literal, Mapping, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "INSIDETRACK_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Port = int
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_NAME_PREFIX = re.compile(r"^[a-z0-9_]*$")
DEV_INTERNAL_TOKEN = "local-development-internal-token"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "insidetrack"


class Settings(BaseModel):
    """Settings every Inside Track process shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Literal["local", "test", "production"] = "local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    # The company's business calendar: every timeliness rule counts business hours in it.
    company_timezone: str = "Europe/Amsterdam"
    business_day_start: str = "09:00"
    business_day_end: str = "17:00"
    working_days: str = "mon,tue,wed,thu,fri"
    holidays: str = ""  # comma-separated ISO dates, e.g. 2026-12-25,2026-12-26

    # Kafka: the bootstrap list clients use, and the ports of the local broker we start.
    # Unset: the local broker at 127.0.0.1:<kafka_port>.
    kafka_bootstrap: str | None = None
    kafka_port: Port = Field(9092, ge=1, le=65535)
    kafka_controller_port: Port = Field(9093, ge=1, le=65535)
    kafka_heap_mb: int = Field(512, ge=128, le=8192)
    topic_partitions: int = Field(3, ge=1, le=64)
    # Copies of each topic's partitions when topics are created (1 for the local broker; 3 on a
    # production cluster, with the broker's min.insync.replicas at 2).
    topic_replication_factor: int = Field(1, ge=1, le=7)
    # Prepended to every topic and database name; tests use it to isolate themselves.
    name_prefix: str = ""

    # MongoDB wire protocol (FerretDB locally, MongoDB 7+ in production).
    # Unset: the local FerretDB at mongodb://127.0.0.1:<mongo_port>/.
    mongo_url: str | None = None
    mongo_port: Port = Field(27017, ge=1, le=65535)
    mongo_timeout_ms: int = Field(5000, ge=100, le=120_000)
    # Every this many seconds, log where this process's database time went (commands and time by
    # command and collection: shared.db.DatabaseTimes); 0: off.
    db_profile_s: float = Field(0.0, ge=0, le=86_400)
    # The local FerretDB serves Go's pprof profiles on this loopback address ("127.0.0.1:6061");
    # empty: off. For finding where FerretDB's own CPU goes (docs/performance.md, "How we profile").
    ferretdb_pprof: str = Field("", pattern=r"^(127\.0\.0\.1:\d{1,5})?$")

    # Where the local stack keeps data, logs and pid files, and where downloads are cached.
    var_dir: Path = PROJECT_ROOT / "var"
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # The fonts fetched at install time (CJK, Thai, Devanagari, colour emoji: shared/fonts).
    # Unset: <cache_dir>/fonts, where `make up` / `make test` put them.
    font_dir: Path | None = None

    # Consumers: bounded retries with backoff before a message goes to the dead-letter topic.
    consumer_max_attempts: int = Field(5, ge=1, le=100)
    consumer_backoff_ms: int = Field(200, ge=0, le=60_000)
    # A group member that has not been stable for this long starts over with a new Kafka client:
    # kafka-python 3.0 can strand a member "rebalancing" for ever (see shared/bus/consumer.py).
    consumer_rejoin_after_s: float = Field(30, ge=1, le=3600)
    # Outbox relay: how often it looks for pending events when nobody wakes it up.
    outbox_poll_ms: int = Field(500, ge=10, le=60_000)
    # Python's cyclic garbage collector: a full collection (every object the process holds)
    # after this many collections of the middle generation (Python's default: 10). The points
    # processes default to 30 (services/recognition/points/config.py): busy, they spent a third
    # to half of their CPU in full collections (shared/serve.py).
    gc_full_after: int = Field(10, ge=1, le=100_000)

    # Services accept commands only from callers presenting this token (the gateway, the CLI).
    internal_token: str = Field(DEV_INTERNAL_TOKEN, min_length=16)

    # The local demo's simulated clock (shared.clock.OffsetClock): real time plus the offset in
    # this file. Only `insidetrack up` sets it, to load the demo company; refused unless local.
    demo_clock_file: Path | None = None

    # Internal HTTP ports, and the address the HTTP servers listen on (loopback locally;
    # 0.0.0.0 in a container, so the runtime's network can reach them).
    http_host: str = Field("127.0.0.1", pattern=r"^[A-Za-z0-9.:\-]+$")
    gateway_port: Port = Field(8000, ge=1, le=65535)
    requests_port: Port = Field(8001, ge=1, le=65535)
    kudos_port: Port = Field(8002, ge=1, le=65535)
    points_port: Port = Field(8003, ge=1, le=65535)
    notifications_port: Port = Field(8004, ge=1, le=65535)
    # The local stack's second points process, which only scores (ops/supervisor.py): its
    # INSIDETRACK_POINTS_PORT. Nothing calls it but health checks.
    points_score_port: Port = Field(8005, ge=1, le=65535)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_port_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p.strip() for p in value.split(",")]
        if not parts or not all(_HOSTPORT.match(p) for p in parts):
            raise ValueError("expected host:port[,host:port...], e.g. 127.0.0.1:9092")
        return ",".join(parts)

    @field_validator("mongo_url")
    @classmethod
    def _mongo_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("expected a mongodb:// or mongodb+srv:// URL")
        return value

    @field_validator("company_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA timezone name, e.g. Europe/Amsterdam") from None
        return value

    @field_validator("business_day_start", "business_day_end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError("expected HH:MM, e.g. 09:00") from None
        return value

    @field_validator("working_days")
    @classmethod
    def _weekdays(cls, value: str) -> str:
        days = [d.strip().lower() for d in value.split(",") if d.strip()]
        if not days or any(d not in WEEKDAYS for d in days):
            raise ValueError(f"expected a comma-separated list of {', '.join(WEEKDAYS)}")
        return ",".join(days)

    @field_validator("holidays")
    @classmethod
    def _dates(cls, value: str) -> str:
        try:
            [date.fromisoformat(d.strip()) for d in value.split(",") if d.strip()]
        except ValueError:
            raise ValueError("expected comma-separated ISO dates, e.g. 2026-12-25,2026-12-26") from None
        return value

    @model_validator(mode="after")
    def _day_has_hours(self) -> "Settings":
        if time.fromisoformat(self.business_day_start) >= time.fromisoformat(self.business_day_end):
            raise ValueError("business_day_start must be before business_day_end")
        return self

    @model_validator(mode="after")
    def _production_has_secrets(self) -> "Settings":
        if self.env == "production" and self.internal_token == DEV_INTERNAL_TOKEN:
            raise ValueError("INSIDETRACK_INTERNAL_TOKEN must be set to a secret in production")
        return self

    @model_validator(mode="after")
    def _demo_clock_only_in_the_demo(self) -> "Settings":
        if self.demo_clock_file is not None and self.env != "local":
            raise ValueError(
                f"INSIDETRACK_DEMO_CLOCK_FILE is set with INSIDETRACK_ENV={self.env}: the simulated clock is for "
                "the local demo only (INSIDETRACK_ENV=local); unset it"
            )
        return self

    @field_validator("var_dir", "cache_dir", "font_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Daemons run with their own working directory: relative paths would point elsewhere.
        return None if value is None else value.expanduser().resolve()

    @field_validator("name_prefix")
    @classmethod
    def _prefix_is_safe(cls, value: str) -> str:
        if not _NAME_PREFIX.match(value):
            raise ValueError("use lower-case letters, digits and _ only")
        return value

    @property
    def kafka_servers(self) -> list[str]:
        return (self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}").split(",")

    @property
    def mongo_uri(self) -> str:
        return self.mongo_url or f"mongodb://127.0.0.1:{self.mongo_port}/"

    def topic(self, name: str) -> str:
        """Return the real topic name for a logical one (``kudos`` -> ``<prefix>kudos``)."""
        return f"{self.name_prefix}{name}"

    def database(self, service: str) -> str:
        """Return the database a service owns; services never read each other's."""
        return f"{self.name_prefix}insidetrack_{service}"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"


S = TypeVar("S", bound=Settings)


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(cls: type[S] = Settings, env: Mapping[str, str] | None = None, **overrides) -> S:
    """Build settings from ``env`` (default: the process environment) plus explicit overrides.

    Raises :class:`ConfigError` listing every bad variable with the reason.
    """
    env = os.environ if env is None else env
    known = {env_name(name): name for name in cls.model_fields}
    values: dict[str, object] = {name: env[var] for var, name in known.items() if var in env}
    values.update(overrides)
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across fields
                problems.append(err["msg"].removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            source = env_name(field) if field in values and field not in overrides else field
            given = values.get(field, "<missing>")
            problems.append(f"{source}={given!r}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
