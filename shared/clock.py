"""The one source of "now": a system clock in production, a movable clock in tests and demos."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told to (tests, the simulated demo clock)."""

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; never backwards."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware time")
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = when.astimezone(timezone.utc)


class OffsetClock:
    """Real time plus an offset kept in a small file: the simulated clock of the local demo.

    The demo loader (``ops.demo``) moves the offset forward so that four weeks of activity
    pass in about a minute, and sets it to zero when it is done, so the running system ends
    on real time. Every service process of the demo reads the same file, so they agree on
    "now". The file is re-read only when it changed (one ``stat`` per call: inode, mtime in
    nanoseconds, size; :meth:`set` gives every write a new, strictly later mtime), so
    ``now()`` stays cheap. No file means no offset. Settings refuse it outside the local
    environment (``demo_clock_file``), so it can never run in a test or production setup.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._offset = timedelta(0)
        self._last = datetime.min.replace(tzinfo=timezone.utc)

    def offset(self) -> timedelta:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return timedelta(0)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                try:
                    seconds = float(json.loads(self.path.read_text(encoding="utf-8"))["offset_seconds"])
                except (OSError, ValueError, KeyError, TypeError):
                    return self._offset  # replaced meanwhile, or unreadable: keep the last good one
                self._key, self._offset = key, timedelta(seconds=seconds)
            return self._offset

    def now(self) -> datetime:
        offset = self.offset()
        with self._lock:
            # Never backwards within a process, even if the file were moved back by hand.
            self._last = max(self._last, datetime.now(timezone.utc) + offset)
            return self._last

    def start_at(self, when: datetime) -> None:
        """Put "now" at ``when`` (in the past) before any process reads the clock: the demo's start."""
        if when.tzinfo is None:
            raise ValueError("OffsetClock.start_at needs a timezone-aware time")
        self._write((when - datetime.now(timezone.utc)).total_seconds())

    def set(self, when: datetime) -> None:
        """Make "now" ``when`` for every process reading the file (the demo loader's call)."""
        if when.tzinfo is None:
            raise ValueError("OffsetClock.set needs a timezone-aware time")
        current = datetime.now(timezone.utc) + self.offset()
        if when < current - timedelta(seconds=1):
            raise ValueError(f"a clock does not go backwards ({when.isoformat()} is before {current.isoformat()})")
        self._write((when - datetime.now(timezone.utc)).total_seconds())

    def reset(self) -> None:
        """Back to real time (offset 0); only ever a step forward for a clock in the past."""
        if self.offset() > timedelta(0):
            raise ValueError("the clock is ahead of real time: going back to it would move time backwards")
        self._write(0.0)

    def _write(self, seconds: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"offset_seconds": seconds}), encoding="utf-8")
        # File times are coarse (a few ms): give each write its own, later mtime so readers
        # never mistake a new offset for the one they cached.
        try:
            previous = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            previous = 0
        stamp = max(time.time_ns(), previous + 1)
        os.utime(tmp, ns=(stamp, stamp))
        os.replace(tmp, self.path)


def clock_for(settings) -> "Clock":
    """The clock a service runs on: real time, or the demo's offset clock when configured."""
    path = getattr(settings, "demo_clock_file", None)
    return OffsetClock(path) if path is not None else SystemClock()


def utc(dt: datetime) -> datetime:
    """Return ``dt`` in UTC; naive datetimes (as BSON gives back) are taken as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


class NotAnInstant(ValueError):
    """Not an ISO 8601 date-time with a timezone; ``reason`` says why, for the caller's own
    message: ``not_text``, ``not_iso`` or ``no_timezone``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def instant_from_iso(value: Any) -> datetime:
    """An ISO 8601 date-time that names its timezone (``Z`` or ``+01:00``), with that offset;
    raises :class:`NotAnInstant` for anything else (a naive time's moment is unknowable)."""
    if not isinstance(value, str):
        raise NotAnInstant("not_text")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NotAnInstant("not_iso") from None
    if parsed.tzinfo is None:
        raise NotAnInstant("no_timezone")
    return parsed


def as_utc(value: datetime | str) -> datetime:
    """A datetime, or the ISO 8601 text an event carries, in UTC (naive taken as UTC, as :func:`utc`)."""
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
