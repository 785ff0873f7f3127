"""Load and store people and requests; each store is one single-document write with its events."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from datetime import datetime
from typing import Any, Iterable, Sequence

from pymongo import ReturnDocument

from services.requests import readmodels
from services.requests.directory import PeopleDirectory
from services.requests.documents import CounterDoc, PersonDoc, RequestDoc
from services.requests.domain import Person, SupportRequest, TimelineEntry
from services.requests.readmodels import Listing, RequestReadModels, leaving, listing, unlist_value
from shared.bus.outbox import OutboxJournal, merge_update, with_outbox
from shared.clock import utc
from shared.events import Envelope

_REQUEST_FIELDS = [f.name for f in fields(SupportRequest) if f.name not in ("id", "timeline", "new_entries", "new_events")]
_PERSON_FIELDS = [f.name for f in fields(Person) if f.name != "id"]


def _aware(value: Any) -> Any:
    return utc(value) if isinstance(value, datetime) else value


def person_from_doc(doc: dict) -> Person:
    person = Person(id=doc["_id"], **{name: doc.get(name) for name in _PERSON_FIELDS})
    return replace(person, hidden=bool(person.hidden))  # documents from before the setting lack it


def person_to_doc(person: Person) -> dict:
    doc = {name: getattr(person, name) for name in _PERSON_FIELDS}
    doc["name_lower"] = person.name.lower()
    return doc


def request_from_doc(doc: dict) -> SupportRequest:
    values = {name: _aware(doc.get(name)) for name in _REQUEST_FIELDS if name in doc}
    values["assignee_ids"] = list(doc.get("assignee_ids") or [])
    values["brief_gaps"] = list(doc.get("brief_gaps") or [])
    timeline = [
        TimelineEntry(id=e["id"], at=utc(e["at"]), actor_id=e["actor_id"], type=e["type"], text=e.get("text"), data=e.get("data") or {})
        for e in doc.get("timeline") or []
    ]
    return SupportRequest(id=doc["_id"], timeline=timeline, **values)


def request_state(request: SupportRequest) -> dict:
    return {name: getattr(request, name) for name in _REQUEST_FIELDS}


def _entry(entry: TimelineEntry) -> dict:
    return asdict(entry)


class Repository:
    def __init__(self) -> None:
        self.people = PersonDoc._get_collection()
        self.requests = RequestDoc._get_collection()
        self.counters = CounterDoc._get_collection()
        db = self.requests.database
        self.lists = db["request_lists"]
        self.timers = db["request_timers"]
        self.cards = db["request_cards"]
        # Marked before every write that gives a document events (shared.bus.outbox): the
        # relay's safety net reads these, not the collections. A request stays marked while
        # its projection is pending too.
        self.people_journal = OutboxJournal(self.people)
        self.requests_journal = OutboxJournal(self.requests, keep=(readmodels.PENDING,))
        # An import's events, ten requests' to a document (insert-only outboxes): the imported
        # requests themselves are stored with nothing pending (``import_history``).
        self.imports = db["request_imports"]
        self.imports_journal = OutboxJournal(self.imports)
        self.read_models = RequestReadModels(self.requests, self.lists, self.timers, self.counters, self.cards,
                                             self.requests_journal)
        self.directory = PeopleDirectory(self.people, self.counters, person_from_doc)

    # -- people ----------------------------------------------------------------------------------

    def person(self, person_id: str) -> Person | None:
        doc = self.people.find_one({"_id": person_id}, {"outbox": 0})
        return person_from_doc(doc) if doc else None

    def person_by_email(self, email: str) -> Person | None:
        """By the in-memory directory (fresh: its counter read by _id), then the person by _id."""
        person_id = self.directory.id_for_email(email)
        person = self.person(person_id) if person_id else None
        return person if person is not None and person.email == email.lower() else None

    def people_by_ids(self, ids: Iterable[str]) -> dict[str, Person]:
        """From the directory copy (fresh: its counter read by _id), not the people documents."""
        everyone = self.directory.by_id()
        return {i: everyone[i] for i in ids if i in everyone}

    def insert_person(self, person: Person, now: datetime, events: Sequence[Envelope]) -> None:
        self.people_journal.mark(person.id)
        self.people.insert_one(self.new_person_doc(person, now, events))
        self.directory.bump([(person, 1)])

    @staticmethod
    def new_person_doc(person: Person, now: datetime, events: Sequence[Envelope]) -> dict:
        doc = {"_id": person.id, **person_to_doc(person), "created_at": now, "updated_at": now, "version": 1}
        return with_outbox(doc, events)

    @staticmethod
    def person_update(person: Person, now: datetime, events: Sequence[Envelope]) -> dict:
        return merge_update({"$set": {**person_to_doc(person), "updated_at": now}, "$inc": {"version": 1}}, events)

    def update_person(self, person: Person, version: int, now: datetime, events: Sequence[Envelope]) -> bool:
        self.people_journal.mark(person.id)
        done = self.people.update_one({"_id": person.id, "version": version}, self.person_update(person, now, events))
        if done.modified_count == 1:
            self.directory.bump([(person, version + 1)])
        return done.modified_count == 1

    def person_version(self, person_id: str) -> int | None:
        doc = self.people.find_one({"_id": person_id}, {"version": 1})
        return doc.get("version", 0) if doc else None

    # -- requests -------------------------------------------------------------------------------

    def next_number(self) -> int:
        return self.next_numbers(1)

    def next_numbers(self, count: int) -> int:
        """The first of ``count`` consecutive request numbers, taken with one ``$inc``."""
        doc = self.counters.find_one_and_update(
            {"_id": "requests"}, {"$inc": {"seq": count}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return 1000 + int(doc["seq"]) - count + 1

    def get(self, request_id: str) -> SupportRequest | None:
        doc = self.requests.find_one({"_id": request_id}, {"outbox": 0})
        return request_from_doc(doc) if doc else None

    def insert(self, request: SupportRequest, events: Sequence[Envelope]) -> None:
        """Store a new request with its events, then put it on its lists and timer bucket."""
        request.version = 1
        self.requests_journal.mark(request.id)
        self.requests.insert_one(self.new_request_doc(request, events))
        self.read_models.project(request, {}, {})  # on no list yet: adds, no look first

    @staticmethod
    def new_request_doc(request: SupportRequest, events: Sequence[Envelope], lists_pending: bool = True) -> dict:
        """A new request's document (its ``version`` as given) with its events, flagged for its
        projection onto the lists (``readmodels``: crash safety) unless ``lists_pending`` is
        False (an import, which projects it and keeps its events elsewhere)."""
        doc = {"_id": request.id, **request_state(request), "timeline": [_entry(e) for e in request.timeline]}
        doc[readmodels.PENDING], doc[readmodels.UNLIST] = lists_pending, []
        return with_outbox(doc, events)

    def save(self, request: SupportRequest, events: Sequence[Envelope], before: Listing | None = None) -> bool:
        """Store the command's changes if nobody changed the request meanwhile (optimistic),
        then move it between its lists. ``before``: its listing when loaded (``listing(r)``
        before the command); without it every list is written again."""
        target = listing(request)
        drop = leaving(before, target) if before is not None else {}
        state = request_state(request)
        state["version"] = request.version + 1
        state[readmodels.PENDING], state[readmodels.UNLIST] = True, unlist_value(drop)
        update = merge_update(
            {"$set": state, "$push": {"timeline": {"$each": [_entry(e) for e in request.new_entries]}}}, events
        )
        self.requests_journal.mark(request.id)
        if self.requests.update_one({"_id": request.id, "version": request.version}, update).modified_count != 1:
            return False
        stored = replace(request, version=request.version + 1)
        self.read_models.project(stored, before, drop)
        return True
