"""Which event types exist, their schema per version, and the topic each travels on.

Producers build events with :func:`build_event` (validates ``data`` against the schema) and
consumers read them with :func:`decode` (validates again). A type is registered by decorating
its schema class in ``shared/events/schemas.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.clock import Clock
from shared.events.envelope import Envelope, InvalidEvent, make_envelope, refuse_oversized


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    # None: the configured default (INSIDETRACK_TOPIC_PARTITIONS).
    partitions: int | None = None
    # Kept forever: the history `insidetrack rebuild-points` re-scores from the start. False:
    # the cluster's retention (log.retention.*).
    keep_forever: bool = False


# Logical topic names; the real name carries the configured prefix (Settings.topic()).
TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("people", compacted=True),  # compaction keeps each person's latest record
        TopicSpec("requests", keep_forever=True),
        TopicSpec("kudos", keep_forever=True),
        TopicSpec("points"),
        TopicSpec("badges"),
        # "These awards are on the boards now": the live leaderboards' cue (gateways read it
        # from the end). One key, one partition: the notices stay in the order they were sent.
        TopicSpec("points-applied", partitions=1),
        # The points applier's state (each person's totals and badge progress), one record per
        # person and change: its changelog. Compaction keeps each person's latest record, so a
        # process restores it by reading the topic from the start (points/state.py).
        TopicSpec("points-state", compacted=True),
    )
}
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


class EventSchema(BaseModel):
    """Base of every event's ``data`` schema: unknown fields are refused, values are frozen, and
    a number is finite (NaN and Infinity are not JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class EventSpec:
    type: str
    version: int
    topic: str
    schema: type[EventSchema]
    # Data fields also sent as Kafka headers (``data_header``), so that a consumer that wants
    # only some of these events can pass the others by without decoding them.
    headers: tuple[str, ...] = ()


# The Kafka headers every event carries (CloudEvents' Kafka binding): its type and id. A consumer
# that wants only some types passes the others by on TYPE_HEADER, undecoded.
TYPE_HEADER, ID_HEADER = "ce_type", "ce_id"


def data_header(field: str) -> str:
    """The Kafka header that carries a data field of an event (``EventSpec.headers``)."""
    return f"data_{field}"


def header_text(value: Any) -> str:
    """A data field's value as its header carries it (a list: its items, comma-separated)."""
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def header_value(message, name: str) -> str | None:
    """A header of a Kafka message as text (None: the message does not carry it)."""
    for key, value in message.headers or ():
        if key == name:
            return value.decode(errors="replace") if value is not None else None
    return None


_SPECS: dict[tuple[str, int], EventSpec] = {}
_LATEST: dict[str, int] = {}

E = TypeVar("E", bound=type[EventSchema])


def event_type(type: str, topic: str, version: int = 1, headers: tuple[str, ...] = ()) -> Callable[[E], E]:
    """Register the decorated schema as the ``data`` of ``type`` at ``version`` (``headers``:
    data fields sent as Kafka headers too)."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r} for {type}")

    def register(schema: E) -> E:
        key = (type, version)
        if key in _SPECS:
            raise ValueError(f"{type} v{version} registered twice")
        unknown = [f for f in headers if f not in schema.model_fields]
        if unknown:
            raise ValueError(f"{type}: header fields {unknown} are not in its schema")
        _SPECS[key] = EventSpec(type, version, topic, schema, tuple(headers))
        _LATEST[type] = max(version, _LATEST.get(type, 0))
        return schema

    return register


def spec_for(type: str, version: int | None = None) -> EventSpec:
    if type not in _LATEST:
        raise InvalidEvent(f"unknown event type {type!r}")
    version = _LATEST[type] if version is None else version
    try:
        return _SPECS[(type, version)]
    except KeyError:
        raise InvalidEvent(f"unknown schema version {version} for {type}") from None


def registered_types() -> list[EventSpec]:
    return sorted(_SPECS.values(), key=lambda s: (s.topic, s.type, s.version))


def _check(spec: EventSpec, data: Any) -> EventSchema:
    try:
        return spec.schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"data.{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidEvent(f"{spec.type} v{spec.version} does not match its schema: {problems}") from None


def build_event(
    type: str,
    subject: str,
    data: EventSchema | dict[str, Any],
    source: str,
    clock: Clock | None = None,
    id: str | None = None,
) -> Envelope:
    """Return a validated envelope for the latest version of ``type``; raises InvalidEvent."""
    spec = spec_for(type)
    payload = data if isinstance(data, spec.schema) else _check(spec, data)
    envelope = make_envelope(
        type=type,
        subject=subject,
        data=payload.model_dump(mode="json"),
        source=source,
        clock=clock,
        schemaversion=spec.version,
        id=id,
    )
    # Every consumer would dead-letter it. Measured, not kept (Envelope.to_bytes): publishing
    # encodes again (~10 us a points.awarded record).
    refuse_oversized(envelope.to_bytes())
    mark_valid(envelope)
    return envelope


def validate(envelope: Envelope) -> EventSchema:
    """Return the typed ``data`` of a known event; raises InvalidEvent with the reason."""
    return _check(spec_for(envelope.type, envelope.schemaversion), envelope.data)


_VALID = "_valid"  # set on an envelope by build_event: its data is its schema's own dump


def mark_valid(envelope: Envelope) -> None:
    """Remember that ``envelope`` was validated as built (an envelope is not changed after)."""
    envelope.__dict__[_VALID] = True


def ensure_valid(envelope: Envelope) -> None:
    """Validate an envelope before it is sent, unless build_event validated it already (the
    points pipeline sends thousands a second, each built by build_event: validating every one
    again cost as much as building it)."""
    if not envelope.__dict__.get(_VALID):
        validate(envelope)


def decode(raw: bytes | None) -> tuple[Envelope, EventSchema]:
    """Parse and validate a message from Kafka; raises InvalidEvent with the reason."""
    envelope = Envelope.from_bytes(raw)
    return envelope, validate(envelope)


def topic_of(type: str) -> str:
    """The logical topic an event type travels on."""
    return spec_for(type).topic
