"""The demo's simulated clock: shared by processes through a file, and refused outside the demo."""

from datetime import datetime, timedelta, timezone

import pytest

from services.gateway.config import GatewaySettings
from services.recognition.points.config import PointsSettings
from shared.clock import OffsetClock, SystemClock, clock_for
from shared.config import ConfigError, load_settings


def _close(a: datetime, b: datetime, seconds: float = 2.0) -> bool:
    return abs((a - b).total_seconds()) < seconds


def test_no_file_is_real_time(tmp_path):
    clock = OffsetClock(tmp_path / "clock.json")
    assert _close(clock.now(), datetime.now(timezone.utc))


def test_every_process_reading_the_file_sees_each_move_at_once(tmp_path):
    path = tmp_path / "demo" / "clock.json"
    loader, service_a, service_b = OffsetClock(path), OffsetClock(path), OffsetClock(path)
    start = datetime.now(timezone.utc) - timedelta(days=28)
    loader.start_at(start)
    assert _close(service_a.now(), start) and _close(service_b.now(), start)
    # Many moves in a row, faster than file times tick: each one is seen, none is missed.
    for hours in range(1, 200):
        loader.set(start + timedelta(hours=hours))
        assert _close(service_a.now(), start + timedelta(hours=hours)), hours
    # Time keeps flowing between moves (an offset, not a frozen time).
    before = service_b.now()
    assert service_b.now() >= before
    loader.reset()
    assert _close(service_a.now(), datetime.now(timezone.utc))


def test_it_never_goes_backwards(tmp_path):
    path = tmp_path / "clock.json"
    clock, reader = OffsetClock(path), OffsetClock(path)
    clock.start_at(datetime.now(timezone.utc) - timedelta(days=3))
    seen = reader.now()
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime.now(timezone.utc) - timedelta(days=5))
    # Even if the file were moved back by hand, a process's "now" does not go back.
    path.write_text('{"offset_seconds": -864000}')
    assert reader.now() >= seen
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))  # naive


def test_an_unreadable_file_keeps_the_last_good_offset(tmp_path):
    path = tmp_path / "clock.json"
    clock = OffsetClock(path)
    clock.start_at(datetime.now(timezone.utc) - timedelta(days=1))
    good = clock.offset()
    path.write_text("not json")
    assert clock.offset() == good


def test_services_run_on_real_time_unless_the_demo_sets_the_file(tmp_path):
    assert isinstance(clock_for(load_settings(env={})), SystemClock)
    demo = load_settings(PointsSettings, env={"INSIDETRACK_DEMO_CLOCK_FILE": str(tmp_path / "clock.json")})
    assert isinstance(clock_for(demo), OffsetClock)


@pytest.mark.parametrize("env", ["test", "production"])
def test_the_simulated_clock_is_refused_outside_the_local_demo(tmp_path, env):
    variables = {"INSIDETRACK_ENV": env, "INSIDETRACK_DEMO_CLOCK_FILE": str(tmp_path / "clock.json"),
                 "INSIDETRACK_INTERNAL_TOKEN": "a-real-production-secret-value",
                 "INSIDETRACK_JWT_SECRET": "a-real-production-jwt-secret-of-32-bytes-or-more"}
    for settings_class in (PointsSettings, GatewaySettings):
        with pytest.raises(ConfigError, match=f"INSIDETRACK_DEMO_CLOCK_FILE is set with INSIDETRACK_ENV={env}.*local demo only"):
            load_settings(settings_class, env=variables)
    # The same configuration without the file is fine.
    del variables["INSIDETRACK_DEMO_CLOCK_FILE"]
    assert load_settings(PointsSettings, env=variables).demo_clock_file is None
