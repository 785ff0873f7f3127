"""The outbox: a state change and the events it produced go to MongoDB in one write.

Each aggregate document carries its own pending events (``outbox``, a list of envelopes) and
an indexed ``outbox_pending`` flag. A handler adds events in the same single-document write
that changes the state (no transactions needed, which FerretDB lacks). The relay publishes
pending events to Kafka in order, then removes exactly those it published (``$pullAll``) and
clears the flag only if nothing new arrived meanwhile. A crash between publish and removal
publishes the same events again later: duplicates, never loss; consumers dedupe by event id.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Sequence

import mongoengine
from pymongo.collection import Collection

from shared.bus.kafka import EventProducer
from shared.db import is_transient
from shared.events import Envelope

log = logging.getLogger(__name__)

OUTBOX = "outbox"
PENDING = "outbox_pending"


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


class OutboxDocument(mongoengine.Document):
    """Base for mongoengine documents that record events with their state changes.

    ``doc.record(event)`` then ``doc.save()``: state and events in one write.
    """

    outbox = mongoengine.ListField(mongoengine.DictField())
    outbox_pending = mongoengine.BooleanField(default=False)

    meta = {"abstract": True, "indexes": ["outbox_pending"]}

    def record(self, *envelopes: Envelope) -> None:
        self.outbox.extend(e.to_dict() for e in envelopes)
        self.outbox_pending = True


class OutboxRelay:
    """Publishes pending outbox events from ``collections`` to Kafka, in order per document."""

    def __init__(self, producer: EventProducer, collections: Iterable[Collection], poll_ms: int = 500, batch: int = 200):
        self.producer = producer
        self.collections = list(collections)
        self.poll_s = poll_ms / 1000
        self.batch = batch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.last_error: str | None = None

    def notify(self) -> None:
        """Wake the relay now (call after a write that recorded events)."""
        self._wake.set()

    def relay_once(self) -> int:
        """Publish every pending event once; return how many were published."""
        published = 0
        for collection in self.collections:
            cursor = collection.find({PENDING: True}, {OUTBOX: 1}).limit(self.batch)
            for doc in cursor:
                pending = doc.get(OUTBOX) or []
                if pending:
                    self.producer.publish_all([Envelope.from_dict(e) for e in pending])
                    # Remove exactly what was published: events added meanwhile stay.
                    collection.update_one({"_id": doc["_id"]}, {"$pullAll": {OUTBOX: pending}})
                    published += len(pending)
                collection.update_one({"_id": doc["_id"], OUTBOX: []}, {"$set": {PENDING: False}})
        self.published += published
        return published

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.relay_once():
                    self.last_error = None
                    continue  # there may be more than one batch waiting
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
