"""Settings of the notifications process (on top of the shared ones)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from shared.config import Settings

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$")


class NotificationsSettings(Settings):
    http_threads: int = Field(8, ge=1, le=64)
    # Where people open what a message links to (the kudos card's thumbnail): the gateway's
    # public address. Unset: this machine's gateway port.
    public_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # Webhook addresses: https only, unless this allows http (local receivers, tests); refused
    # in production.
    webhook_allow_http: bool = False
    # Comma-separated host names a webhook may point at ("hooks.slack.com", "*.webhook.office.com");
    # empty: any host.
    webhook_allowed_hosts: str = ""
    webhook_connect_timeout_s: float = Field(3.0, gt=0, le=60)
    webhook_read_timeout_s: float = Field(10.0, gt=0, le=120)
    # A delivery that gets a 5xx, a 429 or no answer is tried again, up to this many attempts in
    # all, the pause doubling from webhook_backoff_ms, for at most webhook_retry_window_s.
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_ms: int = Field(1000, ge=0, le=60_000)
    webhook_retry_window_s: float = Field(120.0, gt=0, le=3600)
    # A webhook whose deliveries fail this many times in a row is disabled, with the reason.
    webhook_disable_after: int = Field(5, ge=1, le=1000)

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        hosts = [h.strip().lower() for h in value.split(",") if h.strip()]
        if not all(_HOST.match(h) for h in hosts):
            raise ValueError("expected comma-separated host names, e.g. hooks.slack.com,*.webhook.office.com")
        return ",".join(hosts)

    @model_validator(mode="after")
    def _https_in_production(self) -> "NotificationsSettings":
        if self.env == "production" and self.webhook_allow_http:
            raise ValueError("INSIDETRACK_WEBHOOK_ALLOW_HTTP is for local receivers; it is refused in production")
        return self

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        return tuple(h for h in self.webhook_allowed_hosts.split(",") if h)

    @property
    def public_base_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.gateway_port}").rstrip("/")
