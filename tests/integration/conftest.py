"""The real local stack for integration tests: Kafka (KRaft) and FerretDB, started once.

The test stack has its own ports and data folder (var/test), so it never touches a stack that
`make up` is running. Each test gets its own topic/database name prefix, so tests never see
each other's events or documents.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

from ops.infra import local
from shared.bus.kafka import EventProducer, ensure_topics
from shared.config import PROJECT_ROOT, Settings, load_settings
from shared.db import mongo_client
from tests.integration.gateway_system import running_system

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
