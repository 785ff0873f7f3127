"""Business calendar: every timeliness rule depends on these numbers, so each is worked by hand.

Dates used (2026 starts on a Thursday): Fri 2026-01-09, Mon 2026-01-12; Amsterdam DST starts
Sun 2026-03-29 and ends Sun 2026-10-25; New York DST starts Sun 2026-03-08, ends Sun 2026-11-01.
Amsterdam is UTC+1 in winter (CET) and UTC+2 in summer (CEST); New York UTC-5 / UTC-4.
"""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from shared.calendar import (
    PERIODS,
    BusinessCalendar,
    period_bounds,
    period_key,
    previous_period_key,
)
from shared.config import load_settings

UTC = timezone.utc
AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")
JLM = ZoneInfo("Asia/Jerusalem")


def cal(**overrides) -> BusinessCalendar:
    return BusinessCalendar.from_settings(load_settings(env={}, **overrides))


def ams(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- Construction -----------------------------------------------------------------------


def test_defaults_build_an_amsterdam_nine_to_five_week():
    c = cal()
    assert c.tz == AMS
    assert (c.day_start, c.day_end) == (time(9, 0), time(17, 0))
    assert c.working_days == frozenset({0, 1, 2, 3, 4})
    assert c.holidays == frozenset()
    assert c.hours_per_day == 8.0


def test_settings_from_environment_variables_are_parsed():
    c = BusinessCalendar.from_settings(
        load_settings(
            env={
                "INSIDETRACK_COMPANY_TIMEZONE": "Asia/Jerusalem",
                "INSIDETRACK_BUSINESS_DAY_START": "08:30",
                "INSIDETRACK_BUSINESS_DAY_END": "17:30",
                "INSIDETRACK_WORKING_DAYS": "sun,mon,tue,wed,thu",
                "INSIDETRACK_HOLIDAYS": "2026-04-02, 2026-09-21",
            }
        )
    )
    assert c.tz == JLM
    assert c.working_days == frozenset({6, 0, 1, 2, 3})  # Sunday is 6 in date.weekday()
    assert c.holidays == frozenset({date(2026, 4, 2), date(2026, 9, 21)})
    assert c.hours_per_day == 9.0  # 08:30 -> 17:30


def test_a_calendar_without_business_time_is_refused():
    with pytest.raises(ValueError):
        BusinessCalendar(AMS, time(17), time(9), frozenset({0}), frozenset())
    with pytest.raises(ValueError):
        BusinessCalendar(AMS, time(9), time(17), frozenset(), frozenset())


# --- Windows ----------------------------------------------------------------------------


def test_window_is_the_local_day_converted_to_utc_across_dst():
    c = cal(holidays="2026-01-06")
    # Winter, CET = UTC+1: 09:00-17:00 local is 08:00-16:00 UTC.
    assert c.window(date(2026, 1, 5)) == (utc(2026, 1, 5, 8), utc(2026, 1, 5, 16))
    # Friday before the switch still CET; Monday after it is CEST = UTC+2: 07:00-15:00 UTC.
    assert c.window(date(2026, 3, 27)) == (utc(2026, 3, 27, 8), utc(2026, 3, 27, 16))
    assert c.window(date(2026, 3, 30)) == (utc(2026, 3, 30, 7), utc(2026, 3, 30, 15))
    # Back to CET after Sun 2026-10-25.
    assert c.window(date(2026, 10, 26)) == (utc(2026, 10, 26, 8), utc(2026, 10, 26, 16))
    assert c.window(date(2026, 1, 10)) is None  # Saturday
    assert c.window(date(2026, 1, 11)) is None  # Sunday
    assert c.window(date(2026, 1, 6)) is None  # holiday (a Tuesday)
    assert c.is_working_day(date(2026, 1, 7)) and not c.is_working_day(date(2026, 1, 6))


def test_local_converts_to_company_time_and_refuses_naive():
    c = cal()
    assert c.local(utc(2026, 7, 1, 12)) == ams(2026, 7, 1, 14)  # CEST
    assert c.local(utc(2026, 7, 1, 12)).tzinfo == AMS
    with pytest.raises(ValueError):
        c.local(datetime(2026, 7, 1, 12))


# --- Business hours between -------------------------------------------------------------


def test_friday_afternoon_to_monday_morning_is_two_hours():
    # Fri 16:00-17:00 (1h) + weekend (0) + Mon 09:00-10:00 (1h) = 2.
    assert cal().business_hours_between(ams(2026, 1, 9, 16), ams(2026, 1, 12, 10)) == 2.0


def test_overnight_and_weekend_time_counts_zero():
    c = cal()
    assert c.business_hours_between(ams(2026, 1, 5, 17), ams(2026, 1, 6, 9)) == 0.0  # Mon close -> Tue open
    assert c.business_hours_between(ams(2026, 1, 5, 16), ams(2026, 1, 6, 10)) == 2.0  # 1h + 1h
    assert c.business_hours_between(ams(2026, 1, 10, 0), ams(2026, 1, 12, 0)) == 0.0  # Sat 00:00 -> Mon 00:00
    assert c.business_hours_between(ams(2026, 1, 5, 6), ams(2026, 1, 5, 8)) == 0.0  # before opening
    assert c.business_hours_between(ams(2026, 1, 5, 10, 15), ams(2026, 1, 5, 12, 45)) == 2.5  # inside one day


def test_a_holiday_counts_zero():
    # Without the holiday: Fri 16-17 (1) + Mon (8) + Tue 09-10 (1) = 10. With Mon a holiday: 2.
    a, b = ams(2026, 1, 9, 16), ams(2026, 1, 13, 10)
    assert cal().business_hours_between(a, b) == 10.0
    assert cal(holidays="2026-01-12").business_hours_between(a, b) == 2.0


@pytest.mark.parametrize(
    "zone, friday, monday",
    [
        ("Europe/Amsterdam", date(2026, 3, 27), date(2026, 3, 30)),  # spring forward Sun 03-29
        ("Europe/Amsterdam", date(2026, 10, 23), date(2026, 10, 26)),  # fall back Sun 10-25
        ("America/New_York", date(2026, 3, 6), date(2026, 3, 9)),  # spring forward Sun 03-08
        ("America/New_York", date(2026, 10, 30), date(2026, 11, 2)),  # fall back Sun 11-01
    ],
)
def test_a_dst_weekend_still_gives_two_full_days(zone, friday, monday):
    c = cal(company_timezone=zone)
    tz = ZoneInfo(zone)
    a = datetime.combine(friday, time(9), tzinfo=tz)
    b = datetime.combine(monday, time(17), tzinfo=tz)
    # Fri 8h + Mon 8h = 16, although the real elapsed time is 80h -/+ 1h because of the switch
    # (same-zone subtraction in Python is wall-clock, hence the conversion to UTC).
    assert abs(b.astimezone(UTC) - a.astimezone(UTC) - timedelta(hours=80)) == timedelta(hours=1)
    assert c.business_hours_between(a, b) == 16.0


def test_backwards_span_is_negative_and_input_zone_does_not_matter():
    c = cal()
    a, b = ams(2026, 1, 9, 16), ams(2026, 1, 12, 10)
    assert c.business_hours_between(b, a) == -2.0
    assert c.business_hours_between(a, a) == 0.0
    # The same instants given in UTC (CET = UTC+1) and in New York time (EST = UTC-5).
    assert c.business_hours_between(utc(2026, 1, 9, 15), b.astimezone(NY)) == 2.0


def test_naive_datetimes_are_refused():
    c = cal()
    with pytest.raises(ValueError):
        c.business_hours_between(datetime(2026, 1, 9, 16), ams(2026, 1, 12, 10))
    with pytest.raises(ValueError):
        c.business_hours_between(ams(2026, 1, 9, 16), datetime(2026, 1, 12, 10))
    with pytest.raises(ValueError):
        c.add_business_hours(datetime(2026, 1, 9, 16), 1)


def test_two_years_are_counted_exactly():
    # 2026 starts on a Thursday and is 52 weeks + 1 day: 52*5 + 1 = 261 weekdays.
    # 2027 starts on a Friday, also 52 weeks + 1 day: 261 weekdays. 522 * 8h = 4176h.
    # Fri 2026-12-25 is a holiday (-8h); Sat 2026-12-26 is not a weekday anyway: 4168h.
    c = cal(holidays="2026-12-25,2026-12-26")
    a, b = ams(2026, 1, 1), ams(2028, 1, 1)
    hours = c.business_hours_between(a, b)
    end = c.add_business_hours(a, hours)
    assert hours == 4168.0
    assert end == ams(2027, 12, 31, 17)  # the last weekday, Fri 2027-12-31, at closing time


# --- Adding business hours --------------------------------------------------------------


def test_friday_afternoon_plus_four_hours_is_monday_eleven():
    # Fri 15-17 uses 2h, the remaining 2h run Mon 09-11.
    end = cal().add_business_hours(ams(2026, 1, 9, 15), 4)
    assert end == ams(2026, 1, 12, 11)
    assert end.tzinfo == UTC and end == utc(2026, 1, 12, 10)


def test_counting_from_a_weekend_starts_on_monday_morning():
    assert cal().add_business_hours(ams(2026, 1, 10, 10), 3) == ams(2026, 1, 12, 12)  # Sat -> Mon 09+3
    assert cal().add_business_hours(ams(2026, 1, 5, 7), 1) == ams(2026, 1, 5, 10)  # before opening


def test_a_holiday_monday_is_skipped():
    # Fri 15-17 (2h), Mon 2026-01-12 off, Tue 09-11 (2h).
    assert cal(holidays="2026-01-12").add_business_hours(ams(2026, 1, 9, 15), 4) == ams(2026, 1, 13, 11)


def test_zero_hours_returns_start_and_a_full_day_ends_at_closing():
    c = cal()
    saturday = ams(2026, 1, 10, 10)
    assert c.add_business_hours(saturday, 0) == saturday  # not pushed to Monday
    assert c.add_business_hours(saturday, 0).tzinfo == UTC
    assert c.add_business_hours(ams(2026, 1, 5, 11), 0) == ams(2026, 1, 5, 11)
    assert c.add_business_hours(ams(2026, 1, 5, 9), 8) == ams(2026, 1, 5, 17)  # not Tue 09:00
    assert c.add_business_hours(ams(2026, 1, 5, 17), 1) == ams(2026, 1, 6, 10)  # at closing: next day


def test_negative_or_nan_hours_are_refused():
    with pytest.raises(ValueError):
        cal().add_business_hours(ams(2026, 1, 5, 9), -1)
    with pytest.raises(ValueError):
        cal().add_business_hours(ams(2026, 1, 5, 9), float("nan"))


def test_add_business_days_uses_the_length_of_a_day():
    # 2.5 days * 8h = 20h from Mon 10:00: Mon 7h (13 left), Tue 8h (5 left), Wed 09+5 = 14:00.
    assert cal().add_business_days(ams(2026, 1, 5, 10), 2.5) == ams(2026, 1, 7, 14)
    # Across the spring switch: Fri 2026-03-27 12:00 + 1 day = Mon 2026-03-30 12:00 local.
    assert cal().add_business_days(ams(2026, 3, 27, 12), 1) == ams(2026, 3, 30, 12)


STARTS = [
    ams(2026, 1, 9, 15, 30),  # Friday afternoon
    ams(2026, 1, 10, 11),  # Saturday
    ams(2026, 1, 5, 6),  # before opening
    ams(2026, 1, 5, 17),  # exactly at closing
    ams(2026, 3, 27, 16),  # Friday before spring forward
    ams(2026, 10, 23, 10),  # Friday before fall back
    utc(2026, 12, 24, 15, 59),  # Thu 16:59 local, a holiday follows
]


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("hours", [0.25, 1, 7.5, 8, 13, 40, 123.75])
def test_adding_then_measuring_gives_back_the_hours(start, hours):
    c = cal(holidays="2026-12-25,2026-12-28")
    end = c.add_business_hours(start, hours)
    assert c.business_hours_between(start, end) == pytest.approx(hours)
    # And the result lies inside (or at the close of) a business window.
    w = c.window(c.local(end).date())
    assert w is not None and w[0] < end <= w[1]


# --- Non-default calendars --------------------------------------------------------------


def test_sunday_to_thursday_week_in_jerusalem():
    c = cal(company_timezone="Asia/Jerusalem", working_days="sun,mon,tue,wed,thu")
    # Winter, IST = UTC+2: Sunday 2026-01-04 09:00-17:00 is 07:00-15:00 UTC.
    assert c.window(date(2026, 1, 4)) == (utc(2026, 1, 4, 7), utc(2026, 1, 4, 15))
    assert c.window(date(2026, 1, 9)) is None  # Friday
    assert c.window(date(2026, 1, 10)) is None  # Saturday
    thu_16 = datetime(2026, 1, 8, 16, tzinfo=JLM)
    # Thu 16-17 (1h) + Fri/Sat (0) + Sun 09-10 (1h) = 2.
    assert c.business_hours_between(thu_16, datetime(2026, 1, 11, 10, tzinfo=JLM)) == 2.0
    # Thu 15:00 + 4h: Thu 2h, Sun 09-11.
    assert c.add_business_hours(datetime(2026, 1, 8, 15, tzinfo=JLM), 4) == datetime(2026, 1, 11, 11, tzinfo=JLM)


def test_half_past_eight_to_half_past_five_is_nine_hours():
    c = cal(business_day_start="08:30", business_day_end="17:30")
    assert c.hours_per_day == 9.0
    assert c.business_hours_between(ams(2026, 1, 5, 8), ams(2026, 1, 5, 18)) == 9.0
    # Mon 17:00 + 1h: 0.5h Monday, 0.5h from Tue 08:30 -> Tue 09:00.
    assert c.add_business_hours(ams(2026, 1, 5, 17), 1) == ams(2026, 1, 6, 9)
    assert c.add_business_days(ams(2026, 1, 5, 8, 30), 1) == ams(2026, 1, 5, 17, 30)


# --- Periods ----------------------------------------------------------------------------


def test_period_keys():
    c = cal()
    dt = ams(2026, 11, 25, 12)  # Wednesday of ISO week 48
    assert [period_key(c, p, dt) for p in PERIODS] == ["2026-W48", "2026-11", "2026-Q4", "all"]


def test_iso_week_year_edges():
    c = cal()
    # 2026 starts on a Thursday, so it has 53 ISO weeks; W53 runs Mon 12-28 .. Sun 2027-01-03.
    assert date(2026, 12, 31).isocalendar()[:2] == (2026, 53)
    assert period_key(c, "week", ams(2026, 12, 31, 12)) == "2026-W53"
    assert period_key(c, "week", ams(2027, 1, 1, 12)) == "2026-W53"
    assert period_key(c, "week", ams(2027, 1, 3, 23, 59)) == "2026-W53"
    assert period_key(c, "week", ams(2027, 1, 4, 0)) == "2027-W01"
    # Mon 2025-12-29 already belongs to 2026-W01.
    assert period_key(c, "week", ams(2025, 12, 29, 0)) == "2026-W01"
    # Bounds: Mon 2026-12-28 00:00 CET = Sun 23:00 UTC; Mon 2027-01-04 00:00 CET = Sun 23:00 UTC.
    assert period_bounds(c, "week", ams(2027, 1, 1, 12)) == (utc(2026, 12, 27, 23), utc(2027, 1, 3, 23))


def test_a_moment_belongs_to_the_local_week_not_the_utc_one():
    # New York, Sun 2026-11-29 23:30 EST is Mon 2026-11-30 04:30 UTC (ISO week 49 in UTC).
    c = cal(company_timezone="America/New_York")
    sunday_late = ny(2026, 11, 29, 23, 30)
    assert sunday_late.astimezone(UTC) == utc(2026, 11, 30, 4, 30)
    assert period_key(c, "week", sunday_late) == "2026-W48"
    assert period_key(c, "week", sunday_late.astimezone(UTC)) == "2026-W48"
    # Week 48 is Mon 11-23 00:00 EST (05:00 UTC) .. Mon 11-30 00:00 EST (05:00 UTC).
    assert period_bounds(c, "week", sunday_late) == (utc(2026, 11, 23, 5), utc(2026, 11, 30, 5))
    # Amsterdam the other way: Sun 2026-11-29 23:30 UTC is already Monday 00:30 CET, week 49.
    assert period_key(cal(), "week", utc(2026, 11, 29, 23, 30)) == "2026-W49"


def test_month_bounds_follow_local_midnight_across_dst():
    c = cal()
    # Nov 2026 in Amsterdam is all CET (UTC+1).
    assert period_bounds(c, "month", ams(2026, 11, 15)) == (utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    # March starts in CET (UTC+1) and ends in CEST (UTC+2).
    assert period_bounds(c, "month", ams(2026, 3, 15)) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert period_bounds(c, "month", ams(2026, 12, 31, 23, 59)) == (utc(2026, 11, 30, 23), utc(2026, 12, 31, 23))


def test_quarter_boundaries():
    c = cal()
    assert period_key(c, "quarter", ams(2026, 3, 31, 23, 59)) == "2026-Q1"
    assert period_key(c, "quarter", ams(2026, 4, 1, 0)) == "2026-Q2"
    # 2026-03-31 22:30 UTC is 2026-04-01 00:30 CEST: already Q2 locally.
    assert period_key(c, "quarter", utc(2026, 3, 31, 22, 30)) == "2026-Q2"
    assert period_key(c, "quarter", ams(2026, 9, 30, 23)) == "2026-Q3"
    # Q4: Oct 1 00:00 CEST = Sep 30 22:00 UTC .. Jan 1 2027 00:00 CET = Dec 31 23:00 UTC.
    assert period_bounds(c, "quarter", ams(2026, 11, 25)) == (utc(2026, 9, 30, 22), utc(2026, 12, 31, 23))
    # Q1: Jan 1 00:00 CET = Dec 31 23:00 UTC .. Apr 1 00:00 CEST = Mar 31 22:00 UTC.
    assert period_bounds(c, "quarter", ams(2026, 2, 1)) == (utc(2025, 12, 31, 23), utc(2026, 3, 31, 22))


def test_previous_period_keys():
    c = cal()
    assert previous_period_key(c, "quarter", ams(2026, 2, 14)) == "2025-Q4"
    assert previous_period_key(c, "quarter", ams(2026, 11, 1)) == "2026-Q3"
    assert previous_period_key(c, "month", ams(2026, 1, 1, 0)) == "2025-12"
    assert previous_period_key(c, "month", ams(2026, 3, 31)) == "2026-02"
    # Across the year boundary: before 2027-W01 is 2026-W53; before 2026-W01 is 2025-W52
    # (2025 starts on a Wednesday, so it has only 52 ISO weeks).
    assert previous_period_key(c, "week", ams(2027, 1, 6)) == "2026-W53"
    assert previous_period_key(c, "week", ams(2026, 1, 1)) == "2025-W52"
    assert previous_period_key(c, "all", ams(2026, 1, 1)) is None


@pytest.mark.parametrize("period", ["week", "month", "quarter"])
@pytest.mark.parametrize("dt", [ams(2026, 1, 1), ams(2026, 3, 29, 12), utc(2026, 12, 31, 23, 30), ny(2026, 11, 1, 1, 30)])
def test_bounds_contain_the_moment_and_agree_with_the_keys(period, dt):
    c = cal()
    start, end = period_bounds(c, period, dt)
    assert start.tzinfo == UTC and end.tzinfo == UTC
    assert start <= dt < end
    assert period_key(c, period, start) == period_key(c, period, dt)
    assert period_key(c, period, end - timedelta(microseconds=1)) == period_key(c, period, dt)
    assert previous_period_key(c, period, end) == period_key(c, period, dt)
    assert previous_period_key(c, period, dt) == period_key(c, period, start - timedelta(microseconds=1))


def test_all_time_and_bad_input():
    c = cal()
    assert period_key(c, "all", ams(2026, 5, 5)) == "all"
    assert period_bounds(c, "all", ams(2026, 5, 5)) == (None, None)
    for fn in (period_key, period_bounds, previous_period_key):
        with pytest.raises(ValueError):
            fn(c, "year", ams(2026, 5, 5))
        with pytest.raises(ValueError):
            fn(c, "all", datetime(2026, 5, 5))


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham"])
def test_period_keys_remembered_by_the_quarter_hour_are_the_local_dates_periods_in_any_zone(zone):
    """Keys are kept per quarter of an hour (calendar.period_key): right in zones offset by
    45 or 30 minutes and across their daylight-saving changes, to the microsecond before midnight."""
    import random

    from shared.calendar import _key

    cal = BusinessCalendar(ZoneInfo(zone), time(9), time(17), frozenset(range(5)), frozenset())
    rng, start = random.Random(zone), datetime(2025, 1, 1, tzinfo=timezone.utc)
    times = [start + timedelta(seconds=rng.randint(0, 2 * 365 * 86400), microseconds=rng.randint(0, 999_999)) for _ in range(3000)]
    for d in (date(2026, 3, 29), date(2026, 10, 4), date(2026, 12, 31)):  # around local midnights
        midnight = datetime.combine(d, time(0), tzinfo=ZoneInfo(zone))
        times += [midnight - timedelta(microseconds=1), midnight, midnight.astimezone(timezone.utc)]
    for at in times:
        for period in ("week", "month", "quarter"):
            assert period_key(cal, period, at) == _key(period, at.astimezone(ZoneInfo(zone)).date()), (period, at)
    with pytest.raises(ValueError):
        period_key(cal, "all", datetime(2026, 1, 1))  # a naive time is refused, even for "all"
