"""While a dependency is down, a consumer retries the same message with growing pauses."""

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


def _pauses_during_an_outage(failures: int) -> list[float]:
    """The pauses a consumer takes while its handler reports the database down ``failures`` times."""
    settings = load_settings(env={"INSIDETRACK_CONSUMER_BACKOFF_MS": "100"})
    calls = {"n": 0}

    def handler(envelope, data) -> None:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise TransientError("database unreachable")

    runner = ConsumerRunner(settings, group="g", topics=["people"], handler=handler, producer=None)
    pauses: list[float] = []
    runner._stopping = SimpleNamespace(wait=lambda seconds: pauses.append(seconds) or False, is_set=lambda: False)
    assert runner._handle(_message()) is True
    assert runner.dead_lettered == 0  # an outage is not the message's fault
    return pauses


@pytest.mark.xfail(strict=True, reason="shared/bus/consumer.py resets the attempt count on every transient error, "
                                       "so the pause stays at consumer_backoff_ms for the whole outage")
def test_an_outage_is_retried_with_exponential_backoff_up_to_the_cap():
    pauses = _pauses_during_an_outage(8)
    assert len(pauses) == 8
    assert pauses == sorted(pauses) and pauses[-1] > pauses[0]  # growing
    assert max(pauses) <= MAX_BACKOFF_S
