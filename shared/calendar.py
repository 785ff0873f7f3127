"""The company's business calendar: business hours and leaderboard periods, in one timezone.

Every timeliness rule counts business hours, so "how late is this?" must mean the same in
every service. Windows are defined in local wall-clock time and converted to UTC per day
through zoneinfo, so daylight-saving changes and holidays are handled in one place.
Pure logic: no I/O, no clock; callers pass the moments in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shared.config import WEEKDAYS
from shared.vocabulary import Period, values

if TYPE_CHECKING:
    from shared.config import Settings

UTC = timezone.utc
PERIODS = values(Period)


def _aware(dt: datetime) -> datetime:
    """Return ``dt`` in UTC; a naive datetime is refused, since its moment is unknowable."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {dt!r}")
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class BusinessCalendar:
    """One timezone, one business day per working date, no work on holidays."""

    tz: ZoneInfo
    day_start: time  # local wall-clock
    day_end: time
    working_days: frozenset[int]  # date.weekday(): 0=Mon .. 6=Sun
    holidays: frozenset[date]

    def __post_init__(self) -> None:
        # Without these, business time would never advance and add_business_hours would not end.
        if self.day_start >= self.day_end:
            raise ValueError("day_start must be before day_end")
        if not self.working_days or not self.working_days <= set(range(7)):
            raise ValueError("working_days must be a non-empty set of weekday numbers 0..6")

    @classmethod
    def from_settings(cls, settings: Settings) -> BusinessCalendar:
        days = [d.strip().lower() for d in settings.working_days.split(",") if d.strip()]
        return cls(
            tz=ZoneInfo(settings.company_timezone),
            day_start=time.fromisoformat(settings.business_day_start),
            day_end=time.fromisoformat(settings.business_day_end),
            working_days=frozenset(WEEKDAYS.index(d) for d in days),
            holidays=frozenset(date.fromisoformat(d.strip()) for d in settings.holidays.split(",") if d.strip()),
        )

    @property
    def hours_per_day(self) -> float:
        """Nominal (wall-clock) length of a business day; what one business day means."""
        span = datetime.combine(date.min, self.day_end) - datetime.combine(date.min, self.day_start)
        return span.total_seconds() / 3600

    def is_working_day(self, d: date) -> bool:
        return d.weekday() in self.working_days and d not in self.holidays

    def window(self, d: date) -> tuple[datetime, datetime] | None:
        """That local date's business hours as UTC instants; None on weekends and holidays."""
        if not self.is_working_day(d):
            return None
        start = datetime.combine(d, self.day_start, tzinfo=self.tz).astimezone(UTC)
        end = datetime.combine(d, self.day_end, tzinfo=self.tz).astimezone(UTC)
        return start, end

    def local(self, dt: datetime) -> datetime:
        return _aware(dt).astimezone(self.tz)

    def business_hours_between(self, a: datetime, b: datetime) -> float:
        """Business hours elapsed from ``a`` to ``b`` (negative when ``b`` is before ``a``)."""
        a, b = _aware(a), _aware(b)
        if b < a:
            return -self.business_hours_between(b, a)
        total = timedelta(0)
        d, last = self.local(a).date(), self.local(b).date()
        while d <= last:  # one step per day: a two-year span is ~730 cheap steps
            w = self.window(d)
            if w is not None:
                lo, hi = max(a, w[0]), min(b, w[1])
                if hi > lo:
                    total += hi - lo
            d += timedelta(days=1)
        return total.total_seconds() / 3600

    def add_business_hours(self, start: datetime, hours: float) -> datetime:
        """The UTC moment when ``hours`` business hours have elapsed after ``start``.

        Zero hours returns ``start`` itself (as UTC), even outside business time, so that a
        deadline of "no time at all" is never pushed to the next morning. A total that ends
        exactly at closing time returns closing time, not the next opening.
        """
        start = _aware(start)
        if not hours >= 0:  # also refuses NaN
            raise ValueError("hours must be >= 0; use business_hours_between to go backwards")
        if hours == 0:
            return start
        remaining = timedelta(hours=hours)
        d = self.local(start).date()
        while True:
            w = self.window(d)
            if w is not None and start < w[1]:
                lo = max(start, w[0])
                available = w[1] - lo
                if remaining <= available:
                    return lo + remaining
                remaining -= available
            d += timedelta(days=1)

    def add_business_days(self, start: datetime, days: float) -> datetime:
        return self.add_business_hours(start, days * self.hours_per_day)


# --- Calendar-aligned periods (leaderboards), in the company timezone -------------------


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


def _start_date(period: str, d: date) -> date:
    """First local date of the period containing ``d``."""
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)  # quarter


def _next_start_date(period: str, first: date) -> date:
    """First local date of the period after the one starting on ``first``."""
    if period == "week":
        return first + timedelta(days=7)
    months = first.year * 12 + first.month - 1 + (1 if period == "month" else 3)
    return date(months // 12, months % 12 + 1, 1)


def _key(period: str, d: date) -> str:
    if period == "week":
        iso = d.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if period == "month":
        return f"{d.year}-{d.month:02d}"
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


# Period keys by (time zone, period, quarter of an hour in UTC): every zone's offset, and so its
# midnight and its daylight-saving changes, falls on a quarter of an hour, so one local date
# holds for the whole of it. Scoring, applying and insights ask for the keys of every event's
# time in every period: a dict lookup instead of a time zone conversion each time.
# Kept small: live events fall in a few quarters of an hour, and a year of history in 35,000
# (50,000 kept held ~10 MB more in each points process at the end of the year bench).
_KEYS: dict[tuple[Any, str, int], str] = {}
_KEYS_KEPT = 2_048


def period_key(calendar: BusinessCalendar, period: str, dt: datetime) -> str:
    """Key of the local period containing ``dt``: "2026-W48", "2026-11", "2026-Q4" or "all"."""
    _check_period(period)
    if dt.tzinfo is None or dt.utcoffset() is None:
        _aware(dt)  # refused: a naive time's moment is unknowable
    if period == "all":
        return "all"
    slot = (calendar.tz, period, int(dt.timestamp() // 900))
    key = _KEYS.get(slot)
    if key is None:
        if len(_KEYS) >= _KEYS_KEPT:
            _KEYS.clear()
        key = _KEYS[slot] = _key(period, calendar.local(dt).date())
    return key


def period_bounds(
    calendar: BusinessCalendar, period: str, dt: datetime
) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the local period containing ``dt``, as UTC; (None, None) for "all"."""
    _check_period(period)
    local_date = calendar.local(dt).date()
    if period == "all":
        return None, None
    first = _start_date(period, local_date)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=calendar.tz).astimezone(UTC)

    return midnight(first), midnight(_next_start_date(period, first))


def previous_period_key(calendar: BusinessCalendar, period: str, dt: datetime) -> str | None:
    """Key of the period just before the one containing ``dt``; None for "all"."""
    _check_period(period)
    local_date = calendar.local(dt).date()
    if period == "all":
        return None
    return _key(period, _start_date(period, local_date) - timedelta(days=1))
