"""Settings of the kudos process (on top of the shared ones)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from shared.config import Settings


class KudosSettings(Settings):
    # Company values a kudos may name (slugs; cards show them capitalized, "_" as spaces).
    company_values: str = "customer_first,teamwork,ownership,speed,integrity"
    # Each recipient of a kudos spends one from the giver's monthly allowance.
    monthly_allowance: int = Field(20, ge=1, le=1000)
    weekly_cap_per_recipient: int = Field(3, ge=1, le=100)
    http_threads: int = Field(8, ge=1, le=64)
    # A fault for the crash tests (tests/integration/faults.py): the process kills itself
    # (SIGKILL) right after a kudos and its event are stored, before the outbox relay is told.
    # Refused in production.
    fault_crash_after_state_write: bool = False

    @model_validator(mode="after")
    def _no_faults_in_production(self) -> "KudosSettings":
        if self.env == "production" and self.fault_crash_after_state_write:
            raise ValueError("INSIDETRACK_FAULT_CRASH_AFTER_STATE_WRITE is a test fault; it is refused in production")
        return self

    @field_validator("company_values")
    @classmethod
    def _slugs(cls, value: str) -> str:
        values = [v.strip().lower() for v in value.split(",") if v.strip()]
        if not values or not all(re.fullmatch(r"[a-z0-9_-]{1,40}", v) for v in values):
            raise ValueError("expected comma-separated slugs like customer_first,teamwork")
        return ",".join(values)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.company_values.split(","))

    @property
    def cards_dir(self):
        return self.var_dir / "cards"
