"""Small clients for integration tests: read a topic from the start, run a consumer."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from kafka import KafkaConsumer, TopicPartition

from shared.bus.consumer import ConsumerRunner
from shared.config import Settings
from tests.conftest import wait_until


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0) -> list:
    """Return at least ``count`` records of the real topic ``topic`` (all partitions, from 0)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def headers(record) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or [])}


@contextmanager
def running(runner: ConsumerRunner):
    """Run a consumer in a thread for the duration of the block; stop and join after."""
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert wait_until(runner.assigned.is_set, timeout=30), "consumer got no partitions"
        yield runner
    finally:
        runner.stop()
        thread.join(30)
        assert not thread.is_alive(), "consumer did not stop"
