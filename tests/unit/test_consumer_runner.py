"""The consumer runner without a broker: an outage is retried with growing pauses (never
dead-lettered), a consumer started before Kafka waits for it, a failed commit is tried again."""

from __future__ import annotations

from types import SimpleNamespace

from shared.bus.consumer import MAX_BACKOFF_S, ConsumerRunner, TransientError
from shared.config import load_settings
from shared.events import build_event


def _message():
    event = build_event("person.upserted", "p1", {"person_id": "p1", "email": "p1@example.com", "name": "P One",
                                                  "role": "rep", "department": "sales"}, source="test")
    return SimpleNamespace(value=event.to_bytes(), key=b"p1", topic="people", partition=0, offset=0, headers=[])


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
