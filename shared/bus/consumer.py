"""The consumer runner every service uses to react to events.

Delivery is at-least-once, so handlers must be idempotent (see ``shared.db.insert_once``).
For each message, in partition order:

1. decode and validate the envelope; a message that is not a valid event goes to the
   dead-letter topic ``<topic>.dlq`` at once, with the reason in its headers;
2. call the handler; when the database (or another dependency) is unreachable the same
   message is retried with backoff for as long as it takes (nothing is dead-lettered
   because of an outage); any other failure is retried ``consumer_max_attempts`` times,
   then dead-lettered with the reason;
3. commit the offset only after the handler returned (or the DLQ acknowledged the copy).

``stop()`` (wired to SIGTERM by ``shared.lifecycle``) finishes the message in hand, commits
and closes. An idle runner notices it at the end of its current poll, within ``POLL_MS``
(1 s); ``request_stop()`` asks without waiting, so a process with several runners asks them
all first and their last polls end together (``shared.serve.ServiceRuntime.stop``).

Idle costs little. Each poll waits up to ``POLL_MS`` and the broker holds each fetch up to
``FETCH_MAX_WAIT_MS`` (3 s) when there is nothing to read; both end the moment a record
arrives (``fetch_min_bytes`` is 1), so neither delays a delivery. With kafka-python's
defaults (a 200 ms poll, a 500 ms fetch wait) one idle runner cost about 1 % of a core: five
turns a second, each a handful of hand-offs to the client's IO thread, and two empty fetches
a second; now one turn a second and one fetch every 3 s, about 0.2 %. What runs once a turn
(the stop check, the commit retry, the membership check below) runs at least once a second.
Commits and heartbeats go over the client's own connection to the group coordinator, so a
fetch held by the broker does not hold them up.

kafka-python 3.0.12 can strand a group member "rebalancing" for ever. A rejoin asked for because
the metadata changed (every group asks once, just after its first join) runs as a background
task; when it takes longer than one poll (it did with 200 ms polls on a loaded machine), the task's own
assignment step records the new metadata, so the next poll sees no rejoin to do and nobody
collects the join's result. The client goes on fetching, every commit fails, heartbeats stop and
the broker drops the member. So a member that receives records while "rebalancing" (which a
client really rejoining never does) and is still not stable ``STRANDED_S`` later, or has not
been stable for ``consumer_rejoin_after_s`` (anything else that never settles), closes its Kafka
client and starts over with a new one. That loses nothing:
what was handled but not committed is redelivered to idempotent handlers.

A ``batch_handler`` gets every valid message of one poll at once (a list of :class:`Delivery`,
in partition order), so a handler can turn a thousand events into a few bulk writes. The same
rules hold for the batch: an outage retries it for as long as it takes; a failure retries it,
then the messages are handled one by one so only the one that fails is dead-lettered.

``gather_records`` lets a batch handler that is behind (a backlog: an import, a restart) take
larger batches than one poll: while polls bring at least a tenth of ``max_poll_records``, the
runner polls again and hands over up to that many messages at once (and up to ``gather_bytes``
of them, when given; with ``skip``, up to ``GATHER_HELD`` times as many in all, passed by or not). A handler that writes each
touched document once per batch (a read model of counters) then writes a fraction as often. A
poll under a tenth full means the handler is caught up: the batch goes at once, so nothing live
waits for more. (Full polls only were too strict: a poll returns what the last fetches brought,
256 KiB a partition, and behind a producer that is still writing, the points applier's polls
came back a third full, so it applied ~700 awards a batch instead of 5,000.)

``flush`` lets a batch handler keep what it is handed (a read model adding up counters: the
way a stream processor's commit interval works) and write it when the runner calls ``flush()``.
The runner then commits a batch's offsets only after the flush that follows it, and calls it
once ``flush_records`` messages are held or the first of them was handed over
``FLUSH_AFTER_S`` ago, after every batch that leaves it caught up (its partitions hold nothing
more, as the last fetches said: a live event is written at once), when a poll brings nothing,
before it starts over with a new client, and as it stops. A crash loses only what was held,
which is read again from the last commit. A flush that fails is tried again (an outage for as
long as it lasts); one that raises :class:`Replay` (what it held cannot be written as it is)
has let go of what it held, and the runner reads again from the last commit with a new client.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from shared.bus.kafka import EventProducer, kafka_reachable
from shared.config import Settings
from shared.db import is_transient
from shared.events import Envelope, EventSchema, InvalidEvent, decode, dlq_topic
from shared.memory import release_free_memory

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, EventSchema], None]


@dataclass(frozen=True)
class Delivery:
    """One valid event and where it was read from."""

    envelope: Envelope
    payload: EventSchema | None  # None for a runner with envelope_only
    topic: str
    partition: int
    offset: int


BatchHandler = Callable[[list[Delivery]], None]
MAX_BACKOFF_S = 5.0
POLL_MS = 1_000  # the longest one poll waits for records: a stop is seen within this when idle
FETCH_MAX_WAIT_MS = 3_000  # the longest the broker holds a fetch with nothing to return
# What one fetch brings per partition (kafka-python's default: 1 MiB). A process reads several
# topics of several partitions; behind, the fetched responses held ~18 MB of the points
# process's objects at their highest during a year's scoring (tracemalloc, 2026-11-30), and
# its heap keeps that high point. A poll takes at most a few thousand ~1 KB events anyway.
FETCH_PARTITION_BYTES = 256 * 1024
STRANDED_S = 1.0  # records while "rebalancing", still so this much later: kafka-python lost its join
COMMIT_TIMEOUT_MS = 10_000  # a commit that cannot finish now is tried again after the next poll
GATHER_POLL_MS = 200  # a backlog's next records are fetched already: a full poll comes at once
GATHER_SHARE = 10  # behind: a poll brought at least 1/GATHER_SHARE of max_poll_records (module docstring)
# With ``skip``, a gathered batch holds at most this many times gather_records messages in all,
# kept or passed by: insights, caught up on the events and behind on the awards it passes by,
# gathered polls of nothing but those (~1.7 KB each held) and peaked its process ~35 MB higher.
GATHER_HELD = 3
CLOSE_TIMEOUT_MS = 5_000  # leaving the group is a courtesy, not worth kafka-python's 30 s
FLUSH_AFTER_S = 10.0  # a handler that holds events (``flush``) writes them at least this often, however far behind


class TransientError(Exception):
    """Raised by a handler when a dependency is down: retry the message, never dead-letter it."""


class Replay(Exception):
    """Raised by a ``flush`` that let go of what it held: read again from the last commit."""


def _is_transient(exc: BaseException) -> bool:
    """An outage, not the message's fault: the database or Kafka (a handler that publishes)
    cannot be reached right now."""
    return (isinstance(exc, TransientError) or is_transient(exc)
            or (isinstance(exc, KafkaError) and bool(exc.retriable)))


TRIM_AFTER = 500  # deliveries in a poll from which the memory it freed is handed back (shared/memory.py)
TRIM_IDLE_EVERY_S = 10.0  # and once caught up after some work, at most this often (a trickle of events)


class ConsumerRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        group: str | None,
        topics: Iterable[str],
        handler: Handler | None = None,
        producer: EventProducer,
        batch_handler: BatchHandler | None = None,
        from_beginning: bool = True,
        max_poll_records: int = 200,
        max_poll_interval_ms: int = 300_000,
        gather_records: int | None = None,
        gather_bytes: int | None = None,
        payload_only: bool = False,
        envelope_only: bool = False,
        skip: Callable[[Any], bool] | None = None,
        flush: Callable[[], None] | None = None,
        flush_records: int | None = None,
    ):
        self.settings = settings
        # No group: read every partition (from the start if from_beginning) on every start,
        # commit nothing. For local copies of a compacted topic (the people directory).
        self.group = settings.topic(group) if group else None
        self.topics = [settings.topic(t) for t in topics]
        if (handler is None) == (batch_handler is None):
            raise ValueError("give a consumer either a handler or a batch_handler")
        self.handler = handler
        self.batch_handler = batch_handler
        self.producer = producer
        self.from_beginning = from_beginning
        self.max_poll_records = max_poll_records
        # How long a batch may take before the group drops the member (kafka-python's default, 300 s).
        self.max_poll_interval_ms = max_poll_interval_ms
        # Behind, batches of up to this many messages (several polls); None: one poll.
        self.gather_records = gather_records if batch_handler is not None else None
        # And of up to this many bytes of messages (None: no bound but the count): a handler whose
        # messages each hold a varying number of items (a person's awards) bounds what it holds.
        self.gather_bytes = gather_bytes
        # Handlers that read only the payload (and the envelope's type, time, id), or only the
        # envelope (its data as it came): see _delivery.
        if payload_only and envelope_only:
            raise ValueError("a consumer keeps the payload, the envelope's data, or both")
        self.payload_only = payload_only
        self.envelope_only = envelope_only
        # Messages this says yes to are neither decoded nor handled (a group-less reader's own
        # records, which its process holds already: the points state's changelog).
        self.skip = skip
        # A batch handler that holds what it is handed until flush() (module docstring): the
        # offsets of the batches held, how many messages, since when, and per partition handled
        # the next offset (to tell whether the partitions hold more).
        if flush is not None and batch_handler is None:
            raise ValueError("only a batch handler holds events until a flush")
        self.flush = flush
        self.flush_records = flush_records or max_poll_records
        self._held: dict[TopicPartition, int] = {}
        self._held_count = 0
        self._held_since = 0.0
        self._next: dict[TopicPartition, int] = {}  # per partition handled: the next offset to read
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        # Counters for logs, tests and readiness.
        self.processed = 0
        self._processed_at_trim, self._trimmed_at = 0, 0.0  # when freed memory was last given back
        self.dead_lettered = 0
        self.dependency_down: str | None = None
        self.assigned = threading.Event()
        self.caught_up = threading.Event()  # group-less readers: the start-time backlog is read
        self._end_offsets: dict | None = None
        self._unsettled_since: float | None = None
        self._stranded_since: float | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # handled, commit failed: tried again
        self._commit_failing_since: float | None = None
        self.restarts = 0  # clients replaced because the group membership never settled

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the runner to stop (it finishes its message and poll, commits, closes); no wait."""
        self._stopping.set()

    def stop(self, timeout: float = 30) -> None:
        """Ask the runner to stop and wait until it has."""
        self.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Consume until ``stop()``; commits what was handled, then closes."""
        try:
            consumer = self._open()
            while consumer is not None and not self._stopping.is_set():
                batch = consumer.poll(timeout_ms=POLL_MS)
                if consumer.assignment():
                    self.assigned.set()
                if (not batch and self.processed != self._processed_at_trim
                        and time.monotonic() - self._trimmed_at >= TRIM_IDLE_EVERY_S):
                    # Caught up after some work: what it freed goes back to the system now, not
                    # at the next big poll (an idle process stays at its live size).
                    self._trim()
                self._commit_pending(consumer)
                if self._never_settles(consumer, fetched=bool(batch)):
                    consumer = self._start_over(consumer)
                    continue
                if self.batch_handler is not None:
                    batch = self._gather(consumer, batch)
                    polled = bool(batch)  # (_handle_batch empties a big one as it lets go of it)
                    if polled and not self._handle_batch(consumer, batch):
                        break  # stopping in the middle of a retry: leave it for the next run
                    if self._held and (not polled or self._held_count >= self.flush_records or not self._lagging(consumer)
                                       or time.monotonic() - self._held_since >= FLUSH_AFTER_S):
                        flushed = self._flush(consumer)
                        if flushed is None:
                            break  # stopping while the flush waits out an outage
                        if not flushed:
                            consumer = self._start_over(consumer, "what was held is read again from the last commit")
                            continue
                    self._check_caught_up(consumer)
                    continue
                for tp, messages in batch.items():
                    done = None
                    for message in messages:
                        if not self._handle(message):
                            break  # stopping in the middle of a retry: leave it for the next run
                        done = message.offset
                    if done is not None:
                        self._commit(consumer, {tp: done + 1})
                    if self._stopping.is_set():
                        break
                self._check_caught_up(consumer)
        finally:
            if self._consumer is not None:  # the newest client, if _start_over replaced one
                if self._held:
                    self._flush(self._consumer)  # once: a stop does not wait out an outage
                self._commit_pending(self._consumer)
                self._consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
            log.info(
                "consumer stopped",
                extra={"group": self.group, "processed": self.processed, "dead_lettered": self.dead_lettered},
            )

    def _gather(self, consumer: KafkaConsumer, batch: dict) -> dict:
        """More polls while they come back at least a tenth full (behind), up to
        ``gather_records`` messages in all, not counting those ``skip`` passes by (a batch's
        cost is in the messages it handles: insights passes most awards by)."""
        if not self.gather_records:
            return batch
        last = held = sum(len(messages) for messages in batch.values())
        count, size = self._kept(batch), self._size(batch)
        while (last * GATHER_SHARE >= self.max_poll_records and count < self.gather_records
               and (self.skip is None or held < GATHER_HELD * self.gather_records)
               and (self.gather_bytes is None or size < self.gather_bytes) and not self._stopping.is_set()):
            # With skip, a poll's size says little about what it keeps: whole polls (a batch
            # may end up to one poll over gather_records).
            wanted = self.max_poll_records if self.skip else min(self.max_poll_records, self.gather_records - count)
            more = consumer.poll(timeout_ms=GATHER_POLL_MS, max_records=wanted)
            last = sum(len(messages) for messages in more.values())
            held += last
            for tp, messages in more.items():
                batch.setdefault(tp, []).extend(messages)
            count, size = count + self._kept(more), size + self._size(more)
        return batch

    def _size(self, batch: dict) -> int:
        """The bytes of a poll's messages (when ``gather_bytes`` bounds a batch)."""
        if self.gather_bytes is None:
            return 0
        return sum(len(m.value or b"") for messages in batch.values() for m in messages)

    def _kept(self, batch: dict) -> int:
        """How many of a poll's messages are handled (not passed by with ``skip``)."""
        if self.skip is None:
            return sum(len(messages) for messages in batch.values())
        return sum(1 for messages in batch.values() for m in messages if not self.skip(m))

    def _open(self) -> KafkaConsumer | None:
        """A new Kafka client, subscribed (a group) or assigned every partition (no group).
        While Kafka cannot be reached it keeps trying; None only when stopped meanwhile."""
        attempt = 0
        while True:
            try:
                # A TCP probe first: kafka-python leaks its sockets when it fails to bootstrap.
                kafka_reachable(self.settings)
                consumer = KafkaConsumer(
                    bootstrap_servers=self.settings.kafka_servers,
                    group_id=self.group,
                    client_id=self.group or f"{self.topics[0]}-reader",
                    enable_auto_commit=False,
                    auto_offset_reset="earliest" if self.from_beginning else "latest",
                    max_poll_records=self.max_poll_records,
                    max_poll_interval_ms=self.max_poll_interval_ms,
                    # A member that died is noticed within seconds, so its partitions move on quickly.
                    session_timeout_ms=10_000,
                    heartbeat_interval_ms=3_000,
                    # New partitions (a topic grown for more consumers) are noticed within 30 s.
                    metadata_max_age_ms=30_000,
                    # An idle topic costs one empty fetch every 3 s, not two a second; a record
                    # that arrives ends the broker's wait at once (module docstring).
                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                    max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
                )
                break
            except (ConnectionError, KafkaError) as exc:  # no broker answers (yet): wait it out
                attempt += 1
                self.dependency_down = f"{type(exc).__name__}: {exc}"
                log.warning("kafka unreachable, will retry", extra={"group": self.group, "error": self.dependency_down})
                if not self._backoff(attempt):
                    return None
        self.dependency_down = None
        self._consumer = consumer
        self._unsettled_since = self._stranded_since = None
        partitions = self._wait_for_topics(consumer)
        if self.group:
            # Only once the client knows the topics' partitions: a group joined before that
            # would be assigned nothing until the next metadata refresh.
            consumer.subscribe(self.topics)
            # Then one metadata round trip, so the group's first join already sees the subscribed
            # topics: otherwise kafka-python notices them just after that join and rejoins at
            # once, the rejoin that can strand it (above).
            consumer.topics()
        else:
            self._assign_all(consumer, partitions)
        log.info("consumer started", extra={"group": self.group, "topics": self.topics})
        return consumer

    def _never_settles(self, consumer: KafkaConsumer, fetched: bool) -> bool:
        """True when this group member is stranded: it received records while "rebalancing" (a
        client that is really rejoining returns none) and is still not stable a second later, or
        it has not been stable for ``consumer_rejoin_after_s``."""
        state = consumer.group_metadata().state if self.group else MemberState.STABLE
        if state == MemberState.STABLE:
            self._unsettled_since = self._stranded_since = None
            return False
        now = time.monotonic()
        if self._unsettled_since is None:
            self._unsettled_since = now
        if fetched and state == MemberState.REBALANCING and self._stranded_since is None:
            self._stranded_since = now
        if self._stranded_since is not None and now - self._stranded_since >= STRANDED_S:
            return True
        return now - self._unsettled_since >= self.settings.consumer_rejoin_after_s

    def _start_over(self, consumer: KafkaConsumer, why: str = "group membership is stranded") -> KafkaConsumer | None:
        """Close a client (its group membership never settles, or what was held is to be read
        again) and open a new one, which reads from the last commit."""
        self.restarts += 1
        log.warning(f"{why}; starting over with a new Kafka client",
                    extra={"group": self.group, "state": consumer.group_metadata().state,
                           "unsettled_s": round(time.monotonic() - (self._unsettled_since or time.monotonic()), 1),
                           "restarts": self.restarts})
        # The new client starts from the committed offsets: what a handler holds is written
        # first (its offsets may not be committed: the events come again and are passed by).
        if self._held:
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - a handler that still holds events passes them by when they come again
                log.warning("a flush before starting over failed", extra={"group": self.group, "error": repr(exc)})
        self._consumer, self._uncommitted, self._held, self._held_count, self._next = None, {}, {}, 0, {}
        try:
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
        except Exception as exc:  # noqa: BLE001 - the old client is abandoned either way
            log.warning("closing the unsettled Kafka client failed", extra={"group": self.group, "error": repr(exc)})
        return self._open()

    def _wait_for_topics(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        partitions = []
        for topic in self.topics:
            while not self._stopping.is_set():
                found = consumer.partitions_for_topic(topic)
                if found:
                    partitions.extend(TopicPartition(topic, p) for p in sorted(found))
                    break
                log.info("waiting for topic", extra={"topic": topic})
                self._stopping.wait(0.5)  # not there yet (Kafka starting, topics being created)
        return partitions

    def _assign_all(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self.from_beginning:
            consumer.seek_to_beginning(*partitions)
        else:
            consumer.seek_to_end(*partitions)
        self._end_offsets = consumer.end_offsets(partitions) if partitions else {}
        self.assigned.set()
        self._check_caught_up(consumer)

    def _check_caught_up(self, consumer: KafkaConsumer) -> None:
        """Set ``caught_up`` once everything that was in the topics at start has been read."""
        if self.caught_up.is_set() or self._end_offsets is None:
            return
        if all(consumer.position(tp) >= end for tp, end in self._end_offsets.items()):
            self.caught_up.set()

    def _lagging(self, consumer: KafkaConsumer) -> bool:
        """Whether a partition this runner has read holds more than it has handled, as the
        broker's last fetch responses say (kafka-python's ``highwater``: no request of its own)."""
        for tp, following in self._next.items():
            try:
                end = consumer.highwater(tp)
            except KafkaError:  # not ours any more
                continue
            if end is not None and end > following:
                return True
        return False

    def _flush(self, consumer: KafkaConsumer) -> bool | None:
        """Have the handler write what it holds, then commit the offsets held: True; False when
        it raised Replay; None when stopping while a failed flush waits to be tried again."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self.flush()
                break
            except Replay as exc:
                log.warning("a flush let go of what it held", extra={"group": self.group, "reason": str(exc)})
                return False
            except Exception as exc:  # noqa: BLE001 - nothing is committed until it succeeds
                if _is_transient(exc):
                    self.dependency_down = f"{type(exc).__name__}: {exc}"
                    log.warning("dependency down during a flush, will retry", extra={"group": self.group, "error": self.dependency_down})
                else:
                    log.error("flush failed, will retry", extra={"group": self.group, "attempt": attempt, "error": repr(exc)})
                if not self._backoff(attempt):
                    return None
        self.dependency_down = None
        held, self._held, self._held_count = self._held, {}, 0
        self._commit(consumer, held)
        return True

    def _commit(self, consumer: KafkaConsumer, offsets: dict) -> None:
        """Commit ``{partition: next offset to read}`` (nothing for a group-less reader)."""
        if self.group is None or not offsets:
            return
        self._uncommitted.update(offsets)
        self._commit_pending(consumer)

    def _commit_pending(self, consumer: KafkaConsumer) -> None:
        """Commit what was handled and not yet committed. A commit that fails (the group is
        rebalancing) is tried again after each poll while the partition stays ours; a partition
        given away meanwhile is its new owner's to redo (idempotent handlers make that harmless).
        Without this, messages handled during a rebalance stayed uncommitted until the next
        message on their partition, which on a quiet topic never comes."""
        if not self._uncommitted:
            return
        owned = consumer.assignment()
        self._uncommitted = {tp: offset for tp, offset in self._uncommitted.items() if tp in owned}
        if not self._uncommitted:
            return
        try:
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items()},
                            timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            if self._commit_failing_since is None:
                self._commit_failing_since = time.monotonic()
                log.warning("commit failed; will try again", extra={"group": self.group, "error": repr(exc)})
            return
        self._uncommitted = {}
        if self._commit_failing_since is not None:
            log.info("commit succeeded again", extra={
                "group": self.group, "failing_s": round(time.monotonic() - self._commit_failing_since, 1)})
            self._commit_failing_since = None

    def start(self) -> threading.Thread:
        """Run in a background thread (``stop()`` then joins it)."""
        self._thread = threading.Thread(target=self.run, name=f"consumer-{self.group or self.topics[0]}", daemon=True)
        self._thread.start()
        return self._thread

    def _trim(self) -> None:
        release_free_memory()
        self._processed_at_trim, self._trimmed_at = self.processed, time.monotonic()

    # -- one message -------------------------------------------------------------------------

    def _handle(self, message) -> bool:
        """Process one message to completion; False only if stopping interrupted its retries."""
        if self.skip is not None and self.skip(message):
            return True
        try:
            delivery = self._delivery(message)
        except InvalidEvent as exc:
            return self._dead_letter(message, f"invalid event: {exc}")
        return self._run([(message, delivery)])

    def _delivery(self, message) -> Delivery:
        """The message decoded and validated (raises InvalidEvent). With ``payload_only``, the
        envelope keeps no copy of the raw data: the payload holds it (a gathered award held 4.1 KB
        of Python objects, 2.7 KB without that copy)."""
        envelope, payload = decode(message.value)
        if self.payload_only:
            envelope = envelope.without_data()
        elif self.envelope_only:
            # Validated, then let go: the scorer reads the data as it came, and a gathered
            # batch of 5,000 source events held each one's data twice (14 MB of typed payloads
            # at the scoring process's peak while a company-year was scored, memray).
            payload = None
        return Delivery(envelope, payload, message.topic, message.partition, message.offset)

    def _call(self, deliveries: list[Delivery]) -> None:
        if self.batch_handler is not None:
            self.batch_handler(deliveries)
            return
        [one] = deliveries
        self.handler(one.envelope, one.payload)

    def _handle_batch(self, consumer: KafkaConsumer, batch) -> bool:
        """Handle one poll's messages with the batch handler; commit them all. False if stopped."""
        deliveries = []
        for tp, messages in batch.items():
            for message in messages:
                if self.skip is not None and self.skip(message):
                    continue
                try:
                    deliveries.append((message, self._delivery(message)))
                except InvalidEvent as exc:
                    if not self._dead_letter(message, f"invalid event: {exc}"):
                        return False
        if deliveries and not self._run(deliveries):
            return False
        offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items() if messages}
        if self.flush is None:
            self._commit(consumer, offsets)
        else:  # committed after the flush that writes what the handler holds of them
            if not self._held:
                self._held_since = time.monotonic()
            self._held.update(offsets)
            self._next.update(offsets)
            self._held_count += len(deliveries)
        if len(deliveries) >= TRIM_AFTER:
            # A big poll's peak does not stay as the process's size: its messages and deliveries
            # let go first (the caller's ``batch`` is this dict: emptied, not only unnamed here).
            batch.clear()
            deliveries.clear()
            self._trim()
        return True

    def _run(self, deliveries: list[tuple[object, Delivery]]) -> bool:
        """Hand ``deliveries`` to the handler until it succeeds; False only if stopping interrupted.

        An outage (a transient error) is retried for as long as it takes, with growing pauses.
        Any other failure is retried ``consumer_max_attempts`` times; then one message is
        dead-lettered with the reason, and a batch is handled one message at a time (the
        handler is idempotent) so that only the culprit is dead-lettered.
        """
        event_id = deliveries[0][1].envelope.id if len(deliveries) == 1 else None
        attempt = outage = 0
        while True:
            attempt += 1
            try:
                self._call([d for _, d in deliveries])
                self.processed += len(deliveries)
                self.dependency_down = None
                return True
            except Exception as exc:  # noqa: BLE001 - every failure is either retried or dead-lettered
                if _is_transient(exc):
                    self.dependency_down = f"{type(exc).__name__}: {exc}"
                    log.warning("dependency down, will retry",
                                extra={"group": self.group, "event_id": event_id, "error": self.dependency_down})
                    attempt = 0  # an outage is not the message's fault
                    outage += 1
                elif isinstance(exc, InvalidEvent) or attempt >= self.settings.consumer_max_attempts:
                    if len(deliveries) > 1:
                        log.warning("batch failed; handling its messages one by one",
                                    extra={"group": self.group, "size": len(deliveries), "error": repr(exc)})
                        return all(self._run([one]) for one in deliveries)
                    reason = (f"invalid event: {exc}" if isinstance(exc, InvalidEvent)
                              else f"handler failed after {attempt} attempts: {type(exc).__name__}: {exc}")
                    return self._dead_letter(deliveries[0][0], reason)
                else:
                    log.warning("handler failed, will retry",
                                extra={"group": self.group, "event_id": event_id, "attempt": attempt, "error": repr(exc)})
                if not self._backoff(max(attempt, outage)):  # longer pauses while an outage lasts
                    return False

    def _backoff(self, attempt: int) -> bool:
        delay = min(MAX_BACKOFF_S, self.settings.consumer_backoff_ms / 1000 * 2 ** max(attempt - 1, 0))
        return not self._stopping.wait(max(delay, 0.05))

    def _dead_letter(self, message, reason: str) -> bool:
        headers = list(message.headers or []) + [
            ("dlq.reason", reason[:2000].encode()),
            ("dlq.topic", message.topic.encode()),
            ("dlq.partition", str(message.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
            ("dlq.group", (self.group or "-").encode()),
            ("dlq.time", datetime.now(timezone.utc).isoformat().encode()),
        ]
        attempt = 0
        while True:
            attempt += 1
            try:
                self.producer.send_raw(dlq_topic(message.topic), message.key, message.value, headers)
                break
            except Exception as exc:  # noqa: BLE001 - the DLQ must not lose the message either
                log.error("dead-letter publish failed, will retry", extra={"error": repr(exc)})
                if not self._backoff(attempt):
                    return False
        self.dead_lettered += 1
        log.warning(
            "message dead-lettered",
            extra={"group": self.group, "topic": message.topic, "offset": message.offset, "reason": reason},
        )
        return True
