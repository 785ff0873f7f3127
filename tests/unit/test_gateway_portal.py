"""What the gateway tells the portal page beyond the API: the company's "now" and when a brief
has enough notice (so the gaps shown while typing are the requests service's)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.gateway.config import GatewaySettings
from services.gateway.portal import portal_config, portal_link
from shared.clock import ManualClock

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _settings(**values) -> GatewaySettings:
    return GatewaySettings(**{"company_timezone": "Europe/Amsterdam", "working_days": "mon,tue,wed,thu,fri",
                              "business_day_start": "09:00", "business_day_end": "17:00", "holidays": "", **values})


def test_a_brief_has_enough_notice_from_two_business_days_on():
    tuesday_10 = datetime(2026, 11, 17, 10, 0, tzinfo=AMSTERDAM)
    config = portal_config(_settings(), ManualClock(tuesday_10))
    assert datetime.fromisoformat(config["now"]) == tuesday_10
    assert datetime.fromisoformat(config["brief"]["completeFrom"]) == datetime(2026, 11, 19, 10, 0, tzinfo=AMSTERDAM)
    assert config["brief"]["minDetails"] == 80 and config["brief"]["minNoticeDays"] == 2
    assert config["timezone"] == "Europe/Amsterdam"


def test_a_friday_afternoon_brief_counts_business_days_over_the_weekend_and_holidays():
    friday_16 = datetime(2026, 12, 18, 16, 0, tzinfo=AMSTERDAM)
    config = portal_config(_settings(holidays="2026-12-21"), ManualClock(friday_16))
    # Friday 16-17 (1 h), Monday a holiday, Tuesday (8 h), Wednesday 09-16 (7 h): 16 business hours.
    assert datetime.fromisoformat(config["brief"]["completeFrom"]) == datetime(2026, 12, 23, 16, 0, tzinfo=AMSTERDAM)


def test_the_portal_link_carries_the_token_in_its_fragment():
    assert portal_link("http://127.0.0.1:8000/", "a.b.c") == "http://127.0.0.1:8000/portal#token=a.b.c"
