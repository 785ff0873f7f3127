"""The points applier's state in memory, its changelog in Kafka: a stream processor's table.

Each person's totals per period (with the department and role they were counted in), their
badge progress and the last award offset applied per ``points`` partition live in memory, in a
:class:`PointsTable`. The applier works a batch out there and writes each person it changed as
one ``points.state`` record (topic ``points-state``, compacted, keyed by the person), waits for
the broker, and only then goes on to the boards and the ledger and commits its offsets. So a
batch costs one Kafka record per touched person instead of a FerretDB update per person,
period and bucket (~4,000 a batch of this week's awards, 0.75 ms each: the pipeline's main cost
before, docs/performance.md).

Every points process holds the whole table: a group-less reader (:func:`state_reader`) reads
the topic from the start when the process starts (the restore; compaction keeps one record per
person) and then follows it. Reads (a person's points, "my rank", badge progress) are answered
from memory by whichever process is asked. A record carries the person's change count ``n``: a
copy holds the newest it has seen, so the reader's late copy of a record this process wrote
itself changes nothing; the reader passes those by their offsets without decoding them
(:meth:`PointsTable.own_record`: the applier's process decoded each of its ~1,300 records a
batch a second time, 9 % of a core while a backlog was applied).

One writer per person: the member of ``points-apply`` that owns the person's partition. After
the group moves a partition (a member joined, left or died), the new owner's copy may lack the
records the old owner wrote last; before each batch the applier asks the broker for the
topic's end offsets and, where a partition holds records this process did not write and has
not read yet, waits for its reader (:meth:`PointsTable.ensure_current`). A restarted process
does the same on its first batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

import orjson

from shared.bus.consumer import ConsumerRunner, Delivery
from shared.bus.kafka import EventProducer
from shared.config import Settings
from shared.events import build_event
from shared.events.schemas import PointsState

log = logging.getLogger(__name__)
TOPIC = "points-state"
CATCH_UP_TIMEOUT_S = 120.0  # the longest a batch waits for the reader to read another owner's records
SOURCE = "points"
WRITE_CHUNK = 250  # changelog records sent before waiting for the broker (PointsTable.write)
RESTORE_POLL = 1000  # records the reader decodes at a time (a restore reads every person's)


class PersonState:
    """A person's totals (``key -> [points, department, role]``), badge progress, applied
    offsets and ledger index. The progress is kept as its JSON text (as the changelog carries
    it): a nested structure per person that is read only when the person's badges move or are
    asked for (as objects it was a large part of what a company's table held in memory)."""

    __slots__ = ("person_id", "n", "totals", "progress_json", "applied", "ledger")

    def __init__(self, person_id: str, n: int = 0, totals: dict[str, list] | None = None,
                 progress: dict[str, Any] | None = None, applied: dict[str, int] | None = None,
                 ledger: dict[str, Any] | None = None, progress_json: str | None = None):
        self.person_id = person_id
        self.n = n
        self.totals = totals if totals is not None else {}
        self.progress_json = progress_json
        if progress is not None:
            self.progress = progress
        self.applied = applied if applied is not None else {}
        self.ledger = ledger if ledger is not None else {}

    @property
    def progress(self) -> dict[str, Any]:
        """The badges' progress (a fresh copy: changing it changes nothing here until set)."""
        return orjson.loads(self.progress_json) if self.progress_json else {}

    @progress.setter
    def progress(self, value: dict[str, Any]) -> None:
        self.progress_json = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode() if value else None

    def copy(self) -> "PersonState":
        return PersonState(self.person_id, self.n, {k: list(v) for k, v in self.totals.items()}, applied=dict(self.applied),
                           ledger=self.ledger, progress_json=self.progress_json)

    def points(self, key: str) -> int:
        return int((self.totals.get(key) or (0,))[0])

    def record(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "n": self.n, "totals": {k: tuple(v) for k, v in self.totals.items()},
                "progress": self.progress_json, "applied": self.applied, "ledger": self.ledger}

    @classmethod
    def of(cls, data: PointsState) -> "PersonState":
        return cls(data.person_id, data.n, {k: list(v) for k, v in data.totals.items()}, applied=dict(data.applied),
                   ledger=dict(data.ledger), progress_json=data.progress or None)


class PointsTable:
    """Everyone's points state, in memory; written through the changelog (``producer``), or
    only here when there is none (a rebuild builds it in memory and publishes it at the end)."""

    def __init__(self, settings: Settings | None = None, producer: EventProducer | None = None,
                 end_offsets: Callable[[], dict[int, int]] | None = None):
        self.settings = settings
        self.producer = producer
        self._end_offsets = end_offsets or (self._broker_end_offsets if producer is not None else None)
        self._people: dict[str, PersonState] = {}
        self._lock = threading.Lock()
        self._read = threading.Condition(self._lock)
        self._position: dict[int, int] = {}  # partition -> the offset after the last record read
        self._written: dict[int, int] = {}   # partition -> the offset after the last record this process wrote
        # partition -> offsets of records this process wrote that its reader has not reached:
        # the reader skips them unread (own_record), as their states are here already.
        self._own: dict[int, deque[int]] = {}
        self._offsets_client = None

    # -- reads ------------------------------------------------------------------------------------

    def get(self, person_id: str) -> PersonState | None:
        return self._people.get(person_id)

    def __len__(self) -> int:
        return len(self._people)

    def people(self) -> list[PersonState]:
        return list(self._people.values())

    def totals_with_scope(self, person_id: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """A person's ``points`` in each key (0 where none), with the ``department`` and ``role``
        they were counted in there (None where they have no points)."""
        state = self._people.get(person_id)
        out = {}
        for key in keys:
            points, department, role = (state.totals.get(key) if state else None) or (0, None, None)
            out[key] = {"points": int(points), "department": department, "role": role}
        return out

    def totals_of(self, person_id: str, keys: Iterable[str]) -> dict[str, int]:
        return {key: total["points"] for key, total in self.totals_with_scope(person_id, keys).items()}

    def key_totals(self, key: str) -> dict[str, int]:
        """Everyone with points in a period key."""
        return {pid: state.points(key) for pid, state in list(self._people.items()) if state.points(key)}

    def progress_of(self, person_id: str) -> dict[str, Any]:
        state = self._people.get(person_id)
        return state.progress if state else {}

    # -- writes -----------------------------------------------------------------------------------

    def write(self, states: Iterable[PersonState]) -> None:
        """Make these changed states the people's own: one changelog record each, acknowledged by
        the broker before they are used here (a crash before that leaves the old states, and
        the batch is delivered again)."""
        states = list(states)
        if not states:
            return
        for state in states:
            state.n += 1
        sent = []
        if self.producer is not None:
            # Each record built, sent (its bytes copied into the client's batch) and let go
            # before the next, WRITE_CHUNK at a time: a backlog's batch changes ~2,000 people,
            # and a year's record is 10-26 KB (badge evidence). A thousand records built at
            # once were 26 MB of the applier's 165 MB peak while a company-year was applied.
            for start in range(0, len(states), WRITE_CHUNK):
                sent += self.producer.publish_all(build_event("points.state", state.person_id, state.record(), source=SOURCE)
                                                  for state in states[start:start + WRITE_CHUNK])
        with self._lock:
            for state in states:
                self._put(state)
            for meta in sent:  # in the order sent: offsets rise per partition
                self._written[meta.partition] = max(self._written.get(meta.partition, 0), meta.offset + 1)
                self._own.setdefault(meta.partition, deque()).append(meta.offset)

    def write_totals(self, key: str, entries: dict[str, tuple[int, str | None, str | None]]) -> None:
        """Set people's totals in one period key (``person -> (points, department, role)``),
        written like a batch's: seeding a store (a bench, a test)."""
        states = []
        for person_id, total in entries.items():
            state = self._people.get(person_id)
            state = state.copy() if state is not None else PersonState(person_id)
            state.totals[key] = list(total)
            states.append(state)
        self.write(states)

    def _put(self, state: PersonState) -> None:
        mine = self._people.get(state.person_id)
        if mine is None or state.n >= mine.n:
            self._people[state.person_id] = state

    # -- the reader -------------------------------------------------------------------------------

    def apply(self, deliveries: list[Delivery]) -> None:
        """Records read from the changelog (any writer's, this process's own included)."""
        with self._read:
            for delivery in deliveries:
                if isinstance(delivery.payload, PointsState):
                    self._put(PersonState.of(delivery.payload))
                self._position[delivery.partition] = max(self._position.get(delivery.partition, 0), delivery.offset + 1)
            self._read.notify_all()

    def own_record(self, message) -> bool:
        """Whether a changelog record the reader meets is one this process wrote (and holds
        already): then it is not decoded, only passed. Offsets before it that are still listed
        were read before their write was acknowledged here: let go."""
        with self._read:
            own = self._own.get(message.partition)
            while own and own[0] < message.offset:
                own.popleft()
            if not own or own[0] != message.offset:
                return False
            own.popleft()
            self._position[message.partition] = max(self._position.get(message.partition, 0), message.offset + 1)
            self._read.notify_all()
            return True

    def load(self, records: Iterable[PointsState]) -> None:
        """States read in one go (a rebuild's or an upgrade's look at the topic)."""
        with self._lock:
            for data in records:
                if isinstance(data, PointsState):
                    self._put(PersonState.of(data))

    def ensure_current(self, timeout: float = CATCH_UP_TIMEOUT_S) -> None:
        """Wait until every record another writer put in the changelog is in this copy (see the
        module docstring); returns at once when only this process wrote since it last read."""
        if self._end_offsets is None:
            return
        ends = self._end_offsets()
        deadline = time.monotonic() + timeout
        with self._read:
            while True:
                behind = {p: end for p, end in ends.items()
                          if end > self._written.get(p, 0) and self._position.get(p, 0) < end}
                if not behind:
                    return
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the points state reader is behind on partitions {sorted(behind)}")
                self._read.wait(0.5)

    def _broker_end_offsets(self) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        if self._offsets_client is None:
            self._offsets_client = KafkaConsumer(bootstrap_servers=self.settings.kafka_servers, enable_auto_commit=False,
                                                 client_id="points-state-offsets")
        topic = self.settings.topic(TOPIC)
        partitions = [TopicPartition(topic, p) for p in sorted(self._offsets_client.partitions_for_topic(topic) or [])]
        return {tp.partition: end for tp, end in self._offsets_client.end_offsets(partitions).items()}

    def close(self) -> None:
        if self._offsets_client is not None:
            self._offsets_client.close()
            self._offsets_client = None


def state_reader(settings: Settings, table: PointsTable, producer: EventProducer) -> ConsumerRunner:
    """The group-less reader that restores the table on start and follows the changelog
    (``caught_up``: what the topic held at the start is read)."""
    return ConsumerRunner(settings, group=None, topics=[TOPIC], batch_handler=table.apply, producer=producer,
                          max_poll_records=RESTORE_POLL, payload_only=True, skip=table.own_record)


def read_table(settings: Settings) -> PointsTable:
    """The points state as the changelog holds it now (a look from outside the points process:
    a rebuild, the operator's tools, tests)."""
    from services.recognition.points.rebuild import read_topics

    table = PointsTable()
    table.load(data for _, data in read_topics(settings, [TOPIC])[0])
    return table


def publish_all_states(producer: EventProducer, states: Iterable[PersonState], before: dict[str, int]) -> int:
    """Publish a whole table (a rebuild's, an upgrade's): each person's record numbered after
    the copy the topic holds (``before``: person -> n), and an empty record for each person the
    topic has that the new table lacks, so every reader ends with exactly the new table."""
    records, seen = [], set()
    for state in states:
        seen.add(state.person_id)
        state.n = before.get(state.person_id, 0) + 1
        records.append(build_event("points.state", state.person_id, state.record(), source=SOURCE))
    for person_id, n in before.items():
        if person_id not in seen:
            records.append(build_event("points.state", person_id, PersonState(person_id, n + 1).record(), source=SOURCE))
    for start in range(0, len(records), 2000):
        producer.publish_all(records[start:start + 2000])
    return len(records)
