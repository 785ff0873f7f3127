"""Settings of the points process (on top of the shared ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.recognition.points.rules import DEFAULT_RULES
from shared.config import Settings


class PointsSettings(Settings):
    # The scoring rules (YAML); a bad file stops the process with its line and the reason.
    rules_file: Path = DEFAULT_RULES
    http_threads: int = Field(8, ge=1, le=64)
