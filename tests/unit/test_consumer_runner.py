"""The consumer runner without a broker: an outage is retried with growing pauses (never
dead-lettered), a consumer started before Kafka waits for it, a failed commit is tried again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.bus.consumer import MAX_BACKOFF_S, ConsumerRunner, TransientError
from shared.config import load_settings
from shared.events import build_event


def _message():
    event = build_event("person.upserted", "p1", {"person_id": "p1", "email": "p1@example.com", "name": "P One",
                                                  "role": "rep", "department": "sales"}, source="test")
    return SimpleNamespace(value=event.to_bytes(), key=b"p1", topic="people", partition=0, offset=0, headers=[])


def _kudos_message(offset: int):
    """A kudos.given message at ``offset`` of partition 0 of the kudos topic."""
    event = build_event("kudos.given", f"k{offset}", {
        "kudos_id": f"k{offset}", "giver_id": "p1", "recipient_ids": ["p2"], "message": "thanks", "values": [],
        "gesture": "thanks", "request_id": None, "at": "2026-11-27T09:00:00Z"}, source="test")
    return SimpleNamespace(value=event.to_bytes(), key=b"k", topic="kudos", partition=0, offset=offset, headers=[])


def _pauses_during_an_outage(failures: int, error: Exception = TransientError("database unreachable")) -> list[float]:
    """The pauses a consumer takes while its handler reports a dependency down ``failures`` times."""
    settings = load_settings(env={"INSIDETRACK_CONSUMER_BACKOFF_MS": "100"})
    calls = {"n": 0}

    def handler(envelope, data) -> None:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error

    runner = ConsumerRunner(settings, group="g", topics=["people"], handler=handler, producer=None)
    pauses: list[float] = []
    runner._stopping = SimpleNamespace(wait=lambda seconds: pauses.append(seconds) or False, is_set=lambda: False)
    assert runner._handle(_message()) is True
    assert runner.dead_lettered == 0  # an outage is not the message's fault
    return pauses


def test_an_outage_is_retried_with_exponential_backoff_up_to_the_cap():
    pauses = _pauses_during_an_outage(8)
    assert len(pauses) == 8
    assert pauses == sorted(pauses) and pauses[-1] > pauses[0]  # growing
    assert max(pauses) <= MAX_BACKOFF_S


def test_a_batch_consumer_backs_off_the_same_way_and_dead_letters_nothing_for_an_outage():
    from shared.bus.consumer import Delivery
    from shared.events import decode

    settings = load_settings(env={"INSIDETRACK_CONSUMER_BACKOFF_MS": "100"})
    calls = {"n": 0}

    def handler(deliveries) -> None:
        calls["n"] += 1
        if calls["n"] <= 8:
            raise TransientError("database unreachable")

    runner = ConsumerRunner(settings, group="g", topics=["people"], batch_handler=handler, producer=None)
    pauses: list[float] = []
    runner._stopping = SimpleNamespace(wait=lambda seconds: pauses.append(seconds) or False, is_set=lambda: False)
    message = _message()
    envelope, payload = decode(message.value)
    assert runner._run([(message, Delivery(envelope, payload, "people", 0, 0))]) is True
    assert runner.processed == 1 and runner.dead_lettered == 0
    assert len(pauses) == 8 and pauses == sorted(pauses) and pauses[-1] > pauses[0] and max(pauses) <= MAX_BACKOFF_S


def test_kafka_away_while_a_handler_publishes_is_an_outage_not_poison():
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    for error in (KafkaTimeoutError("Failed to update metadata after 10.0 secs."), KafkaConnectionError("refused")):
        assert len(_pauses_during_an_outage(6, error)) == 6  # retried as long as it lasts, nothing dead-lettered


def test_a_handler_bug_is_still_dead_lettered_after_its_attempts():
    settings = load_settings(env={"INSIDETRACK_CONSUMER_BACKOFF_MS": "100", "INSIDETRACK_CONSUMER_MAX_ATTEMPTS": "3"})
    sent = []

    def handler(envelope, data) -> None:
        raise ValueError("a bug")

    producer = SimpleNamespace(send_raw=lambda topic, key, value, headers: sent.append((topic, dict(headers))))
    runner = ConsumerRunner(settings, group="g", topics=["people"], handler=handler, producer=producer)
    runner._stopping = SimpleNamespace(wait=lambda seconds: False, is_set=lambda: False)
    assert runner._handle(_message()) is True
    assert runner.dead_lettered == 1 and b"ValueError" in sent[0][1]["dlq.reason"]


def test_a_consumer_started_while_kafka_is_down_keeps_trying_and_stops_when_asked():
    """Kafka not (yet) there when a service starts: the consumer must wait for it, not die."""
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(env={"INSIDETRACK_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "INSIDETRACK_CONSUMER_BACKOFF_MS": "50"})
    runner = ConsumerRunner(settings, group="g", topics=["people"], handler=lambda e, d: None, producer=None)
    thread = runner.start()
    deadline = time.monotonic() + 30
    while runner.dependency_down is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.dependency_down and "Kafka unreachable" in runner.dependency_down
    time.sleep(1)
    assert thread.is_alive()  # still trying
    runner.stop(timeout=20)
    assert not thread.is_alive()


class _Client:
    """Just what the runner's commit path asks of a Kafka client; its commits fail while told to."""

    def __init__(self, assigned):
        self.assigned, self.failing, self.committed = set(assigned), True, []

    def assignment(self):
        return set(self.assigned)

    def commit(self, offsets, timeout_ms=None):
        from kafka.errors import CommitFailedError

        if self.failing:
            raise CommitFailedError("the group is rebalancing")
        self.committed.append({tp: meta.offset for tp, meta in offsets.items()})


def test_a_failed_commit_is_tried_again_after_the_next_poll_for_partitions_still_ours():
    """Messages handled while the group rebalanced used to stay uncommitted until the next
    message on their partition (on a quiet topic: never), so the backlog looked unfinished."""
    from kafka.structs import TopicPartition

    kept, lost = TopicPartition("people", 0), TopicPartition("people", 1)
    client = _Client({kept, lost})
    runner = ConsumerRunner(load_settings(env={}), group="g", topics=["people"], handler=lambda e, d: None, producer=None)
    runner._commit(client, {kept: 11, lost: 7})
    assert client.committed == []
    runner._commit_pending(client)  # after a poll, still failing: kept for later
    client.failing, client.assigned = False, {kept}  # settled; partition 1 went to another member
    runner._commit_pending(client)
    assert client.committed == [{kept: 11}]  # the other member redoes partition 1 from its last commit
    runner._commit_pending(client)
    assert client.committed == [{kept: 11}]  # nothing left to commit


class _IdleClient:
    """A Kafka client on a topic where nothing happens: records its settings and poll timeouts."""

    def __init__(self, runner_stops, **config):
        self.config, self.polls, self.closed, self._stops = config, [], False, runner_stops

    def partitions_for_topic(self, topic):
        return {0, 1, 2}

    def assign(self, partitions):
        self.partitions = set(partitions)

    def seek_to_end(self, *partitions):
        pass

    def end_offsets(self, partitions):
        return {tp: 0 for tp in partitions}

    def position(self, tp):
        return 0

    def assignment(self):
        return self.partitions

    def poll(self, timeout_ms=0):
        self.polls.append(timeout_ms)
        if len(self.polls) == 3:
            self._stops()  # SIGTERM arrives during the third poll
        return {}

    def close(self, autocommit=True, timeout_ms=None):
        self.closed = True


def test_an_idle_runner_polls_once_a_second_and_lets_the_broker_hold_empty_fetches(monkeypatch):
    """Idle CPU (issue 17): kafka-python's 200 ms polls and 500 ms fetch waits cost ~1 % of a core
    per runner. A poll ends as soon as records arrive, so the longer waits add no latency; a stop
    is seen at the end of the poll in hand, so one poll is what an idle runner's stop can wait."""
    import shared.bus.consumer as consumer_module
    from shared.bus.consumer import FETCH_MAX_WAIT_MS, POLL_MS

    clients = []
    runner = ConsumerRunner(load_settings(env={}), group=None, topics=["kudos"], from_beginning=False,
                            handler=lambda e, d: None, producer=None)
    monkeypatch.setattr(consumer_module, "kafka_reachable", lambda settings: None)
    monkeypatch.setattr(consumer_module, "KafkaConsumer",
                        lambda **config: clients.append(_IdleClient(runner.request_stop, **config)) or clients[-1])
    runner.run()
    [client] = clients
    assert client.config["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
    assert client.config["fetch_max_wait_ms"] < client.config.get("request_timeout_ms", 30_000)
    assert client.polls == [POLL_MS] * 3  # stopped after the poll in hand, none after it
    assert POLL_MS <= 1_000  # the bound docs/architecture.md gives for a stop when idle
    assert client.closed and runner.caught_up.is_set()


class _BusyThenIdleClient(_IdleClient):
    """Polls that return these batches in turn ({} when idle); the runner stops after the last."""

    def __init__(self, runner_stops, batches, clock, **config):
        super().__init__(runner_stops, **config)
        self.batches, self.clock = list(batches), clock

    def poll(self, timeout_ms=0):
        self.polls.append(timeout_ms)
        self.clock[0] += 2.0  # each poll takes 2 s of the runner's clock
        batch = self.batches.pop(0)
        if not self.batches:
            self._stops()
        return batch


def test_a_runner_caught_up_after_some_work_gives_freed_memory_back_at_most_every_ten_seconds(monkeypatch):
    """An idle process stays at its live size: once a runner's poll comes back empty after it
    handled something, the memory the work freed goes back to the system (shared/memory.py),
    not more often than TRIM_IDLE_EVERY_S under a trickle of events, and never while idle."""
    import shared.bus.consumer as consumer_module
    from shared.bus.consumer import TRIM_IDLE_EVERY_S

    trims, clock = [], [1000.0]

    # work, idle (trim), idle (nothing new: none), work, idle 6 s after the trim (too soon),
    # idle 8 s after it (too soon), idle 10 s after it (trim)
    batches = [{"kudos-0": [_kudos_message(0), _kudos_message(1)]}, {}, {}, {"kudos-0": [_kudos_message(2)]}, {}, {}, {}]
    handled = []
    runner = ConsumerRunner(load_settings(env={}), group=None, topics=["kudos"], from_beginning=False,
                            handler=lambda e, d: handled.append(d.kudos_id), producer=None)
    monkeypatch.setattr(consumer_module, "kafka_reachable", lambda settings: None)
    monkeypatch.setattr(consumer_module, "release_free_memory", lambda: trims.append(clock[0]))
    monkeypatch.setattr(consumer_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(consumer_module, "KafkaConsumer",
                        lambda **config: _BusyThenIdleClient(runner.request_stop, batches, clock, **config))
    runner.run()
    assert handled == ["k0", "k1", "k2"]
    assert trims == [1004.0, 1014.0]  # after the first work; after the second, once 10 s had passed
    assert trims[1] - trims[0] >= TRIM_IDLE_EVERY_S


def test_a_runtime_asks_all_its_consumers_to_stop_before_waiting_for_any():
    """Each idle consumer sees a stop at the end of its poll: asked together, their waits overlap
    (one poll, not one per consumer). Workers are then stopped in reverse order as before, so the
    relay, first in the list, still stops last."""
    from shared.serve import ServiceRuntime

    calls = []

    class Consumer:
        def __init__(self, name):
            self.name = name

        def request_stop(self):
            calls.append(("ask", self.name))

        def stop(self):
            calls.append(("stop", self.name))

    class Relay:
        def stop(self):
            calls.append(("stop", "relay"))

    runtime = ServiceRuntime(settings=None, app=None, producer=SimpleNamespace(close=lambda: calls.append(("close",))),
                             workers=[Relay(), Consumer("people"), Consumer("score"), Consumer("apply")])
    runtime.stop()
    assert calls == [("ask", "people"), ("ask", "score"), ("ask", "apply"),
                     ("stop", "apply"), ("stop", "score"), ("stop", "people"), ("stop", "relay"), ("close",)]


def test_behind_a_batch_handler_gets_several_polls_at_once_and_caught_up_one_poll_at_once():
    """A backlog: polls bring a tenth of ``max_poll_records`` or more, so the runner polls again
    up to ``gather_records``; a poll under a tenth means caught up, and the batch goes as it is
    (nothing live waits)."""
    settings = load_settings(env={})
    runner = ConsumerRunner(settings, group="g", topics=["kudos"], batch_handler=lambda deliveries: None,
                            producer=None, max_poll_records=30, gather_records=80)
    backlog = list(range(200))
    polls = []
    fetched = [30, 4, 30, 30]  # what each poll finds fetched: a partial fetch (4 of 30) is still behind

    def poll(timeout_ms, max_records=None):
        take = min(max_records or 30, fetched.pop(0) if fetched else 30)
        out, backlog[:] = backlog[:take], backlog[take:]
        polls.append(len(out))
        return {"kudos-0": [SimpleNamespace(offset=o) for o in out]} if out else {}

    consumer = SimpleNamespace(poll=poll)
    first = consumer.poll(timeout_ms=1000)
    batch = runner._gather(consumer, first)
    assert [m.offset for m in batch["kudos-0"]] == list(range(80))  # four polls, the last one cut to fit
    assert polls == [30, 4, 30, 16]

    backlog[:] = [300, 301]  # caught up: a poll under a tenth full is handed over at once
    polls.clear()
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))
    assert [m.offset for m in batch["kudos-0"]] == [300, 301] and polls == [2]

    one_poll = ConsumerRunner(settings, group="g", topics=["kudos"], batch_handler=lambda deliveries: None,
                              producer=None, max_poll_records=30)
    backlog[:] = list(range(100))
    polls.clear()
    assert len(one_poll._gather(consumer, consumer.poll(timeout_ms=1000))["kudos-0"]) == 30 and polls == [30]


def test_a_gathered_batch_counts_only_the_messages_it_handles():
    """Insights passes most awards by undecoded (``skip``): a batch gathers up to
    ``gather_records`` messages it handles, so passing others by does not shrink its batches
    (each batch rewrites the documents it touches: smaller batches would cost more writes)."""
    settings = load_settings(env={})
    runner = ConsumerRunner(settings, group="g", topics=["kudos"], batch_handler=lambda deliveries: None,
                            producer=None, max_poll_records=30, gather_records=40, skip=lambda m: m.offset % 3 != 0)
    backlog, polls = list(range(300)), []

    def poll(timeout_ms, max_records=None):
        out, backlog[:] = backlog[:min(max_records or 30, 30)], backlog[min(max_records or 30, 30):]
        polls.append(len(out))
        return {"kudos-0": [SimpleNamespace(offset=o) for o in out]} if out else {}

    consumer = SimpleNamespace(poll=poll)
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))
    kept = [m.offset for m in batch["kudos-0"] if m.offset % 3 == 0]
    assert len(kept) == 40 and [m.offset for m in batch["kudos-0"]] == list(range(120)) and polls == [30, 30, 30, 30]

    # Nothing but messages it passes by (caught up on one topic, behind on another): it stops at
    # GATHER_HELD times gather_records messages held, not at 40 kept, which may never come.
    from shared.bus.consumer import GATHER_HELD

    backlog[:], polls[:] = list(range(1, 3000, 3)), []  # offsets 1, 4, 7, ...: none kept
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))
    assert len(batch["kudos-0"]) == GATHER_HELD * 40 and polls == [30] * 4


def test_a_gathered_batch_stops_at_its_bytes_whatever_its_count():
    """The points applier's records each hold a person's awards, a few or a couple of hundred: its
    batches are bounded by their bytes too (what the batch holds in memory), not only by count."""
    settings = load_settings(env={})
    runner = ConsumerRunner(settings, group="g", topics=["points"], batch_handler=lambda deliveries: None,
                            producer=None, max_poll_records=30, gather_records=1_000, gather_bytes=100_000)
    sizes = [100] * 60 + [20_000] * 60 + [100] * 300  # small records, then big ones (a person's many awards)
    backlog, polls = list(range(len(sizes))), []

    def poll(timeout_ms, max_records=None):
        out, backlog[:] = backlog[:min(max_records or 30, 30)], backlog[min(max_records or 30, 30):]
        polls.append(len(out))
        return {"points-0": [SimpleNamespace(offset=o, value=b"x" * sizes[o]) for o in out]} if out else {}

    consumer = SimpleNamespace(poll=poll)
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))
    # Two polls of small records (6 KB), then one of big ones (600 KB): over the bound, handed over.
    assert [m.offset for m in batch["points-0"]] == list(range(90)) and polls == [30, 30, 30]
    polls.clear()
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))
    assert len(batch["points-0"]) == 30 and polls == [30]  # a poll over the bound goes as it is
    polls.clear()
    batch = runner._gather(consumer, consumer.poll(timeout_ms=1000))  # small again: gathered by count
    assert len(batch["points-0"]) == 300 and polls == [30] * 10 + [0]  # until the backlog ran out


def test_a_payload_only_batch_handler_gets_validated_payloads_and_envelopes_without_their_data_copy():
    """The points applier and insights read payloads only: their deliveries do not keep the raw
    data a second time (a gathered batch of 10,000 held half its memory in that copy); other
    handlers still get it; a bad message is dead-lettered either way."""
    settings = load_settings(env={})
    seen = []
    lean = ConsumerRunner(settings, group="g", topics=["people"], batch_handler=seen.extend, producer=None,
                          payload_only=True)
    full = ConsumerRunner(settings, group="g", topics=["people"], batch_handler=seen.extend, producer=None)
    dead, message = [], _message()
    for runner in (lean, full):
        runner._dead_letter = lambda message, reason: dead.append(reason) or True
        bad = SimpleNamespace(value=b"{not json", key=b"p1", topic="people", partition=0, offset=1, headers=[])
        consumer = SimpleNamespace(commit=lambda offsets, timeout_ms=None: None, assignment=lambda: {"people-0"})
        assert runner._handle_batch(consumer, {"people-0": [message, bad]}) is True
    [lean_one, full_one] = seen
    assert lean_one.envelope.data == {} and full_one.envelope.data["email"] == "p1@example.com"
    assert lean_one.payload == full_one.payload and lean_one.payload.email == "p1@example.com"
    assert (lean_one.envelope.id, lean_one.envelope.type, lean_one.envelope.time) == (
        full_one.envelope.id, full_one.envelope.type, full_one.envelope.time)
    assert len(dead) == 2 and all(reason.startswith("invalid event") for reason in dead)


def test_an_envelope_only_batch_handler_gets_envelopes_with_their_data_and_bad_messages_are_still_dead_lettered():
    """The scorer reads envelopes only: its deliveries do not keep the typed payload too, but
    every message is still validated against its schema (one that does not match goes to the
    dead-letter topic, not to the handler)."""
    settings = load_settings(env={})
    seen, dead = [], []
    runner = ConsumerRunner(settings, group="g", topics=["people"], batch_handler=seen.extend, producer=None,
                            envelope_only=True)
    runner._dead_letter = lambda message, reason: dead.append(reason) or True
    wrong = build_event("person.upserted", "p2", {"person_id": "p2", "email": "p2@example.com", "name": "P Two",
                                                  "role": "rep", "department": "sales"}, source="test").to_dict()
    wrong["data"]["email"] = 42  # not the schema's
    import orjson
    bad = SimpleNamespace(value=orjson.dumps(wrong), key=b"p2", topic="people", partition=0, offset=1, headers=[])
    consumer = SimpleNamespace(commit=lambda offsets, timeout_ms=None: None, assignment=lambda: {"people-0"})
    assert runner._handle_batch(consumer, {"people-0": [_message(), bad]}) is True
    [one] = seen
    assert one.payload is None and one.envelope.data["email"] == "p1@example.com"
    assert len(dead) == 1 and "does not match its schema" in dead[0]
    with pytest.raises(ValueError):
        ConsumerRunner(settings, group="g", topics=["people"], batch_handler=seen.extend, producer=None,
                       envelope_only=True, payload_only=True)


def test_messages_the_runner_is_told_to_skip_are_neither_decoded_nor_handled():
    """The points state's reader passes the records its own process wrote (it holds them):
    they reach neither the decoder nor the handler, and the poll is committed as a whole."""
    settings = load_settings(env={})
    seen, dead, commits = [], [], []
    mine = SimpleNamespace(value=b"{not even json", key=b"p1", topic="people", partition=0, offset=0, headers=[])
    theirs = _message()
    theirs.offset = 1
    runner = ConsumerRunner(settings, group="g", topics=["people"], batch_handler=seen.extend, producer=None,
                            skip=lambda message: message.offset == 0)
    runner._dead_letter = lambda message, reason: dead.append(reason) or True
    consumer = SimpleNamespace(commit=lambda offsets, timeout_ms=None: commits.append(offsets), assignment=lambda: {"people-0"})
    assert runner._handle_batch(consumer, {"people-0": [mine, theirs]}) is True
    assert [d.offset for d in seen] == [1] and dead == [] and [{tp: o.offset for tp, o in c.items()} for c in commits] == [{"people-0": 2}]
    # One message at a time (a runner with a handler): the same.
    handled = []
    one = ConsumerRunner(settings, group="g", topics=["people"], handler=lambda envelope, data: handled.append(data),
                         producer=None, skip=lambda message: message.offset == 0)
    one._dead_letter = lambda message, reason: dead.append(reason) or True
    assert one._handle(mine) is True and one._handle(theirs) is True
    assert [d.email for d in handled] == ["p1@example.com"] and dead == []


class _GroupClient:
    """A group member's Kafka client: polls return these batches in turn, each with the end of
    the partition the fetch that brought it saw (``highwater``; by default the batch's own end:
    caught up); the runner is asked to stop during the poll after the last. Commits and closes
    are recorded in ``log``."""

    def __init__(self, batches, log, runner_stops, **config):
        self.batches, self.log, self._stops, self.end = list(batches), log, runner_stops, None

    def partitions_for_topic(self, topic):
        return {0}

    def subscribe(self, topics):
        pass

    def topics(self):
        return set()

    def assignment(self):
        from kafka.structs import TopicPartition

        return {TopicPartition("kudos", 0)}

    def group_metadata(self):
        from kafka.structs import MemberState

        return SimpleNamespace(state=MemberState.STABLE)

    def highwater(self, tp):
        return self.end

    def poll(self, timeout_ms=0, max_records=None):
        if not self.batches:
            self._stops()
            return {}
        batch = self.batches.pop(0)
        if isinstance(batch, tuple):
            batch, self.end = batch
        elif batch:
            self.end = max(m.offset for messages in batch.values() for m in messages) + 1
        return batch

    def commit(self, offsets, timeout_ms=None):
        self.log.append(("commit", {tp.partition: meta.offset for tp, meta in offsets.items()}))

    def close(self, autocommit=True, timeout_ms=None):
        self.log.append(("close",))


def _kudos_messages(first: int, count: int) -> dict:
    from kafka.structs import TopicPartition

    return {TopicPartition("kudos", 0): [_kudos_message(o) for o in range(first, first + count)]}


def _run_holding(monkeypatch, clients: list[list[dict]], flush, log, stop_at: int | None = None) -> ConsumerRunner:
    """A runner whose batch handler holds what it gets until ``flush``; each client in turn
    gets its polls (a new one after a start over). A stop is asked while ``stop_at`` is handled."""
    import shared.bus.consumer as consumer_module

    def add(deliveries) -> None:
        log.append(("add", [d.offset for d in deliveries]))
        if stop_at in [d.offset for d in deliveries]:
            runner.request_stop()  # SIGTERM

    settings = load_settings(env={"INSIDETRACK_CONSUMER_BACKOFF_MS": "1"})
    # A batch is one poll (gather_records).
    runner = ConsumerRunner(settings, group="g", topics=["kudos"], producer=None, max_poll_records=100, gather_records=10,
                            batch_handler=add, flush=flush, flush_records=25)
    monkeypatch.setattr(consumer_module, "kafka_reachable", lambda settings: None)
    monkeypatch.setattr(consumer_module, "KafkaConsumer",
                        lambda **config: _GroupClient(clients.pop(0), log, runner.request_stop, **config))
    monkeypatch.setattr(consumer_module, "TRIM_AFTER", 5)  # a big poll's batch is let go of as soon as it is handled
    # A failed flush's pause, without waiting (a timed wait on a faked clock may never end).
    monkeypatch.setattr(runner, "_backoff", lambda attempt: not runner.stopping)
    runner.run()
    return runner


def test_a_holding_handlers_offsets_are_committed_only_after_the_flush_that_writes_them(monkeypatch):
    """Insights holds a backlog's changes (ConsumerRunner's ``flush``): each touched document is
    written once per FLUSH_EVENTS events. Nothing may be committed before it is written (a crash
    would lose it), and a live event is written at once, not when more come."""
    log = []
    polls = [(_kudos_messages(0, 10), 100), (_kudos_messages(10, 10), 100), (_kudos_messages(20, 10), 100),  # behind: 30 held, then written
             (_kudos_messages(30, 10), 42), _kudos_messages(40, 2),  # caught up (nothing more there): written
             {},  # idle
             _kudos_messages(42, 1),  # a live event: written at once
             (_kudos_messages(43, 10), 60)]  # behind, then nothing more comes: written
    _run_holding(monkeypatch, [polls], lambda: log.append(("flush",)), log)
    steps = [step[0] if step[0] in ("add", "flush") else step for step in log]
    assert steps == ["add", "add", "add", "flush", ("commit", {0: 30}),
                     "add", "add", "flush", ("commit", {0: 42}),
                     "add", "flush", ("commit", {0: 43}),
                     "add", "flush", ("commit", {0: 53}), ("close",)]


def test_a_flush_that_fails_is_tried_again_and_one_that_lets_go_reads_again_from_the_last_commit(monkeypatch):
    from shared.bus.consumer import Replay

    log, outcomes = [], [TransientError("database unreachable"), None, Replay("a partition moved"), None, None]

    def flush():
        log.append(("flush",))
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    first = [_kudos_messages(0, 2),  # caught up: written (after one failed try), committed
             _kudos_messages(2, 3)]  # the flush lets go: nothing committed, a new client
    second = [_kudos_messages(2, 3)]  # from the last commit: the same messages again, written
    runner = _run_holding(monkeypatch, [first, second], flush, log)
    steps = [step[0] if step[0] == "flush" else step for step in log]
    assert steps == [("add", [0, 1]), "flush", "flush", ("commit", {0: 2}),
                     ("add", [2, 3, 4]), "flush", "flush", ("close",),  # (what it holds, if anything, written before starting over)
                     ("add", [2, 3, 4]), "flush", ("commit", {0: 5}), ("close",)]
    assert runner.restarts == 1 and runner.dead_lettered == 0


def test_a_stop_writes_what_is_held_and_commits_it_and_a_stop_during_an_outage_commits_nothing(monkeypatch):
    log = []
    _run_holding(monkeypatch, [[(_kudos_messages(0, 10), 100), (_kudos_messages(10, 10), 100), _kudos_messages(20, 10)]],
                 lambda: log.append(("flush",)), log, stop_at=19)
    assert log == [("add", list(range(10))), ("add", list(range(10, 20))), ("flush",), ("commit", {0: 20}), ("close",)]

    log.clear()

    def down():
        log.append(("flush",))
        raise TransientError("database unreachable")

    _run_holding(monkeypatch, [[(_kudos_messages(0, 10), 100), (_kudos_messages(10, 10), 100)]], down, log, stop_at=19)
    # Tried once as it stops (no waiting out the outage); read again from offset 0 on the next start.
    assert log == [("add", list(range(10))), ("add", list(range(10, 20))), ("flush",), ("close",)]


def test_a_holding_handler_far_behind_still_writes_every_ten_seconds(monkeypatch):
    """However long a backlog lasts, what is held is written (and committed) at least every
    FLUSH_AFTER_S: a manager's insights lag a busy stack by seconds, not by a backlog."""
    import shared.bus.consumer as consumer_module
    from shared.bus.consumer import FLUSH_AFTER_S

    clock, log = [1000.0], []

    def flush():
        log.append(("flush", clock[0]))

    def tick(*args, **kwargs):  # each poll takes 4 s of the runner's clock
        clock[0] += 4.0

    polls = [(_kudos_messages(o, 2), 10_000) for o in range(0, 12, 2)]
    monkeypatch.setattr(consumer_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    original = _GroupClient.poll
    monkeypatch.setattr(_GroupClient, "poll", lambda self, timeout_ms=0, max_records=None: tick() or original(self))
    _run_holding(monkeypatch, [polls], flush, log)
    flushes = [step for step in log if step[0] == "flush"]
    assert [step[1] for step in flushes] == [1016.0, 1028.0]  # 12 s after the first held (a poll after 10 s); then as the polls end
    assert all(later - earlier <= FLUSH_AFTER_S + 4.0 for (_, earlier), (_, later) in zip(flushes, flushes[1:]))
