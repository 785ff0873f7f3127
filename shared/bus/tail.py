"""Follow a topic from a terminal: one line per event (time, type, subject, data)."""

from __future__ import annotations

import json
import threading

from kafka import KafkaConsumer, TopicPartition

from shared.config import Settings
from shared.events import Envelope, InvalidEvent, dlq_topic


def tail_topic(settings: Settings, topic: str, from_beginning: bool = False, dlq: bool = False,
               limit: int = 0, stop: threading.Event | None = None, out=print) -> int:
    stop = stop or threading.Event()
    real = settings.topic(topic)
    real = dlq_topic(real) if dlq else real
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(real)
        if not partitions:
            out(f"no topic {real!r} (is the stack up?)")
            return 1
        tps = [TopicPartition(real, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        seen = 0
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    out(_line(record, dlq))
                    seen += 1
                    if limit and seen >= limit:
                        return 0
        return 0
    finally:
        consumer.close()


def _line(record, dlq: bool) -> str:
    if dlq:
        headers = {k: v.decode(errors="replace") for k, v in record.headers or []}
        return f"{headers.get('dlq.time', '?')}  DEAD  {headers.get('dlq.reason', '?')}  value={record.value[:200]!r}"
    try:
        event = Envelope.from_bytes(record.value)
    except InvalidEvent as exc:
        return f"(not an event: {exc})"
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"{event.time.isoformat(timespec='seconds')}  {event.type:<28} {event.subject}  {data}"
