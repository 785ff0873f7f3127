"""Settings of the kudos process (on top of the shared ones)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from shared.config import Settings


class KudosSettings(Settings):
    # Company values a kudos may name (slugs; cards show them capitalized, "_" as spaces).
    company_values: str = "customer_first,teamwork,ownership,speed,integrity"
    # Each recipient of a kudos spends one from the giver's monthly allowance.
    monthly_allowance: int = Field(20, ge=1, le=1000)
    weekly_cap_per_recipient: int = Field(3, ge=1, le=100)
    http_threads: int = Field(8, ge=1, le=64)

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
