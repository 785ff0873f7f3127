"""The one event envelope (CloudEvents-style attributes) and its wire format.

On the wire an event is a UTF-8 JSON object::

    {"specversion": "1.0", "id": "...", "type": "kudos.given", "source": "kudos",
     "time": "2026-11-27T10:00:00.000000Z", "subject": "<person or request id>",
     "schemaversion": 1, "datacontenttype": "application/json", "data": {...}}

The Kafka key is ``subject``, so events about one thing land in one partition, in order.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from shared.clock import Clock, NotAnInstant, SystemClock, instant_from_iso

SPECVERSION = "1.0"
# Kafka's default message.max.bytes is ~1 MB; our events are small, so anything near that is
# a bug or an attack and goes to the dead-letter topic rather than into a handler.
MAX_EVENT_BYTES = 256 * 1024

_REQUIRED = ("specversion", "id", "type", "source", "time", "subject", "schemaversion", "data")


class InvalidEvent(Exception):
    """A message that is not a valid event; ``str()`` is the reason recorded in the DLQ."""


class OversizedEvent(InvalidEvent):
    """An event over :data:`MAX_EVENT_BYTES` (a builder may split what it holds and retry)."""


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    time: datetime
    subject: str
    data: dict[str, Any]
    schemaversion: int = 1
    specversion: str = SPECVERSION
    datacontenttype: str = field(default="application/json")

    def to_dict(self) -> dict[str, Any]:
        return {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": format_time(self.time),
            "subject": self.subject,
            "schemaversion": self.schemaversion,
            "datacontenttype": self.datacontenttype,
            "data": self.data,
        }

    def to_bytes(self) -> bytes:
        """The event on the wire: compact UTF-8 JSON (orjson: the points pipeline encodes
        thousands a second, ~18 times faster than the json module). Encoded at each call and
        not kept: whoever holds envelopes (an import's part, ~10,000 events) would hold their
        bytes too (51 MB of the requests service's peak, twentieth session)."""
        raw = orjson.dumps(self.to_dict())
        if b"null" in raw and _has_non_finite(self.data):
            # Infinity/NaN are not JSON (orjson writes null): refused, as the json module did.
            raise ValueError("Out of range float values are not JSON compliant")
        return raw

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    def without_data(self) -> "Envelope":
        """This envelope with empty ``data`` (a consumer that keeps only the typed payload).
        A copy of its fields, not ``dataclasses.replace``: that looks the fields up again for
        every copy, ~5 times the time, and an applier makes thousands a second."""
        clone = object.__new__(Envelope)
        clone.__dict__.update(self.__dict__)
        clone.__dict__.pop("_valid", None)  # validated as built (registry.mark_valid): not without its data
        clone.__dict__["data"] = {}
        return clone

    @classmethod
    def from_dict(cls, raw: Any) -> "Envelope":
        if not isinstance(raw, dict):
            raise InvalidEvent("envelope is not a JSON object")
        missing = [name for name in _REQUIRED if name not in raw]
        if missing:
            raise InvalidEvent(f"envelope lacks {', '.join(missing)}")
        if raw["specversion"] != SPECVERSION:
            raise InvalidEvent(f"unsupported specversion {raw['specversion']!r}")
        for name in ("id", "type", "source", "subject"):
            if not isinstance(raw[name], str) or not raw[name]:
                raise InvalidEvent(f"envelope {name} must be a non-empty string")
        if not isinstance(raw["schemaversion"], int) or isinstance(raw["schemaversion"], bool):
            raise InvalidEvent("envelope schemaversion must be an integer")
        if not isinstance(raw["data"], dict):
            raise InvalidEvent("envelope data must be a JSON object")
        return cls(
            id=raw["id"],
            type=raw["type"],
            source=raw["source"],
            time=parse_time(raw["time"]),
            subject=raw["subject"],
            data=raw["data"],
            schemaversion=raw["schemaversion"],
            datacontenttype=raw.get("datacontenttype", "application/json"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "Envelope":
        if raw is None:
            raise InvalidEvent("empty message (tombstone) where an event was expected")
        refuse_oversized(raw)
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:  # also invalid UTF-8, and NaN/Infinity, which are not JSON
            raise InvalidEvent(f"unparseable JSON: {exc}") from None
        return cls.from_dict(decoded)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False


def refuse_oversized(raw: bytes) -> bytes:
    """Return ``raw`` unless it is over :data:`MAX_EVENT_BYTES` (then raise InvalidEvent).

    Checked where an event is built (so no handler stores one), sent and read.
    """
    if len(raw) > MAX_EVENT_BYTES:
        raise OversizedEvent(f"message of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}")
    return raw


def format_time(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    # isoformat, not strftime: the same text ("2026-11-27T10:00:00.000000Z") in a third less time
    # (every event sent is formatted, thousands a second in the points pipeline).
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(value: Any) -> datetime:
    try:
        return instant_from_iso(value).astimezone(timezone.utc)
    except NotAnInstant as exc:
        raise InvalidEvent({"not_text": "envelope time must be an RFC 3339 string",
                            "not_iso": f"envelope time {value!r} is not RFC 3339",
                            "no_timezone": f"envelope time {value!r} has no timezone"}[exc.reason]) from None


# Event ids: random version-4 UUIDs from a generator seeded once per process from the system's
# entropy (again in a forked child). uuid.uuid4() reads os.urandom for every id, a system call
# that lets go of the GIL: in a busy process (the points applier writes ~1,300 state records a
# batch, with its insights and Kafka threads beside it) each one waited for the GIL to come
# back, and new_event_id took a sixth of the applier's time. An id needs to be unique, not
# secret: 122 random bits from a seeded Mersenne Twister are that.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_event_id() -> str:
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def make_envelope(
    type: str,
    subject: str,
    data: dict[str, Any],
    source: str,
    clock: Clock | None = None,
    schemaversion: int = 1,
    id: str | None = None,
) -> Envelope:
    """Build an envelope with a fresh id and the clock's time (no validation: see registry)."""
    return Envelope(
        id=id or new_event_id(),
        type=type,
        source=source,
        time=(clock or SystemClock()).now(),
        subject=subject,
        data=data,
        schemaversion=schemaversion,
    )
