"""The people this process names in messages, in memory, from the compacted ``people`` topic.

A company's people are few (thousands), so the copy is a dict rebuilt from the topic on every
start (a group-less reader from the beginning); an older event never overwrites a newer one.
The API's admin check and the messages' names and departments read it. Readiness waits until
the start-time backlog is read, and the delivery consumer starts only then, so no message is
built from a half-read directory.
"""

from __future__ import annotations

import threading
from datetime import datetime

from services.notifications.domain import Person
from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.config import Settings
from shared.events import Envelope
from shared.events.schemas import PersonUpserted


class PeopleCopy:
    def __init__(self) -> None:
        self._people: dict[str, tuple[datetime, Person]] = {}
        self._lock = threading.Lock()

    def apply(self, envelope: Envelope, data: PersonUpserted) -> None:
        person = Person(id=data.person_id, name=data.name, role=data.role.value, department=data.department.value,
                        active=data.active, manager_id=data.manager_id,
                        hidden=data.hidden)  # off everyone else's leaderboards: named in no channel
        with self._lock:
            known = self._people.get(data.person_id)
            if known is None or known[0] <= envelope.time:
                self._people[data.person_id] = (envelope.time, person)

    def get(self, person_id: str) -> Person | None:
        found = self._people.get(person_id)
        return found[1] if found else None

    def __len__(self) -> int:
        return len(self._people)


def people_reader(settings: Settings, people: PeopleCopy, producer: EventProducer) -> ConsumerRunner:
    def handle(envelope: Envelope, data) -> None:
        if envelope.type == "person.upserted":
            people.apply(envelope, data)

    return ConsumerRunner(settings, group=None, topics=["people"], handler=handle, producer=producer)
