"""The outbox: a state change and the events it produced go to MongoDB in one write.

Each aggregate document carries its own pending events (``outbox``, a list of envelopes) and
an indexed ``outbox_pending`` flag. A handler adds events in the same single-document write
that changes the state (no transactions needed, which FerretDB lacks). The relay publishes
pending events to Kafka in order, then removes exactly those it published (``$pullAll``) and
clears the flag only if nothing new arrived meanwhile. A crash between publish and removal
publishes the same events again later: duplicates, never loss; consumers dedupe by event id.

Writers tell the relay which document they changed (``relay.notify(collection, doc_id)``), and
the relay reads exactly those by ``_id``. A notice is lost when its process dies between the
write and the relay's pass, so there is a safety net, and it must not be a search for
``outbox_pending: true``: on FerretDB that scans the whole collection (only ``_id`` lookups use
an index), and a year of requests or kudos took 10-30 s a search. Instead a writer **marks** the
document in the collection's :class:`OutboxJournal` (one small document read by ``_id``)
*before* the write that gives it events; the relay's safety-net pass (at start, every
``journal_s`` seconds, and when asked) reads the journal, finishes the marked documents whose
events are still pending (their writer died), and takes off the marks of documents with
nothing pending. Its cost is the writes of the last minute, never the history. A journal not
yet started (a ``var/`` from before it) is started by one search, once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Sequence

import mongoengine
import orjson
from pymongo import UpdateOne
from pymongo.collection import Collection

from shared.bus.kafka import EventProducer
from shared.db import chunks, find_by_ids, is_transient, patient
from shared.events import Envelope

log = logging.getLogger(__name__)

OUTBOX = "outbox"
# An insert-only document's events as one JSON string (``with_packed_outbox``): FerretDB encodes
# and decodes a document value by value, so fifty events as subdocuments cost it ~15 ms a write
# of the document, and as one string almost nothing.
OUTBOX_PACKED = "outbox_packed"
PENDING = "outbox_pending"
JOURNAL = "outbox_journal"  # the collection of the journals, in each service's database
JOURNAL_GRACE_S = 30.0  # a mark younger than this may be a write in flight: left alone


def outbox_update(envelopes: Sequence[Envelope]) -> dict[str, Any]:
    """The update operators that add ``envelopes`` to a document's outbox.

    Merge them into the same ``update_one``/``find_one_and_update`` that changes the state::

        coll.update_one({"_id": rid, "version": v},
                        {"$set": {"status": "delivered"}, "$inc": {"version": 1},
                         **outbox_update([event])})

    (If the update has its own ``$set``/``$push``, use :func:`merge_update`.)
    """
    return {
        "$push": {OUTBOX: {"$each": [e.to_dict() for e in envelopes]}},
        "$set": {PENDING: True},
    }


def merge_update(update: dict[str, Any], envelopes: Sequence[Envelope]) -> dict[str, Any]:
    """Return ``update`` with the outbox operators merged in (operator by operator)."""
    merged = {op: dict(fields) for op, fields in update.items()}
    for op, fields in outbox_update(envelopes).items():
        target = merged.setdefault(op, {})
        clash = set(target) & set(fields)
        if clash:
            raise ValueError(f"update already sets {sorted(clash)}")
        target.update(fields)
    return merged


def with_outbox(document: dict[str, Any], envelopes: Sequence[Envelope]) -> dict[str, Any]:
    """A new document (for ``insert_one``) carrying ``envelopes`` as pending events."""
    return {**document, OUTBOX: [e.to_dict() for e in envelopes], PENDING: bool(envelopes)}


def pack_events(events: Sequence[dict[str, Any]]) -> str:
    """Events (envelopes as dicts) as the one JSON string of a packed outbox."""
    # orjson, as the events go on the wire: an import's part packs ~10,000 events, and the json
    # module's encoder held its pieces (5-6 MB) beside the text at the services' peaks.
    return orjson.dumps(list(events)).decode()


def with_packed_outbox(document: dict[str, Any], envelopes: Sequence[Envelope]) -> dict[str, Any]:
    """A new document of an insert-only collection (the relay's ``insert_only``) carrying
    ``envelopes`` as one JSON string: for documents holding many events (an import's)."""
    return {**document, OUTBOX_PACKED: pack_events([e.to_dict() for e in envelopes]), PENDING: bool(envelopes)}


def pending_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The pending events of a document as read (``outbox``, or a packed outbox)."""
    packed = document.get(OUTBOX_PACKED)
    return [*(document.get(OUTBOX) or []), *(orjson.loads(packed) if packed else [])]


def published_update(document: dict[str, Any]) -> dict[str, Any]:
    """The update that takes the events of ``document`` (as read) off its outbox once published,
    by _id: exactly those (events added meanwhile stay), or a packed outbox whole (an
    insert-only document's: nothing is added to it later); the flag lowered."""
    off = {"$unset": {OUTBOX_PACKED: ""}} if OUTBOX_PACKED in document else {"$pullAll": {OUTBOX: document.get(OUTBOX) or []}}
    return {**off, "$set": {PENDING: False}}


class OutboxDocument(mongoengine.Document):
    """Base for mongoengine documents that carry the events of their state changes: the
    handlers write both in one write (``with_outbox`` for an insert, ``merge_update`` for an
    update), and the relay publishes what is pending."""

    outbox = mongoengine.ListField(mongoengine.DictField())
    outbox_pending = mongoengine.BooleanField(default=False)

    meta = {"abstract": True, "indexes": ["outbox_pending"]}


class OutboxJournal:
    """The documents of one collection that may hold events not yet published, by ``_id``.

    One document per collection (``_id``: the collection's name) in ``outbox_journal``:
    ``{e: {<doc id>: "<time>|<token>"}, started: true}``. A writer calls :meth:`mark` before the
    write that adds events to those documents (or raises a ``keep`` flag: a read model's own
    "projection pending" flag, which keeps the mark until it is lowered too). The relay takes a
    mark off only when the document had nothing pending when read, the mark is older than
    ``JOURNAL_GRACE_S`` and is still the one it read (a writer marking again meanwhile keeps it):
    so a write in flight never loses its mark."""

    def __init__(self, collection: Collection, keep: Sequence[str] = ()):
        self.collection = collection
        self.journal = collection.database[JOURNAL]
        self.key = collection.name
        self.flags = (PENDING, *keep)

    def mark(self, *doc_ids: Any) -> str:
        """Mark ``doc_ids`` (before the write); returns the mark's value, for :meth:`unmark`."""
        value = f"{time.time():.3f}|{uuid.uuid4().hex[:8]}"
        if doc_ids:
            self.journal.update_one({"_id": self.key}, {"$set": {_entry(i): value for i in doc_ids}}, upsert=True)
        return value

    def read(self) -> tuple[bool, dict[Any, str]]:
        """Whether the journal is started, and its marks (id -> value), in one read."""
        doc = self.journal.find_one({"_id": self.key}) or {}
        return bool(doc.get("started")), {_doc_id(k): v for k, v in (doc.get("e") or {}).items()}

    def marks(self) -> dict[Any, str]:
        return self.read()[1]

    def started(self) -> bool:
        return self.read()[0]

    def start(self) -> None:
        self.journal.update_one({"_id": self.key}, {"$set": {"started": True}}, upsert=True)

    def unmark(self, marks: dict[Any, str]) -> None:
        """Take off ``marks`` (id -> the value read), each only if it is still that value."""
        if not marks:
            return
        together = self.journal.update_one({"_id": self.key, **{_entry(i): v for i, v in marks.items()}},
                                           {"$unset": {_entry(i): "" for i in marks}})
        if together.matched_count:
            return
        for part in chunks(list(marks.items())):  # one was marked again: each on its own
            self.journal.bulk_write([UpdateOne({"_id": self.key, _entry(i): v}, {"$unset": {_entry(i): ""}})
                                     for i, v in part], ordered=False)


def _entry(doc_id: Any) -> str:
    """The field of a document's mark: its id, with what a field name may not hold escaped."""
    key = str(doc_id).replace("%", "%25").replace(".", "%2E")
    return "e." + ("%24" + key[1:] if key.startswith("$") else key)


def _doc_id(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def _marked_at(value: str) -> float:
    try:
        return float(str(value).split("|", 1)[0])
    except ValueError:
        return 0.0


class OutboxRelay:
    """Publishes pending outbox events from ``collections`` to Kafka, in order per document."""

    def __init__(self, producer: EventProducer, collections: Iterable[Collection], poll_ms: int = 500,
                 batch: int = 200, scan_s: float = 30.0, insert_only: Iterable[Collection] = (),
                 on_scan: Callable[[Collection, list[dict[str, Any]]], None] | None = None,
                 journals: Iterable[OutboxJournal] = ()):
        self.producer = producer
        # The safety net per collection (``OutboxJournal``): a collection without one is searched.
        self.journals = {j.collection.full_name: j for j in journals}
        # Called with the documents the safety-net search found pending (``_id``, outbox,
        # flag), before their events are published: a writer whose process died after its
        # state write, before its follow-up writes (read models), finishes them here. Their
        # notice was lost with the process, so these documents come only through the search.
        self.on_scan = on_scan
        self.collections = list(collections)
        # Collections whose documents get all their events when inserted, never later: the
        # writer may hand the relay the documents themselves, and clearing needs no second look.
        self.insert_only = {c.full_name for c in insert_only}
        self.poll_s = poll_ms / 1000
        self.batch = batch
        self.scan_s = scan_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._noticed: dict[str, dict[Any, dict | None]] = {c.full_name: {} for c in self.collections}
        self._scan_due = True  # a first pass at start: whatever an earlier run left pending
        self._everything = True  # the next pass looks at young marks too (at start, when asked)
        self._last_scan = 0.0
        self.published = 0
        self.last_error: str | None = None

    def notify(self, collection: Collection | None = None, *doc_ids: Any) -> None:
        """Wake the relay now: ``doc_ids`` of ``collection`` got events (no arguments: search all)."""
        with self._lock:
            if collection is None or not doc_ids:
                self._scan_due = self._everything = True
            else:
                noticed = self._noticed.get(collection.full_name)
                if noticed is None:
                    raise ValueError(f"the relay does not watch {collection.full_name}")
                noticed.update(dict.fromkeys(doc_ids))
        self._wake.set()

    def notify_inserted(self, collection: Collection, documents: Iterable[dict[str, Any]]) -> None:
        """Wake the relay for documents just inserted with their events (no need to read them back)."""
        if collection.full_name not in self.insert_only:
            raise ValueError(f"{collection.full_name} is not insert-only: name the documents with notify()")
        with self._lock:
            self._noticed[collection.full_name].update({d["_id"]: d for d in documents})
        self._wake.set()

    def relay_once(self) -> int:
        """Publish what was noticed (and, when due, search for anything pending); return the count."""
        with self._lock:
            noticed = {name: dict(ids) for name, ids in self._noticed.items() if ids}
            for ids in self._noticed.values():
                ids.clear()
            scan = self._scan_due or time.monotonic() - self._last_scan >= self.scan_s
            everything = self._everything and scan
            self._scan_due = False
            if scan:
                self._everything = False
        published = 0
        try:
            for collection in self.collections:
                pending = noticed.get(collection.full_name, {})
                for part in chunks(list(pending.items()), self.batch):
                    # By _id (FerretDB scans the whole collection for a filter without one).
                    unread = [i for i, doc in part if doc is None]
                    read = find_by_ids(collection, unread, {OUTBOX: 1, OUTBOX_PACKED: 1, PENDING: 1})
                    docs = [doc if doc is not None else read.get(i) for i, doc in part]
                    published += self._publish(collection, [d for d in docs if d is not None])
                    for doc_id, _ in part:
                        del pending[doc_id]  # done: only what is left is noticed again after a failure
                if scan:
                    published += self._safety_net(collection, everything)
            if scan:
                self._last_scan = time.monotonic()
        except BaseException:
            with self._lock:  # not done: try those again on the next pass
                for collection in self.collections:
                    for doc_id, doc in noticed.get(collection.full_name, {}).items():
                        self._noticed[collection.full_name].setdefault(doc_id, doc)
                self._scan_due = self._scan_due or scan
                self._everything = self._everything or everything
            raise
        self.published += published
        return published

    def _safety_net(self, collection: Collection, everything: bool) -> int:
        """Finish what writers that died left pending, from the journal (``everything``: young
        marks too, at start); without a journal, or one not started yet (an old ``var/``), a
        search (a scan on FerretDB), which starts the journal."""
        journal = self.journals.get(collection.full_name)
        started, marks = journal.read() if journal is not None else (False, {})
        if not started:
            published = 0
            while True:
                with patient():
                    docs = list(collection.find({PENDING: True}, {OUTBOX: 1, OUTBOX_PACKED: 1, PENDING: 1}).limit(self.batch))
                if docs and self.on_scan is not None:
                    self.on_scan(collection, docs)
                published += self._publish(collection, docs)
                if len(docs) < self.batch:
                    break
            if journal is not None:
                journal.start()
            return published
        published, now = 0, time.time()
        old = {i: v for i, v in marks.items() if now - _marked_at(v) >= JOURNAL_GRACE_S}
        look = list(marks) if everything else list(old)
        for part in chunks(look, self.batch):
            found = find_by_ids(collection, part, {OUTBOX: 1, OUTBOX_PACKED: 1, **{f: 1 for f in journal.flags}})
            flagged = [d for d in found.values() if any(d.get(f) for f in journal.flags)]
            if flagged and self.on_scan is not None:
                self.on_scan(collection, flagged)
            published += self._publish(collection, [d for d in flagged if d.get(PENDING) or pending_events(d)])
            # Off the journal: old marks of documents that had nothing pending (or are gone).
            journal.unmark({i: old[i] for i in part if i in old and i not in {d["_id"] for d in flagged}})
        return published

    def _publish(self, collection: Collection, docs: list[dict[str, Any]]) -> int:
        """Publish the documents' pending events (one flush), then take them off the outboxes."""
        envelopes = [Envelope.from_dict(e) for d in docs for e in pending_events(d)]
        if envelopes:
            self.producer.publish_all(envelopes)
        # Take off what was published and lower the flag, by _id alone (the filter FerretDB
        # answers from its index), in bulk commands.
        done = [d for d in docs if d.get(OUTBOX) or d.get(OUTBOX_PACKED) or d.get(PENDING)]
        for part in chunks(done):
            collection.bulk_write([UpdateOne({"_id": doc["_id"]}, published_update(doc)) for doc in part], ordered=False)
        if collection.full_name not in self.insert_only:
            # Look again: an event may have arrived in between. Raise its flag again and take
            # it on the next pass (its writer's notice may be lost if that process died).
            for part in chunks(done):
                again = [i for i, d in find_by_ids(collection, [d["_id"] for d in part], {OUTBOX: 1}).items()
                         if d.get(OUTBOX)]
                for doc_id in again:
                    collection.update_one({"_id": doc_id}, {"$set": {PENDING: True}})
                    with self._lock:
                        self._noticed[collection.full_name][doc_id] = None
                    self._wake.set()
        return len(envelopes)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.relay_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep relaying; the events stay pending
                self.last_error = f"{type(exc).__name__}: {exc}"
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "outbox relay failed, will retry", extra={"error": self.last_error})
                self._stopping.wait(min(5.0, max(self.poll_s, 1.0)))
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10) -> None:
        """Stop after the current pass (which finishes publishing what it took)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
