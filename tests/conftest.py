"""Fixtures shared by every test tier."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from shared.clock import ManualClock


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
