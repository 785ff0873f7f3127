"""Live events for subscriptions: the gateway reads kudos, points, badges and requests from the
moment it starts (each gateway process reads every partition itself, from the end: no
consumer group, so every instance sees every event) and hands each event to the subscribers
it concerns.

A subscriber is a callable that must not block: the WebSocket connection puts work on its own
bounded queue, so a slow screen never slows the others.

The hub also keeps who is active, from the ``people`` topic (read whole on every start, then
live): a signed-in person's every request is checked against it without a call to the requests
service, and a deactivation takes effect as soon as its event arrives (``PeopleStatus``).

Leaderboards are pushed when the points service says awards are on the boards
(``points.applied``, sent after its applier's write): the board read then shows them, so no
pause is guessed between an award and the read. A subscriber is told only when a board it
shows changed: its period's current board, or the one before (its movement).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.calendar import PERIODS, BusinessCalendar, period_key, previous_period_key
from shared.clock import Clock, clock_for
from shared.config import Settings
from shared.events import Envelope

log = logging.getLogger(__name__)

# Which subscription field each topic feeds.
TOPIC_FIELDS = {"kudos": "kudosGiven", "points-applied": "leaderboardChanged", "badges": "badgeAwarded",
                "requests": "requestChanged"}


@dataclass(frozen=True)
class Subscriber:
    id: int
    field: str                      # kudosGiven, leaderboardChanged, badgeAwarded, requestChanged
    arguments: dict[str, Any]
    deliver: Callable[[Envelope], None]

    def wants(self, envelope: Envelope, live_keys: dict[str, set[str]] | None = None) -> bool:
        """Whether the event concerns this subscriber; ``live_keys``: for a ``points.applied``,
        the period keys a leaderboard shows now, by period (its board and the previous one)."""
        data = envelope.data
        if self.field == "kudosGiven":
            person = self.arguments.get("person_id")
            return envelope.type == "kudos.given" and (
                person is None or person == data.get("giver_id") or person in data.get("recipient_ids", []))
        if self.field == "badgeAwarded":
            person = self.arguments.get("person_id")
            return envelope.type == "badge.awarded" and person in (None, data.get("person_id"))
        if self.field == "requestChanged":
            return envelope.type.startswith("request.") and self.arguments.get("id") == data.get("request_id")
        if self.field == "leaderboardChanged":
            if envelope.type != "points.applied" or live_keys is None:
                return False
            period = getattr(self.arguments.get("period"), "value", self.arguments.get("period"))
            return not live_keys.get(period, set()).isdisjoint(data.get("period_keys", ()))
        return False


class PeopleStatus:
    """Who is active, as the ``people`` topic last said (the newest event per person by its
    time, whatever order they arrive in): a set lookup per request instead of a call. A person
    it has not heard of yet (just imported, or the topic still loading) is ``None``: the caller
    asks the requests service, as it did before this copy existed."""

    def __init__(self) -> None:
        self._people: dict[str, tuple[Any, bool]] = {}  # person id -> (event time, active)
        self._lock = threading.Lock()

    def apply(self, envelope: Envelope, data) -> None:
        if envelope.type != "person.upserted":
            return
        with self._lock:
            known = self._people.get(data.person_id)
            if known is None or known[0] <= envelope.time:
                self._people[data.person_id] = (envelope.time, bool(data.active))

    def active(self, person_id: str) -> bool | None:
        known = self._people.get(person_id)
        return None if known is None else known[1]


class LiveHub:
    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        self.calendar = BusinessCalendar.from_settings(settings)
        self.clock = clock or clock_for(settings)
        self._subscribers: dict[int, Subscriber] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._producer: EventProducer | None = None
        self._readers: list[ConsumerRunner] = []
        self.started = threading.Event()
        self.people = PeopleStatus()

    def subscribe(self, field: str, arguments: dict[str, Any], deliver: Callable[[Envelope], None]) -> int:
        sub = Subscriber(next(self._ids), field, arguments, deliver)
        with self._lock:
            self._subscribers[sub.id] = sub
        return sub.id

    def unsubscribe(self, sub_id: int) -> None:
        with self._lock:
            self._subscribers.pop(sub_id, None)

    def live_keys(self) -> dict[str, set[str]]:
        """The boards a leaderboard shows now, by period: the current one and the one before."""
        now = self.clock.now()
        return {period: {period_key(self.calendar, period, now), previous_period_key(self.calendar, period, now)} - {None}
                for period in PERIODS}

    def publish(self, envelope: Envelope) -> None:
        """Hand one event to every subscriber it concerns (never blocks on a subscriber)."""
        live_keys = self.live_keys() if envelope.type == "points.applied" else None
        with self._lock:
            targets = [s for s in self._subscribers.values() if s.wants(envelope, live_keys)]
        for sub in targets:
            try:
                sub.deliver(envelope)
            except Exception:  # noqa: BLE001 - one broken subscriber must not stop the others
                log.exception("subscriber failed", extra={"subscriber": sub.id})

    def start(self) -> None:
        """Read the live topics from now on, in background threads."""
        if self._readers:
            return
        self._producer = EventProducer(self.settings, client_id="gateway-live")  # dead letters only
        for topic in TOPIC_FIELDS:
            reader = ConsumerRunner(self.settings, group=None, topics=[topic], from_beginning=False,
                                    handler=lambda envelope, _data: self.publish(envelope), producer=self._producer)
            reader.start()
            self._readers.append(reader)
        # The whole people topic (compacted: a person's last event), then what comes.
        people = ConsumerRunner(self.settings, group=None, topics=["people"], from_beginning=True,
                                handler=self.people.apply, producer=self._producer)
        people.start()
        self._readers.append(people)
        self.started.set()

    def ready(self) -> bool:
        return bool(self._readers) and all(r.assigned.is_set() for r in self._readers)

    def stop(self) -> None:
        for reader in self._readers:
            reader.request_stop()  # all at once: each ends its current poll (up to a second when idle)
        for reader in self._readers:
            reader.stop()
        self._readers.clear()
        if self._producer is not None:
            self._producer.close()
            self._producer = None
