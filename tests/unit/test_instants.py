"""The date-sensitive rules at the instants that break naive code, whatever day the suite runs.

Company time is Europe/Amsterdam, business hours Mon-Fri 09:00-17:00. Each instant is set
here, never read from the machine: a Saturday, a Sunday evening, Monday 00:30 (before business
hours), Friday 16:59, both DST switch days of 2027 (either side of the switch), New Year's Eve
23:59 and the first minute of the new year, and a day of ISO week 53 (2026 has 53 weeks: Thu
2026-12-31 and Fri 2027-01-01 are in 2026-W53). The same instants run the demo plan, the
leaderboard periods and their previous period (movement), the business-hours SLAs, the kudos
allowance and weekly-cap resets, and the sweeper's timers.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ops.demo.company import KINDS, plan_activity
from services.requests.domain import KIND_DEPARTMENT, Person, submit
from shared.calendar import BusinessCalendar, period_bounds, period_key, previous_period_key
from shared.config import load_settings

AMS = ZoneInfo("Europe/Amsterdam")
CAL = BusinessCalendar.from_settings(load_settings(env={}))
REP = Person(id="rep", email="rep@example.com", name="Rep", role="rep", department="sales")


def local(y, mo, d, h, mi=0, fold=0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=AMS, fold=fold)


INSTANTS = {
    "saturday": local(2026, 11, 28, 11, 0),
    "sunday-evening": local(2026, 11, 29, 19, 0),
    "monday-00h30": local(2026, 11, 30, 0, 30),
    "friday-16h59": local(2026, 12, 4, 16, 59),
    "dst-spring-before": local(2027, 3, 28, 1, 30),  # clocks go 02:00 -> 03:00 on Sun 2027-03-28
    "dst-spring-after": local(2027, 3, 28, 3, 30),
    "dst-autumn-first-0230": local(2027, 10, 31, 2, 30, fold=0),  # 03:00 -> 02:00 on Sun 2027-10-31
    "dst-autumn-second-0230": local(2027, 10, 31, 2, 30, fold=1),
    "new-years-eve-23h59": local(2026, 12, 31, 23, 59),
    "new-year-00h00": local(2027, 1, 1, 0, 0),
    "iso-week-53": local(2026, 12, 31, 12, 0),
}
ALL = pytest.mark.parametrize("now", list(INSTANTS.values()), ids=list(INSTANTS))


def in_business_hours(dt: datetime) -> bool:
    t = dt.astimezone(AMS)
    return t.weekday() < 5 and time(9) <= t.time() <= time(17)


# -- leaderboard periods and the previous period (movement) -------------------------------------

@ALL
@pytest.mark.parametrize("period", ["week", "month", "quarter"])
def test_periods_contain_now_and_follow_each_other_without_gap(now, period):
    start, end = period_bounds(CAL, period, now)
    assert start <= now.astimezone(timezone.utc) < end
    # Periods start at local midnight: a Monday for weeks, the 1st for months and quarters.
    first = start.astimezone(AMS)
    assert first.time() == time(0)
    if period == "week":
        assert first.weekday() == 0 and end.astimezone(AMS).weekday() == 0
        # A week is 7 local days: 168 h, or 167/169 h across a DST switch.
        assert (end - start) in (timedelta(hours=167), timedelta(hours=168), timedelta(hours=169))
    else:
        assert first.day == 1 and (period == "month" or first.month in (1, 4, 7, 10))
    key = period_key(CAL, period, now)
    assert period_key(CAL, period, start) == key and period_key(CAL, period, end - timedelta(microseconds=1)) == key
    assert period_key(CAL, period, end) != key
    before = start - timedelta(microseconds=1)
    assert previous_period_key(CAL, period, now) == period_key(CAL, period, before)
    assert period_bounds(CAL, period, before)[1] == start  # the previous period ends where this one starts


def test_the_year_end_keys():
    eve, new_year = INSTANTS["new-years-eve-23h59"], INSTANTS["new-year-00h00"]
    assert [period_key(CAL, p, eve) for p in ("week", "month", "quarter")] == ["2026-W53", "2026-12", "2026-Q4"]
    # 1 January 2027 is a Friday: still ISO week 53 of 2026, but a new month and quarter.
    assert [period_key(CAL, p, new_year) for p in ("week", "month", "quarter")] == ["2026-W53", "2027-01", "2027-Q1"]
    assert previous_period_key(CAL, "week", INSTANTS["iso-week-53"]) == "2026-W52"
    assert previous_period_key(CAL, "month", new_year) == "2026-12"
    assert previous_period_key(CAL, "quarter", new_year) == "2026-Q4"
    assert period_key(CAL, "week", local(2027, 1, 4, 0, 0)) == "2027-W01"
    assert previous_period_key(CAL, "week", local(2027, 1, 4, 0, 0)) == "2026-W53"


def test_monday_0030_is_a_new_week_whose_previous_is_the_weekend_s():
    monday = INSTANTS["monday-00h30"]
    assert period_key(CAL, "week", monday) == "2026-W49"
    assert previous_period_key(CAL, "week", monday) == "2026-W48"
    assert period_key(CAL, "week", INSTANTS["sunday-evening"]) == "2026-W48"


# -- business-hours SLAs and the sweeper's timers ------------------------------------------------

@ALL
def test_sla_deadlines_land_in_business_hours_and_count_exactly(now):
    for hours in (4, 8, 24):  # acknowledge within 4 business hours; answer within a day; rush notice
        due = CAL.add_business_hours(now, hours)
        assert in_business_hours(due) and due > now
        assert CAL.business_hours_between(now, due) == pytest.approx(hours)
    # Out of business hours nothing counts: from now to the next opening is zero business hours.
    if not in_business_hours(now):
        opening = CAL.add_business_hours(now, 0.001) - timedelta(seconds=3.6)
        assert CAL.business_hours_between(now, opening) == pytest.approx(0, abs=1e-6)


def test_what_the_sla_says_on_the_awkward_days():
    assert CAL.add_business_hours(INSTANTS["friday-16h59"], 4) == local(2026, 12, 7, 12, 59)
    assert CAL.add_business_hours(INSTANTS["saturday"], 4) == local(2026, 11, 30, 13, 0)
    assert CAL.add_business_hours(INSTANTS["sunday-evening"], 4) == local(2026, 11, 30, 13, 0)
    assert CAL.add_business_hours(INSTANTS["monday-00h30"], 4) == local(2026, 11, 30, 13, 0)
    assert CAL.add_business_hours(INSTANTS["dst-spring-after"], 4) == local(2027, 3, 29, 13, 0)
    assert CAL.add_business_hours(INSTANTS["dst-autumn-second-0230"], 4) == local(2027, 11, 1, 13, 0)
    assert CAL.add_business_hours(INSTANTS["new-years-eve-23h59"], 4) == local(2027, 1, 1, 13, 0)


@ALL
def test_the_sweeper_fires_each_timer_once_at_its_business_time(now):
    needed_by = CAL.add_business_days(now, 3)
    request = submit(REP, {"kind": "pricing", "title": "Price it", "customer": "ACME", "needed_by": needed_by,
                           "details": "A three-year renewal with volume tiers and a ramp in year one; the CFO wants two options side by side.",
                           "commitment": "Two options by the needed-by date", "priority": "normal"},
                     number=1, now=now, cal=CAL, request_id="r_instant")
    assert KIND_DEPARTMENT["pricing"] == request.department
    assert request.brief_complete and request.notice_business_hours == pytest.approx(24)
    request.new_events.clear()
    update_due = request.update_due_at
    assert in_business_hours(update_due) and CAL.business_hours_between(now, update_due) == pytest.approx(40)
    # Nothing is due a moment before its time; each fires once at its time, never again.
    assert request.fire_due_timers(needed_by - timedelta(seconds=1), CAL) == []
    assert request.fire_due_timers(needed_by, CAL) == ["overdue"]
    assert request.fire_due_timers(needed_by + timedelta(hours=1), CAL) == []
    assert request.fire_due_timers(update_due - timedelta(seconds=1), CAL) == []
    assert request.fire_due_timers(update_due, CAL) == ["update_due"]
    assert request.fire_due_timers(update_due, CAL) == []
    # The next update reminder is five business days later, again in business hours.
    assert in_business_hours(request.update_due_at)
    assert CAL.business_hours_between(update_due, request.update_due_at) == pytest.approx(40)


# -- kudos allowance (monthly) and weekly cap ----------------------------------------------------

@ALL
def test_allowance_and_weekly_cap_reset_at_local_midnight(now):
    month_start, month_end = period_bounds(CAL, "month", now)  # the allowance resets at month_end
    week_start, week_end = period_bounds(CAL, "week", now)  # the weekly cap at week_end
    for start, end, period in ((month_start, month_end, "month"), (week_start, week_end, "week")):
        assert end.astimezone(AMS).time() == time(0)
        assert period_key(CAL, period, end - timedelta(seconds=1)) == period_key(CAL, period, now)
        assert period_key(CAL, period, end) != period_key(CAL, period, now)


# -- the demo plan ------------------------------------------------------------------------------

@ALL
def test_the_demo_plan_ends_at_any_instant_with_work_in_business_hours(now):
    plan = plan_activity(CAL, end=now.astimezone(timezone.utc), days=28)
    assert plan.steps
    assert all(step.at <= now for step in plan.steps)
    assert {s.args["kind"] for s in plan.steps if s.op == "submit"} == set(KINDS)
    # Work happens in business hours; the closing thank-yous in the last half hour, whenever it is.
    closing = now - timedelta(minutes=30)
    assert all(in_business_hours(s.at) or (s.op in ("give_kudos", "add_on") and s.at >= closing) for s in plan.steps)
    assert any(s.at >= closing for s in plan.steps)  # this week's board is never empty after a demo load
    weeks = {period_key(CAL, "week", s.at) for s in plan.steps}
    assert len(weeks) >= 4  # four weeks of work: every week board has a week before it to move from
    quiet = plan_activity(CAL, end=now.astimezone(timezone.utc), days=28, closing_burst=False)
    assert quiet.steps and all(in_business_hours(s.at) for s in quiet.steps)
