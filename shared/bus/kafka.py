"""The Kafka producer every service uses, and topic administration.

Producing: keyed by the event's subject (so one thing's events stay in one partition, in
order), ``acks=all``, idempotent, retried by the client. Every event is validated against
its schema before it leaves.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Iterable, Sequence

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewPartitions
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.config import Settings
from shared.events import TOPICS, Envelope, data_header, dlq_topic, ensure_valid, header_text, spec_for
from shared.events.registry import ID_HEADER, TYPE_HEADER
from shared.events.envelope import refuse_oversized

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30
COMPACTED_SEGMENT_BYTES = 16 * 1024 * 1024  # a compacted topic's segment size (topic_plan)
COMPACTED_SEGMENT_MS = 3_600_000
LINGER_MS = 100  # the producer's wait for more records before it sends a batch (see EventProducer)
BATCH_BYTES = 512 * 1024  # a batch per partition, at most (the broker takes 1 MiB a request)


class EventProducer:
    """Publishes validated events to their topics; thread-safe (one per process is enough)."""

    def __init__(self, settings: Settings, client_id: str):
        self.settings = settings
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            # Every send is followed by a flush (publish_all, send_raw), which sends at once:
            # the linger only lets a bulk publish fill its batches. With 2 ms and 16 KiB, the
            # sender thread drained a few records at a time while a thousand were being sent,
            # and every new batch woke it (a syscall that gives up the GIL). The pipeline
            # bench's 40,000 events were published in 4.2 s instead of 7.1.
            linger_ms=LINGER_MS,
            batch_size=BATCH_BYTES,
            delivery_timeout_ms=SEND_TIMEOUT_S * 1000,
            request_timeout_ms=10_000,
            max_block_ms=10_000,
        )

    def publish(self, envelope: Envelope):
        """Validate and send one event; returns the client's future (``.get()`` to wait).
        Headers: the CloudEvents type and id, and the data fields its type sends as headers."""
        ensure_valid(envelope)
        value = refuse_oversized(envelope.to_bytes())  # consumers would dead-letter it
        spec = spec_for(envelope.type, envelope.schemaversion)
        headers = [(TYPE_HEADER, envelope.type.encode()), (ID_HEADER, envelope.id.encode())]
        headers += [(data_header(f), header_text(envelope.data[f]).encode()) for f in spec.headers if envelope.data.get(f) is not None]
        return self._producer.send(self.settings.topic(spec.topic), key=envelope.key, value=value, headers=headers)

    def publish_all(self, envelopes: Iterable[Envelope], timeout: float = SEND_TIMEOUT_S) -> list:
        """Send events in order and wait until the broker has every one; raises on failure.
        Returns where each one went (the client's record metadata: partition, offset).

        ``envelopes`` may be a generator: each event is then built, sent (its bytes copied into
        the client's batch) and let go before the next, so a large publish does not hold all
        its envelopes at once (a scorer's batch of 5,000 events sends ~12,500 awards)."""
        futures = [self.publish(e) for e in envelopes]
        self._producer.flush(timeout=timeout)
        return [future.get(timeout=timeout) for future in futures]

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None, headers: list, timeout: float = SEND_TIMEOUT_S) -> None:
        """Send bytes as they are (the dead-letter path) and wait for the broker's ack."""
        future = self._producer.send(topic, key=key, value=value, headers=headers)
        self._producer.flush(timeout=timeout)
        future.get(timeout=timeout)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float = 10) -> None:
        self._producer.close(timeout=timeout)


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_servers, client_id="insidetrack-admin", request_timeout_ms=15_000
    )


def topic_plan(settings: Settings, names: Iterable[str] | None = None) -> dict[str, dict]:
    """The topics to create, by real name: partitions, replication factor, topic configs.

    Configs apply when a topic is created; an existing topic keeps its own (docs/operations.md
    says how to change them).
    """
    wanted: dict[str, dict] = {}
    for name in names or TOPICS:
        spec = TOPICS[name]
        real = settings.topic(name)
        configs = {}
        if spec.compacted:
            configs["cleanup.policy"] = "compact"
            # Compaction only cleans closed segments, and a segment closes at 1 GiB by default:
            # a copy restored from the start (the points state, the directory) would read every
            # record ever written. Closed at 16 MiB or after an hour, and cleaned once a tenth
            # of the log is superseded records, a restore reads about one record per key and
            # at most one segment's tail.
            configs["segment.bytes"] = str(COMPACTED_SEGMENT_BYTES)
            configs["segment.ms"] = str(COMPACTED_SEGMENT_MS)
            configs["min.cleanable.dirty.ratio"] = "0.1"
        if spec.keep_forever:
            configs["retention.ms"] = "-1"
            configs["retention.bytes"] = "-1"
        wanted[real] = {
            "num_partitions": spec.partitions or settings.topic_partitions,
            "replication_factor": settings.topic_replication_factor,
            "configs": configs,
        }
        wanted[dlq_topic(real)] = {
            "num_partitions": 1, "replication_factor": settings.topic_replication_factor, "configs": {}
        }
    return wanted


def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the topics (and their ``.dlq`` twins) that are missing; grow partition counts.

    Idempotent. Returns the real names of the topics it created.
    """
    wanted = topic_plan(settings, names)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        created: list[str] = []
        missing = {name: opts for name, opts in wanted.items() if name not in existing}
        if missing:
            result = admin.create_topics(missing, timeout_ms=30_000, raise_errors=False, wait_for_metadata=True)
            for topic in result["topics"]:
                if topic["error_code"] == 0:
                    created.append(topic["name"])
                elif topic["error_code"] != TopicAlreadyExistsError.errno:
                    raise KafkaError(f"could not create topic {topic['name']}: {topic['error_message']}")
        grow = {}
        present = [name for name in wanted if name in existing]
        for topic in admin.describe_topics(present) if present else []:
            want = wanted[topic["name"]]["num_partitions"]
            if len(topic["partitions"]) < want:
                grow[topic["name"]] = NewPartitions(total_count=want)
        if grow:
            admin.create_partitions(grow, timeout_ms=30_000)
            log.info("grew partitions", extra={"topics": sorted(grow)})
        return created
    finally:
        admin.close()


def kafka_reachable(settings: Settings, timeout: float = 1.0) -> None:
    """Raise ConnectionError unless some bootstrap server accepts a TCP connection."""
    errors = []
    for server in settings.kafka_servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{server}: {exc}")
    raise ConnectionError("Kafka unreachable: " + "; ".join(errors))


def kafka_answers_metadata(settings: Settings) -> list[str]:
    """Ask the cluster for its topic list (a real metadata round trip); raise if it cannot."""
    admin = admin_client(settings)
    try:
        return admin.list_topics()
    finally:
        admin.close()


def consumer_lag(settings: Settings, groups: dict[str, Sequence[str]]) -> int:
    """Messages in the groups' topics not yet committed by them (logical group and topic names).

    A consumer commits only after its effects are written, so 0 means "everything produced so
    far has been handled" (a stage's output may still be on its way through an outbox).
    """
    return sum(group_lags(settings, groups).values())


def _group_offsets(admin, group: str, patience_s: float = 10.0) -> dict:
    """A group's committed offsets. Its coordinator may be loading them (a broker just
    started, or a coordinator moved): that is retried for a while, not reported."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def group_lags(settings: Settings, groups: dict[str, Sequence[str]]) -> dict[str, int]:
    """:func:`consumer_lag` of each group, in one look (which stage a backlog waits on)."""
    from kafka import KafkaConsumer, TopicPartition

    admin = admin_client(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, client_id="insidetrack-lag",
                             enable_auto_commit=False)
    try:
        lags = {}
        for group, topics in groups.items():
            name = settings.topic(group)  # groups carry the prefix too
            committed = _group_offsets(admin, name)
            partitions = [TopicPartition(settings.topic(t), p) for t in topics
                          for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or ())]
            lags[group] = 0
            for tp, end in consumer.end_offsets(partitions).items():
                done = committed.get(tp)
                lags[group] += end - (done.offset if done is not None and done.offset >= 0 else 0)
        return lags
    finally:
        consumer.close()
        admin.close()
