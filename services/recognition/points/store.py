"""The points store: its collections (a rebuild uses the same shape under a name suffix) and
the ids of what it keeps (deterministic, so every write is idempotent)."""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from datetime import datetime, timezone
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from shared.bus.outbox import OutboxJournal
from shared.clock import utc
from shared.db import chunks, drop_retired_indexes, find_by_ids, insert_new, patient
from shared.feeds import Entry, FeedStore

log = logging.getLogger(__name__)
SOURCE = "points"  # the source of the events the points service writes


class Store:
    """The points collections; a rebuild uses the same shape under a name suffix."""

    NAMES = ("scored_events", "request_facts", "guards", "submissions", "submission_days", "ledger", "ledger_lists",
             "person_totals", "boards", "rankings", "person_progress", "badge_awards")
    # Kept per person before PERSON_BUCKETS: folded into the bucket documents once (upgrade_buckets), then dropped.
    FOLDED = {"totals": "person_totals", "badge_progress": "person_progress"}
    INDEXES = {
        "submissions": [[("requester_id", 1), ("at", 1)]],
        "badge_awards": [[("person_id", 1)], [("outbox_pending", 1)]],
    }
    # Indexes no read uses any more (everything else goes by _id), dropped from older stores: each
    # one is kept up to date on every write (on FerretDB, two made the ledger's inserts 40 % slower).
    RETIRED_INDEXES = {"ledger": ["source_event_id", "person_id"]}  # by first field (shared.db.drop_retired_indexes)

    def __init__(self, db: Database, suffix: str = ""):
        self.db = db
        self.suffix = suffix
        for name in (*self.NAMES, *self.FOLDED):
            setattr(self, name, db[name + suffix])
        self.badge_journal = OutboxJournal(self.badge_awards)  # marked before awards are stored

    def ensure_indexes(self) -> None:
        for name, indexes in self.INDEXES.items():
            for keys in indexes:
                getattr(self, name).create_index(keys)
        for name, retired in self.RETIRED_INDEXES.items():
            drop_retired_indexes(getattr(self, name), retired)

    @property
    def ledger_feeds(self) -> FeedStore:
        """Each person's ledger as a list read by ``_id`` (``ledger:<person>``, month buckets):
        the entries a person sees (points, or capped); the applier adds them."""
        return FeedStore(self.ledger_lists)

    def mark_upgraded(self) -> None:
        """Say the read models are complete (a new store, a rebuild: the write path built them)."""
        self.ledger_lists.update_one({"_id": UPGRADE_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        self.person_totals.update_one({"_id": BUCKETS_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)

    # People's totals and badge progress, in bucket documents (PERSON_BUCKETS says why).

    def totals_of(self, person_id: str, keys: list[str]) -> dict[str, int]:
        """A person's points in each period key (0 where they have none): one read of a few documents."""
        return {key: total["points"] for key, total in self.totals_with_scope(person_id, keys).items()}

    def totals_with_scope(self, person_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """A person's ``points`` in each period key, with the ``department`` and ``role`` they
        were counted in (as on the period's board)."""
        field = person_field(person_id)
        docs = find_by_ids(self.person_totals, {totals_id(key, person_id) for key in keys},
                           {f"{name}.{field}": 1 for name in ("p", "d", "r")})
        out = {}
        for key in keys:
            doc = docs.get(totals_id(key, person_id)) or {}
            out[key] = {"points": int((doc.get("p") or {}).get(field) or 0), "department": (doc.get("d") or {}).get(field),
                        "role": (doc.get("r") or {}).get(field)}
        return out

    def progress_of(self, person_id: str) -> dict[str, Any]:
        """A person's badge progress as the applier keeps it (``badges``, ``applied``), or {}."""
        field = person_field(person_id)
        doc = self.person_progress.find_one({"_id": progress_id(person_id)}, {f"s.{field}": 1}) or {}
        raw = (doc.get("s") or {}).get(field)
        return json.loads(raw) if raw else {}

    def key_totals(self, key: str) -> dict[str, int]:
        """Everyone's points in a period key (their totals documents: PERSON_BUCKETS reads of _id)."""
        docs = find_by_ids(self.person_totals, [f"{key}|{b}" for b in range(PERSON_BUCKETS)], {"p": 1})
        return {person_id_of(field): int(points) for doc in docs.values() for field, points in (doc.get("p") or {}).items()}

    def upgrade_buckets(self) -> dict[str, int]:
        """Fold a store's per-person totals and badge progress documents (before PERSON_BUCKETS)
        into bucket documents, offsets included, then drop the old collections: one scan of
        each, once (a marker says it is done). Idempotent: a crash midway folds the same values
        again, and the consumers start only after it."""
        if self.person_totals.find_one({"_id": BUCKETS_MARKER}, {"_id": 1}) is not None:
            return {}
        totals: dict[str, dict] = {}
        for doc in self.totals.find({}, {"person_id": 1, "key": 1, "points": 1, "applied": 1}):
            if doc.get("person_id") and doc.get("key"):
                field = person_field(doc["person_id"])
                bucket = totals.setdefault(totals_id(doc["key"], doc["person_id"]), {"p": {}, "a": {}, "d": {}, "r": {}})
                bucket["p"][field] = int(doc.get("points") or 0)
                bucket["a"][field] = dict(doc.get("applied") or {})
                bucket["d"][field], bucket["r"][field] = doc.get("department"), doc.get("role")
        progress: dict[str, dict] = {}
        for doc in self.badge_progress.find():
            state = {"badges": doc.get("badges") or {}, "applied": dict(doc.get("applied") or {})}
            progress.setdefault(progress_id(str(doc["_id"])), {"s": {}})["s"][person_field(str(doc["_id"]))] = json.dumps(state, default=str)
        for collection, docs in ((self.person_totals, totals), (self.person_progress, progress)):
            for part in chunks(list(docs.items())):
                collection.bulk_write([UpdateOne({"_id": i}, {"$set": {f"{name}.{field}": value for name, fields in doc.items()
                                                                      for field, value in fields.items()}}, upsert=True)
                                       for i, doc in part], ordered=False)
        self.person_totals.update_one({"_id": BUCKETS_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        self.totals.drop()
        self.badge_progress.drop()
        log.info("points totals and badge progress folded into buckets",
                 extra={"totals_documents": len(totals), "progress_documents": len(progress)})
        return {"totals_documents": len(totals), "progress_documents": len(progress)}

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
        self.ledger_lists.update_one(marker, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        log.info("points read models built", extra={"submission_days": len(days), "ledger_entries": added})
        return {"submission_days": len(days), "ledger_entries": added}

    def drop(self) -> None:
        for name in (*self.NAMES, *self.FOLDED):
            getattr(self, name).drop()


UPGRADE_MARKER = "~upgraded:v1"  # in ledger_lists: the read models were built from older collections
BUCKETS_MARKER = "~buckets:v1"  # in person_totals: per-person documents of older stores are folded in

# A person's totals (one document per period key and bucket: ``<key>|<bucket>``, ``p.<person>``
# points, ``d.``/``r.<person>`` the department and role they count in, ``a.<person>`` the
# offsets applied per partition) and badge progress (``<bucket>``,
# ``s.<person>`` a JSON string of the badges' state and offsets) are kept with the other people
# of their bucket. A batch of history touches most people: one document per person cost the
# applier a FerretDB update each (~1 ms: 2,000 awards for 1,800 people, ~3.6 s of a 4 s
# batch); per bucket it is at most PERSON_BUCKETS updates, each only of its people's fields,
# so appliers of other partitions can write the same document. Fixed for a store (ids derive
# from it). A read decodes the whole bucket on FerretDB: with 256, at 100,000 people (~390 a
# bucket) one person's totals took 14 ms and "my rank" 21 ms (BENCH_ONLY=leaderboard
# BENCH_PEOPLE=100000); with 1,024 (~98 a bucket) 4.6 and 8.7 ms, while 2,000 people's history
# costs about as much to write (bench/scoring.py).
PERSON_BUCKETS = 1024


def person_bucket(person_id: str, buckets: int = PERSON_BUCKETS) -> int:
    return zlib.crc32(person_id.encode()) % buckets


def person_field(person_id: str) -> str:
    """A person's id as a field name (a dot or a leading dollar would be a path or an operator)."""
    return person_id.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def person_id_of(field: str) -> str:
    return field.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def totals_id(key: str, person_id: str) -> str:
    return f"{key}|{person_bucket(person_id)}"


def progress_id(person_id: str) -> str:
    return str(person_bucket(person_id))


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
    """The document an upsert of ``update`` ($inc/$set of dotted paths, $addToSet of top-level
    lists with ``$each``) creates."""
    doc: dict[str, Any] = {"_id": doc_id}
    for op in ("$inc", "$set"):
        for path, value in (update.get(op) or {}).items():
            *parents, leaf = path.split(".")
            target = doc
            for name in parents:
                target = target.setdefault(name, {})
            target[leaf] = value
    for field, added in (update.get("$addToSet") or {}).items():
        doc[field] = list(added["$each"])
    return doc


def insert_else_update(collection, updates: dict[str, dict[str, Any]]) -> list[UpdateOne]:
    """Insert whole the documents these upserts would create (their ids were missing when read:
    an update costs FerretDB ~15 inserts); return the upserts of those another writer created
    meanwhile (their insert refused), to be written with the rest."""
    again: list[UpdateOne] = []
    for part in chunks(list(updates)):
        refused = insert_new(collection, [as_document(doc_id, updates[doc_id]) for doc_id in part])
        again += [UpdateOne({"_id": doc_id}, updates[doc_id], upsert=True) for doc_id in part if doc_id in refused]
    return again
