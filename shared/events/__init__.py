"""Event envelope, schemas and registry; importing this package registers every schema."""

from shared.events import schemas  # noqa: F401  (registers the event types)
from shared.events.envelope import Envelope, InvalidEvent, MAX_EVENT_BYTES, OversizedEvent
from shared.events.registry import (
    DLQ_SUFFIX,
    TOPICS,
    TYPE_HEADER,
    EventSchema,
    build_event,
    data_header,
    decode,
    dlq_topic,
    ensure_valid,
    header_text,
    header_value,
    registered_types,
    spec_for,
    topic_of,
    validate,
)

__all__ = [
    "DLQ_SUFFIX",
    "Envelope",
    "EventSchema",
    "InvalidEvent",
    "MAX_EVENT_BYTES",
    "OversizedEvent",
    "TOPICS",
    "TYPE_HEADER",
    "build_event",
    "data_header",
    "decode",
    "dlq_topic",
    "ensure_valid",
    "header_text",
    "header_value",
    "registered_types",
    "spec_for",
    "topic_of",
    "validate",
]
