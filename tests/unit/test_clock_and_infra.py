import socket
from datetime import datetime, timedelta, timezone

import pytest

from ops.infra.local import FerretDB, KafkaBroker
from ops.infra.process import InfraError
from shared.clock import ManualClock, NotAnInstant, as_utc, instant_from_iso
from shared.config import load_settings


def test_manual_clock_moves_only_forward_when_told():
    clock = ManualClock(datetime(2026, 3, 27, 16, 0, tzinfo=timezone.utc))
    assert clock.now() == clock.now()
    clock.advance(hours=2)
    assert clock.now() == datetime(2026, 3, 27, 18, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_a_taken_port_is_reported_with_the_variable_to_change(tmp_path, busy_port):
    settings = load_settings(env={}, var_dir=tmp_path, kafka_port=busy_port)
    with pytest.raises(InfraError, match=f"Port {busy_port}.*INSIDETRACK_KAFKA_PORT"):
        KafkaBroker(settings).up()
    settings = load_settings(env={}, var_dir=tmp_path, mongo_port=busy_port)
    with pytest.raises(InfraError, match=f"Port {busy_port}.*INSIDETRACK_MONGO_PORT"):
        FerretDB(settings).up()


def test_missing_build_tools_are_named_with_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    settings = load_settings(env={}, var_dir=tmp_path / "var", cache_dir=tmp_path / "cache")
    with pytest.raises(InfraError, match="`mvn` was not found.*Maven"):
        KafkaBroker(settings).provision()
    with pytest.raises(InfraError, match="`go` was not found.*Go"):
        FerretDB(settings).provision()


def test_kraft_cluster_ids_never_look_like_a_command_line_option():
    import base64

    from ops.infra.local import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # about 30 would start with "-" if unchecked
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)


@pytest.mark.parametrize("value,reason", [(None, "not_text"), (20261127, "not_text"), ("27/11/2026", "not_iso"),
                                          ("2026-11-27T10:00:00", "no_timezone")])
def test_an_instant_is_iso_text_with_a_timezone(value, reason):
    with pytest.raises(NotAnInstant) as refused:
        instant_from_iso(value)
    assert refused.value.reason == reason


def test_an_instant_keeps_its_offset_and_as_utc_moves_it():
    at = instant_from_iso("2026-11-27T10:00:00+01:00")
    assert at.utcoffset() == timedelta(hours=1)
    assert instant_from_iso("2026-11-27T09:00:00Z") == at
    assert as_utc("2026-11-27T10:00:00+01:00") == as_utc(at) == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
    assert as_utc("2026-11-27T09:00:00") == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)  # naive: taken as UTC
