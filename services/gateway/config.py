"""Settings of the gateway (on top of the shared ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from shared.config import Settings

DEV_JWT_SECRET = "local-development-jwt-secret-change-me"


class GatewaySettings(Settings):
    # Sign-on: tokens from the intranet's identity provider. HS256 with a shared secret, or
    # RS256 with the provider's public key (then the secret is not used).
    jwt_algorithm: str = Field("HS256", pattern="^(HS256|RS256)$")
    jwt_secret: str = Field(DEV_JWT_SECRET, min_length=32)  # PyJWT warns below 32 bytes
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None  # only for `insidetrack token` with RS256 locally
    # Rotating the key: the previous secret (HS256) or public key (RS256) is still accepted for
    # verifying tokens, never used to sign, until the tokens signed with it have expired.
    jwt_previous_secret: str | None = Field(None, min_length=32)
    jwt_previous_public_key_file: Path | None = None
    jwt_issuer: str = "insidetrack-local"
    jwt_audience: str = "insidetrack"
    jwt_leeway_s: int = Field(30, ge=0, le=600)
    token_ttl_minutes: int = Field(12 * 60, ge=1, le=60 * 24 * 30)

    # Limits: what one request may ask for.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    max_query_depth: int = Field(10, ge=2, le=50)
    max_query_cost: int = Field(5000, ge=10, le=1_000_000)
    max_aliases: int = Field(30, ge=1, le=1000)
    rate_limit_per_minute: int = Field(240, ge=1, le=100_000)
    introspection: bool = True  # turn off in production if the schema should not be browsable

    # Where the services answer (unset: this machine, on their configured ports).
    requests_url: str | None = None
    kudos_url: str | None = None
    points_url: str | None = None
    notifications_url: str | None = None
    service_timeout_s: float = Field(5.0, gt=0, le=60)
    # Each open WebSocket (a screen, a portal tab) holds a thread of the gateway's server.
    http_threads: int = Field(64, ge=4, le=1024)
    ws_init_timeout_s: float = Field(10.0, gt=0, le=300)
    # What one WebSocket connection may send: a message's size, messages per second (a burst of
    # ten times that is allowed), subscriptions open at once; and how often it is checked that
    # the person is still active (and the token still valid) while it stays open.
    ws_max_message_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    ws_messages_per_s: float = Field(5.0, gt=0, le=10_000)
    ws_max_subscriptions: int = Field(25, ge=1, le=1000)
    ws_recheck_s: float = Field(60.0, gt=0, le=3600)
    # A read-only token (`insidetrack token --screen EMAIL`) the leaderboard screen uses when its
    # URL carries none.
    screen_token: str | None = None

    @model_validator(mode="after")
    def _production_keys(self) -> "GatewaySettings":
        if self.env == "production" and self.jwt_algorithm == "HS256" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("INSIDETRACK_JWT_SECRET must be set in production (or use RS256 with a public key)")
        if self.jwt_algorithm == "RS256" and self.jwt_public_key_file is None:
            raise ValueError("RS256 needs INSIDETRACK_JWT_PUBLIC_KEY_FILE")
        # A previous key of the other algorithm would be silently ignored: say so instead.
        if self.jwt_algorithm == "RS256" and self.jwt_previous_secret is not None:
            raise ValueError("INSIDETRACK_JWT_PREVIOUS_SECRET is for HS256; with RS256 use INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE")
        if self.jwt_algorithm == "HS256" and self.jwt_previous_public_key_file is not None:
            raise ValueError("INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE is for RS256; with HS256 use INSIDETRACK_JWT_PREVIOUS_SECRET")
        return self

    def service_url(self, service: str) -> str:
        configured = {"requests": self.requests_url, "kudos": self.kudos_url, "points": self.points_url,
                      "notifications": self.notifications_url}[service]
        port = {"requests": self.requests_port, "kudos": self.kudos_port, "points": self.points_port,
                "notifications": self.notifications_port}[service]
        return (configured or f"http://127.0.0.1:{port}").rstrip("/")
