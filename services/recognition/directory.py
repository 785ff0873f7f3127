"""A local copy of the people directory, kept from the compacted ``people`` topic.

The recognition processes never read the requests service's database: they read every
``person.upserted`` from the start of the topic on each start (it is compacted: one record per
person) into their own ``directory`` collection. An older event never overwrites a newer one,
so redeliveries and replays change nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.recognition.person import DirectoryPerson
from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.config import Settings
from shared.db import find_by_ids
from shared.events import Envelope
from shared.events.schemas import PersonUpserted


class DirectoryPersonDoc(me.Document):
    id = me.StringField(primary_key=True)
    email = me.StringField()
    name = me.StringField()
    role = me.StringField()
    department = me.StringField()
    title = me.StringField()
    manager_id = me.StringField()
    active = me.BooleanField()
    hidden = me.BooleanField()
    event_time = me.DateTimeField()
    event_id = me.StringField()

    meta = {"collection": "directory", "indexes": ["department", "role"]}


class Directory:
    """The directory copy, with the people read before kept in memory (up to ``CACHED``): the
    scoring stages look up every awardee of every batch, and a company's people are few
    beside its history. ``apply`` drops the person from memory, and every process of a service
    applies every event of the people topic itself, so what is kept is never older than the
    copy this process wrote. Unknown people are not kept (they may arrive any moment)."""

    CACHED = 20_000

    def __init__(self) -> None:
        self.collection = DirectoryPersonDoc._get_collection()
        self._known: OrderedDict[str, DirectoryPerson] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0  # people applied so far
        # Everyone, as read at a generation, with each manager's direct reports: kept until a
        # person changes (``apply``), so a team's read costs memory, not a scan of the copy.
        self._everyone: tuple[int, list[DirectoryPerson], dict[str, list[DirectoryPerson]]] | None = None

    def _remember(self, people: dict[str, "DirectoryPerson"], generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # someone was applied while these were read: they may be older than the copy
            for person_id, person in people.items():
                self._known[person_id] = person
                self._known.move_to_end(person_id)
            while len(self._known) > self.CACHED:
                self._known.popitem(last=False)

    def _recalled(self, ids) -> tuple[dict[str, "DirectoryPerson"], list, int]:
        with self._lock:
            found = {i: self._known[i] for i in ids if i in self._known}
            return found, [i for i in ids if i not in found], self._generation

    def apply(self, envelope: Envelope, data: PersonUpserted) -> None:
        """Store the person as of this event unless a newer event is already stored."""
        doc = {
            **data.model_dump(mode="python", exclude={"person_id"}),
            "role": data.role.value,
            "department": data.department.value,
            "event_time": envelope.time,
            "event_id": envelope.id,
        }
        try:
            self.collection.update_one(
                {"_id": data.person_id, "$or": [{"event_time": {"$lte": envelope.time}}, {"event_time": None}]},
                {"$set": doc},
                upsert=True,
            )
        except DuplicateKeyError:
            pass  # the stored copy is newer than this event: keep it
        finally:
            # After the write: a read that began before it is not kept (see many).
            with self._lock:
                self._known.pop(data.person_id, None)
                self._generation += 1

    @property
    def generation(self) -> int:
        """How many people this process has applied: anything derived from the copy (a sorted
        team, say) holds while it stays the same."""
        return self._generation

    def get(self, person_id: str) -> DirectoryPerson | None:
        return self.many([person_id]).get(person_id)

    def many(self, ids) -> dict[str, DirectoryPerson]:
        """The people among ``ids`` (unknown ones left out): those not in memory read by
        ``_id`` in chunks our FerretDB answers from its index (an ``$in`` of up to 1,000 ids)."""
        found, missing, generation = self._recalled(list(dict.fromkeys(ids)))
        if missing:
            read = {i: _person(d) for i, d in find_by_ids(self.collection, missing).items()}
            self._remember(read, generation)
            found.update(read)
        return found

    def by_email(self) -> dict[str, DirectoryPerson]:
        """Everyone, by lower-case email, from :meth:`everyone` (the copy read whole once, kept
        until someone changes; the company's size, not the history's): bulk work such as an import."""
        return {p.email.lower(): p for p in self.everyone() if p.email}

    def everyone(self) -> list[DirectoryPerson]:
        """Everyone in the copy (the company, not its history): read whole once, then kept
        until someone changes."""
        return self._snapshot()[0]

    def below(self, manager_id: str) -> list[DirectoryPerson]:
        """The people ``manager_id`` manages, directly or down the chain (as
        ``shared.auth.manages`` answers for each), from the kept copy: the cost of the team."""
        _, reports = self._snapshot()
        found: dict[str, DirectoryPerson] = {}
        todo = [manager_id]
        while todo:
            for person in reports.get(todo.pop(), ()):
                if person.id not in found and person.id != manager_id:  # a loop in the data ends here
                    found[person.id] = person
                    todo.append(person.id)
        return list(found.values())

    def _snapshot(self) -> tuple[list[DirectoryPerson], dict[str, list[DirectoryPerson]]]:
        with self._lock:
            kept, generation = self._everyone, self._generation
        if kept is not None and kept[0] == generation:
            return kept[1], kept[2]
        people = [_person(d) for d in self.collection.find({}, {"event_time": 0, "event_id": 0})]
        reports: dict[str, list[DirectoryPerson]] = {}
        for person in people:
            if person.manager_id:
                reports.setdefault(person.manager_id, []).append(person)
        with self._lock:
            if generation == self._generation:  # nobody applied while it was read
                self._everyone = (generation, people, reports)
        return people, reports

    def count(self) -> int:
        return self.collection.count_documents({})


def _person(doc: dict) -> DirectoryPerson:
    return DirectoryPerson(
        id=doc["_id"], name=doc.get("name") or "?", email=doc.get("email") or "", role=doc.get("role") or "",
        department=doc.get("department") or "", active=bool(doc.get("active")), title=doc.get("title"),
        manager_id=doc.get("manager_id"), hidden=bool(doc.get("hidden")),
    )


def directory_reader(settings: Settings, directory: Directory, producer: EventProducer) -> ConsumerRunner:
    """A group-less reader of the whole ``people`` topic into ``directory``."""

    def handle(envelope: Envelope, data) -> None:
        if envelope.type == "person.upserted":
            directory.apply(envelope, data)

    return ConsumerRunner(settings, group=None, topics=["people"], handler=handle, producer=producer)


__all__ = ["Directory", "DirectoryPerson", "DirectoryPersonDoc", "directory_reader"]
