"""The real local stack for integration tests: Kafka (KRaft) and FerretDB, started once.

The test stack has its own ports and data folder (var/test), so it never touches a stack that
`make up` is running. Each test gets its own topic/database name prefix, so tests never see
each other's events or documents.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from ops.infra import local
from services.gateway.auth import issue_token
from services.gateway.config import GatewaySettings
from shared.bus.kafka import EventProducer, ensure_topics
from shared.config import PROJECT_ROOT, Settings, load_settings
from shared.clock import OffsetClock
from shared.db import mongo_client
from tests.conftest import wait_until
from tests.integration.gateway_system import SERVICES, ready, running_system
from tests.integration.service_helpers import free_port

pytestmark = pytest.mark.integration


def _test_settings() -> Settings:
    defaults = {
        "env": "test",
        "var_dir": str(PROJECT_ROOT / "var" / "test"),
        "kafka_port": 19092,
        "kafka_controller_port": 19093,
        "mongo_port": 27018,
        "consumer_backoff_ms": 20,
        "outbox_poll_ms": 50,
    }
    env = {**{f"INSIDETRACK_{k.upper()}": str(v) for k, v in defaults.items()}, **_test_env()}
    return load_settings(env=env)


def _test_env() -> dict[str, str]:
    """INSIDETRACK_TEST_* variables override the test stack's defaults (e.g. other ports)."""
    return {
        "INSIDETRACK_" + k[len("INSIDETRACK_TEST_"):]: v
        for k, v in os.environ.items()
        if k.startswith("INSIDETRACK_TEST_")
    }


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Start a fresh test stack for this session and stop it afterwards."""
    settings = _test_settings()
    local.down(settings)  # a previous run that crashed may have left it running
    local.wipe(settings)
    try:
        local.up(settings)
        yield settings
    finally:
        local.down(settings)


@contextmanager
def isolated_settings(stack_settings: Settings) -> Iterator[Settings]:
    """Settings with their own topics (created) and databases (dropped after)."""
    isolated = stack_settings.model_copy(update={"name_prefix": f"t{uuid.uuid4().hex[:10]}_"})
    ensure_topics(isolated)
    yield isolated
    client = mongo_client(isolated)
    try:
        for name in client.list_database_names():
            if name.startswith(isolated.name_prefix):
                client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def settings(stack_settings: Settings) -> Settings:
    """Settings isolated for one test."""
    with isolated_settings(stack_settings) as isolated:
        yield isolated


@pytest.fixture
def system(settings: Settings) -> dict:
    """The requests, kudos and points processes (real, as `make up` runs them) and the gateway
    (see tests/integration/gateway_system.py)."""
    with running_system(settings) as running:
        yield running


@pytest.fixture
def producer(settings: Settings) -> EventProducer:
    p = EventProducer(settings, client_id="test")
    yield p
    p.close()


@pytest.fixture
def demo_system(settings, tmp_path):
    """The four service processes on a simulated clock (a file in tmp_path); yields a function
    that starts them at a given simulated time (optionally with another rules file)."""
    clock_file = tmp_path / "clock.json"
    processes = {}

    def start(at: datetime, rules_file: Path | None = None):
        OffsetClock(clock_file).start_at(at)
        ports = {name: free_port() for name, _ in SERVICES}
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
        env.update({"INSIDETRACK_KAFKA_PORT": str(settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(settings.mongo_port),
                    "INSIDETRACK_NAME_PREFIX": settings.name_prefix, "INSIDETRACK_LOG_LEVEL": "WARNING",
                    "INSIDETRACK_VAR_DIR": str(settings.var_dir), "PYTHONPATH": str(PROJECT_ROOT),
                    "INSIDETRACK_OUTBOX_POLL_MS": "100", "INSIDETRACK_SWEEP_INTERVAL_MS": "500",
                    "INSIDETRACK_DEMO_CLOCK_FILE": str(clock_file),
                    **({"INSIDETRACK_RULES_FILE": str(rules_file)} if rules_file else {}),
                    **{f"INSIDETRACK_{name.upper()}_PORT": str(port) for name, port in ports.items()}})
        for name, module in SERVICES:
            processes[name] = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=PROJECT_ROOT)
        for name, port in ports.items():
            assert wait_until(lambda: ready(port), timeout=90), f"{name} did not become ready"
        gateway_settings = GatewaySettings(**{**settings.model_dump(), "gateway_port": ports["gateway"]})
        with mongo_client(settings) as client:  # only to sign the admin on, as `insidetrack token` does
            admin = client[settings.database("requests")]["people"].find_one({"email": "admin@example.com"})
        return {"url": f"http://127.0.0.1:{ports['gateway']}", "gateway_settings": gateway_settings,
                "clock": OffsetClock(clock_file), "settings": settings,
                "admin_token": issue_token(gateway_settings, admin["_id"], admin["email"], "admin"),
                "token_for": lambda p: issue_token(gateway_settings, p["id"], p["email"], p["role"].lower())}

    yield start
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes.values():
        proc.wait(30)
