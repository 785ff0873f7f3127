"""The points store: its collections (a rebuild uses the same shape under a name suffix) and
the ids of what it keeps (deterministic, so every write is idempotent)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from shared.bus.outbox import OutboxJournal
from shared.clock import utc
from shared.db import chunks, patient
from shared.feeds import Entry, FeedStore

log = logging.getLogger(__name__)
SOURCE = "points"  # the source of the events the points service writes


class Store:
    """The points collections; a rebuild uses the same shape under a name suffix."""

    NAMES = ("scored_events", "request_facts", "guards", "submissions", "submission_days", "ledger", "ledger_lists",
             "totals", "boards", "rankings", "badge_progress", "badge_awards")
    INDEXES = {
        "submissions": [[("requester_id", 1), ("at", 1)]],
        # The audit of a person's whole ledger (zero-point entries too) searches by person.
        "ledger": [[("person_id", 1), ("at", -1), ("_id", -1)]],
        "badge_awards": [[("person_id", 1)], [("outbox_pending", 1)]],
    }
    # Indexes no read uses any more (everything else goes by _id), dropped from older stores: each
    # one is kept up to date on every write (on FerretDB, two made the ledger's inserts 40 % slower).
    RETIRED_INDEXES = {"ledger": ["source_event_id_1"], "totals": ["person_id_1"]}

    def __init__(self, db: Database, suffix: str = ""):
        self.db = db
        self.suffix = suffix
        for name in self.NAMES:
            setattr(self, name, db[name + suffix])
        self.badge_journal = OutboxJournal(self.badge_awards)  # marked before awards are stored

    def ensure_indexes(self) -> None:
        for name, indexes in self.INDEXES.items():
            for keys in indexes:
                getattr(self, name).create_index(keys)
        for name, retired in self.RETIRED_INDEXES.items():
            collection = getattr(self, name)
            for index in set(retired) & set(collection.index_information()):
                collection.drop_index(index)

    @property
    def ledger_feeds(self) -> FeedStore:
        """Each person's ledger as a list read by ``_id`` (``ledger:<person>``, month buckets):
        the entries a person sees (points, or capped); the applier adds them."""
        return FeedStore(self.ledger_lists)

    def mark_upgraded(self) -> None:
        """Say the read models are complete (a new store, a rebuild: the write path built them)."""
        self.ledger_lists.update_one({"_id": UPGRADE_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)

    def upgrade(self) -> dict[str, int]:
        """Build the read models a store from before them lacks (``submission_days``, the
        ledger lists) from ``submissions`` and ``ledger``: one scan of each, once (a marker
        document says it is done); idempotent, so a crash midway just does it again."""
        marker = {"_id": UPGRADE_MARKER}
        if self.ledger_lists.find_one(marker) is not None:
            return {}
        days: dict[str, dict] = {}
        for doc in self.submissions.find({}, {"requester_id": 1, "at": 1, "rush_short_notice": 1}):
            if safe_key(doc.get("requester_id") or "") and safe_key(str(doc["_id"])):
                days.setdefault(day_id(doc["requester_id"], doc["at"]), {})[f"r.{doc['_id']}"] = submission_entry(doc)
        for part in chunks(list(days.items())):
            self.submission_days.bulk_write([UpdateOne({"_id": i}, {"$set": s}, upsert=True) for i, s in part], ordered=False)
        with patient():  # once, for an old store: a filtered search answers only when it has read everything
            lists = [(ledger_list(d["person_id"]), Entry(d["_id"], utc(d["at"])))
                     for d in self.ledger.find({"$or": [{"points": {"$gt": 0}}, {"capped": True}]}, {"person_id": 1, "at": 1})
                     if safe_key(d.get("person_id") or "")]
        added = self.ledger_feeds.add_many(lists)
        self.mark_upgraded()
        log.info("points read models built", extra={"submission_days": len(days), "ledger_entries": added})
        return {"submission_days": len(days), "ledger_entries": added}

    def drop(self) -> None:
        for name in self.NAMES:
            getattr(self, name).drop()


UPGRADE_MARKER = "~upgraded:v1"  # in ledger_lists: the read models were built from older collections


def badge_award_id(person_id: str, badge_id: str, tier: str | None) -> str:
    """A badge award's id: one per person, badge and tier (so a person's awards are read by _id)."""
    return f"{person_id}:{badge_id}:{tier or 'earned'}"


def ledger_list(person_id: str) -> str:
    return f"ledger:{person_id}"


def shown_in_ledger(points: int, capped: bool) -> bool:
    """What a person's ledger shows by default: entries with points, and capped ones."""
    return points > 0 or bool(capped)


def day_id(person_id: str, at: datetime) -> str:
    return f"{person_id}:{utc(at).strftime('%Y-%m-%d')}"


def submission_entry(doc: dict) -> dict:
    return {"t": utc(doc["at"]), "s": bool(doc.get("rush_short_notice"))}


def entry_id(source_event_id: str, rule_id: str, person_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:points:{source_event_id}:{rule_id}:{person_id}"))


def safe_key(value: str) -> bool:
    """Whether an id may be a field name in a document (no dot, no leading dollar)."""
    return bool(value) and "." not in value and not value.startswith("$")


def as_document(doc_id: str, update: dict[str, Any]) -> dict[str, Any]:
    """The document an upsert of ``update`` ($inc/$set of dotted paths) creates."""
    doc: dict[str, Any] = {"_id": doc_id}
    for op in ("$inc", "$set"):
        for path, value in (update.get(op) or {}).items():
            *parents, leaf = path.split(".")
            target = doc
            for name in parents:
                target = target.setdefault(name, {})
            target[leaf] = value
    return doc
