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
    # How often the outbox relay searches for documents a dead writer left pending, besides at
    # start. On FerretDB the search reads every request (about 10-30 s of its CPU at 20k), and
    # a restarted process searches at once; only an instance that died and never came back
    # while others run needs it.
    outbox_scan_s: float = Field(3600.0, ge=10, le=86_400)
