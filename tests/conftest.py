"""Fixtures shared by every test tier."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from shared.clock import ManualClock

CHAOS_DIR = Path(__file__).parent / "integration" / "chaos"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The slow fault suite (`make chaos`) is collected only when its folder is named."""
    if collection_path != CHAOS_DIR:
        return None
    base = config.invocation_params.dir
    named = [(base / arg.split("::")[0]).resolve() for arg in config.args]
    return None if any(path == CHAOS_DIR or CHAOS_DIR in path.parents for path in named) else True


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
