"""Settings of the points process (on top of the shared ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from services.recognition.points.rules import DEFAULT_RULES
from shared.config import Settings


STAGES = ("score", "apply", "insights")  # the points pipeline's stages, in order (app.py)


class PointsSettings(Settings):
    # The scoring rules (YAML); a bad file stops the process with its line and the reason.
    rules_file: Path = DEFAULT_RULES
    http_threads: int = Field(8, ge=1, le=64)
    # The pipeline stages this process runs (app.py), comma-separated; every process serves the
    # points API and keeps the points state. Each stage's consumer group shares its partitions
    # among the processes that run it, so a deployment can give the scorer its own processes
    # (its own core: Python runs one thread at a time in a process).
    points_stages: str = ",".join(STAGES)
    # Full garbage collections three times rarer than Python's default (shared/serve.py): they
    # took a third to half of the busy points processes' CPU. 30 gives the CPU of 100 without
    # its memory (the scoring process ended a 100k run at 157 MB at 100, 111 MB at 30).
    # Measured for these processes only (the gateway's and kudos' figures did not gain), so
    # the others keep Python's 10.
    gc_full_after: int = Field(30, ge=1, le=100_000)

    @field_validator("points_stages")
    @classmethod
    def _known_stages(cls, value: str) -> str:
        stages = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise ValueError(f"names {', '.join(unknown) or 'no stage'}; the stages are {', '.join(STAGES)}")
        return ",".join(s for s in STAGES if s in stages)

    @property
    def stages(self) -> frozenset[str]:
        return frozenset(self.points_stages.split(","))
