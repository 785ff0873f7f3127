"""Settings of the requests service (on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field

from shared.config import Settings


class RequestsSettings(Settings):
    # Created on the first start of an empty directory, so someone can import the others.
    admin_email: str = "admin@example.com"
    # How often the sweeper looks for due timers (overdue, update due, info unanswered).
    sweep_interval_ms: int = Field(5000, ge=50, le=600_000)
    http_threads: int = Field(8, ge=1, le=64)
    # How often the outbox relay reads its journals (shared.bus.outbox) for documents a dead
    # writer left pending, besides at start: one small document when idle, the last minute's
    # writes otherwise (never a search of the collection).
    outbox_scan_s: float = Field(30.0, ge=1, le=86_400)
