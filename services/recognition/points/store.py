"""The points store: its collections (a rebuild uses the same shape under a name suffix) and
the ids of what it keeps (deterministic, so every write is idempotent)."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from datetime import datetime, timezone
from typing import Any

import orjson
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from services.recognition.points.ledger_pages import LedgerPages, sort_key
from services.recognition.points.state import PersonState, PointsTable
from shared.bus.outbox import OutboxJournal
from shared.clock import utc
from shared.db import chunks, drop_retired_indexes, insert_new, patient

log = logging.getLogger(__name__)
SOURCE = "points"  # the source of the events the points service writes


class Store:
    """The points collections; a rebuild uses the same shape under a name suffix."""

    NAMES = ("request_facts", "guards", "submissions", "submission_days", "ledger", "ledger_pages",
             "boards", "rankings", "badge_awards")
    # Collections older stores kept that nothing reads any more: dropped by upgrade().
    # scored_events: each source event's awards (to the sixteenth session); the scorer now scores
    # a redelivered event again (scorer.py).
    RETIRED = ("scored_events",)
    # People's totals and badge progress as older stores kept them (per person, then in bucket
    # documents: PERSON_BUCKETS): folded into the points state (state.py) once, then dropped.
    FOLDED = ("totals", "badge_progress", "person_totals", "person_progress")
    # People's ledger lists as older stores kept them (day buckets): replaced by ledger pages
    # folded from the ledger itself once (fold_ledger), then dropped.
    OLD_LISTS = ("ledger_lists",)
    INDEXES = {
        "submissions": [[("requester_id", 1), ("at", 1)]],
        "badge_awards": [[("person_id", 1)], [("outbox_pending", 1)]],
    }
    # Indexes no read uses any more (everything else goes by _id), dropped from older stores: each
    # one is kept up to date on every write (on FerretDB, two made the ledger's inserts 40 % slower).
    RETIRED_INDEXES = {"ledger": ["source_event_id", "person_id"]}  # by first field (shared.db.drop_retired_indexes)

    def __init__(self, db: Database, suffix: str = "", table: PointsTable | None = None):
        self.db = db
        self.suffix = suffix
        # People's totals and badge progress: in memory, their changelog in Kafka (state.py).
        self.table = table if table is not None else PointsTable()
        for name in (*self.NAMES, *self.FOLDED, *self.OLD_LISTS):
            setattr(self, name, db[name + suffix])
        # People's ledger lists: pages written once, indexed in their points state.
        self.ledger_pages = LedgerPages(db["ledger_pages" + suffix])
        self.badge_journal = OutboxJournal(self.badge_awards)  # marked before awards are stored

    def ensure_indexes(self) -> None:
        for name, indexes in self.INDEXES.items():
            for keys in indexes:
                getattr(self, name).create_index(keys)
        for name, retired in self.RETIRED_INDEXES.items():
            drop_retired_indexes(getattr(self, name), retired)

    def mark_upgraded(self) -> None:
        """Say the read models are complete (a new store, a rebuild: the write path built them)."""
        self.submission_days.update_one({"_id": UPGRADE_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        self.ledger_pages.mark()

    # People's totals and badge progress (the points state, state.py).

    def totals_of(self, person_id: str, keys: list[str]) -> dict[str, int]:
        """A person's points in each period key (0 where they have none)."""
        return self.table.totals_of(person_id, keys)

    def totals_with_scope(self, person_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """A person's ``points`` in each period key, with the ``department`` and ``role`` they
        were counted in."""
        return self.table.totals_with_scope(person_id, keys)

    def progress_of(self, person_id: str) -> dict[str, Any]:
        """A person's badge progress as the applier keeps it (``badges``, ``applied``), or {}."""
        return self.table.progress_of(person_id)

    def key_totals(self, key: str) -> dict[str, int]:
        """Everyone's points in a period key."""
        return self.table.key_totals(key)

    def has_folded(self) -> bool:
        """Whether people's totals or badge progress are still in an older store's collections."""
        present = set(self.db.list_collection_names())
        return any(name + self.suffix in present for name in self.FOLDED)

    def fold_into_state(self) -> dict[str, int]:
        """Fold an older store's totals and badge progress (per person, or in bucket documents)
        into the points state, offsets included, then drop those collections: one scan of each,
        once. Idempotent: the table (read from its changelog first) already holding people means
        a fold before this one was written, and the collections are only dropped."""
        if not self.has_folded():
            return {}
        folded: dict[str, PersonState] = {}

        def person(person_id: str) -> PersonState:
            return folded.setdefault(person_id, PersonState(person_id))

        if not len(self.table):
            for doc in self.totals.find({}, {"person_id": 1, "key": 1, "points": 1, "applied": 1, "department": 1, "role": 1}):
                if doc.get("person_id") and doc.get("key"):
                    state = person(doc["person_id"])
                    state.totals[doc["key"]] = [int(doc.get("points") or 0), doc.get("department"), doc.get("role")]
                    for partition, offset in (doc.get("applied") or {}).items():
                        state.applied[partition] = max(state.applied.get(partition, -1), int(offset))
            for doc in self.person_totals.find():
                if "|" not in str(doc["_id"]):
                    continue  # a marker
                key = str(doc["_id"]).rsplit("|", 1)[0]
                for field, points in (doc.get("p") or {}).items():
                    state = person(person_id_of(field))
                    state.totals[key] = [int(points or 0), (doc.get("d") or {}).get(field), (doc.get("r") or {}).get(field)]
                    for partition, offset in ((doc.get("a") or {}).get(field) or {}).items():
                        state.applied[partition] = max(state.applied.get(partition, -1), int(offset))
            for doc in self.badge_progress.find():
                person(str(doc["_id"])).progress = {"badges": doc.get("badges") or {}, "applied": dict(doc.get("applied") or {})}
            for doc in self.person_progress.find():
                for field, raw in (doc.get("s") or {}).items():
                    person(person_id_of(field)).progress = json.loads(raw) if raw else {}
            self.table.write(folded.values())
        for name in self.FOLDED:
            getattr(self, name).drop()
        log.info("points totals and badge progress folded into the points state", extra={"people": len(folded)})
        return {"people": len(folded)}

    def upgrade(self) -> dict[str, int]:
        """Drop the collections nothing reads any more (``RETIRED``). Build the requesters' days
        a store from before them lacks from ``submissions``: one scan, once (a marker document
        says it is done, in ``submission_days``; older stores kept it in ``ledger_lists``);
        idempotent, so a crash midway just does it again."""
        present = set(self.db.list_collection_names())
        for name in self.RETIRED:
            if name + self.suffix in present:
                self.db.drop_collection(name + self.suffix)
                log.info("points collection retired", extra={"collection": name + self.suffix})
        marker = {"_id": UPGRADE_MARKER}
        if self.submission_days.find_one(marker) is not None or self.ledger_lists.find_one(marker) is not None:
            return {}
        days: dict[str, dict] = {}
        for doc in self.submissions.find({}, {"requester_id": 1, "at": 1, "rush_short_notice": 1}):
            if safe_key(doc.get("requester_id") or "") and safe_key(str(doc["_id"])):
                days.setdefault(day_id(doc["requester_id"], doc["at"]), {})[f"r.{doc['_id']}"] = submission_entry(doc)
        for part in chunks(list(days.items())):
            self.submission_days.bulk_write([UpdateOne({"_id": i}, {"$set": s}, upsert=True) for i, s in part], ordered=False)
        self.submission_days.update_one(marker, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        log.info("points read models built", extra={"submission_days": len(days)})
        return {"submission_days": len(days)}

    def needs_ledger_fold(self) -> bool:
        """Whether people's ledger lists must be built from the ledger (a store from before the
        ledger pages): the pages' marker is missing and the ledger holds something."""
        if self.ledger_pages.marked():
            return False
        if self.ledger.find_one({}, {"_id": 1}) is None:
            self.ledger_pages.mark()  # a new store: its pages are written as it goes
            return False
        return True

    def fold_ledger(self) -> dict[str, int]:
        """People's ledger lists from the ledger itself, for a store from before the ledger
        pages: one scan, once; each person's visible entries in one page, named in their state
        (the table, read from its changelog first); then the old lists are dropped and the
        marker written. Idempotent: a page folded before is refused and its state written again."""
        if not self.needs_ledger_fold():
            return {}
        people: dict[str, list[str]] = {}
        with patient():  # once, for an old store: a filtered search answers only when it has read everything
            for d in self.ledger.find({"$or": [{"points": {"$gt": 0}}, {"capped": True}]}, {"person_id": 1, "at": 1}):
                if d.get("person_id"):
                    people.setdefault(d["person_id"], []).append(sort_key(d["at"], d["_id"]))
        states = []
        for person_id, keys in people.items():
            state = self.table.get(person_id)
            state = state.copy() if state is not None else PersonState(person_id)
            state.ledger = self.ledger_pages.folded(person_id, keys)
            states.append(state)
        self.table.write(states)
        for name in self.OLD_LISTS:
            getattr(self, name).drop()
        self.ledger_pages.mark()
        log.info("people's ledger lists folded into ledger pages", extra={"people": len(people),
                                                                          "entries": sum(map(len, people.values()))})
        return {"people": len(people), "entries": sum(map(len, people.values()))}

    def drop(self) -> None:
        for name in (*self.NAMES, *self.FOLDED, *self.OLD_LISTS, *self.RETIRED):
            self.db[name + self.suffix].drop()


UPGRADE_MARKER = "~upgraded:v1"  # in submission_days (ledger_lists before): the days were built from submissions

# Older stores kept a person's totals (``<key>|<bucket>``: ``p.<person>`` points, ``d.``/``r.``
# the department and role, ``a.`` the offsets applied) and badge progress (``<bucket>``:
# ``s.<person>``, JSON) in bucket documents shared by the people of a bucket; a person's id was
# a field name, escaped so: what Store.fold_into_state reads back.
def person_bucket(person_id: str, buckets: int) -> int:
    """Which of ``buckets`` documents keeps a person (insights.py's read model)."""
    return zlib.crc32(person_id.encode()) % buckets


def person_field(person_id: str) -> str:
    """A person's id as a field name (a dot or a leading dollar would be a path or an operator)."""
    return person_id.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def person_id_of(field: str) -> str:
    return field.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def badge_award_id(person_id: str, badge_id: str, tier: str | None) -> str:
    """A badge award's id: one per person, badge and tier (so a person's awards are read by _id)."""
    return f"{person_id}:{badge_id}:{tier or 'earned'}"


def shown_in_ledger(points: int, capped: bool) -> bool:
    """What a person's ledger shows by default: entries with points, and capped ones."""
    return points > 0 or bool(capped)


def day_id(person_id: str, at: datetime) -> str:
    return f"{person_id}:{utc(at).strftime('%Y-%m-%d')}"


def submission_entry(doc: dict) -> dict:
    return {"t": utc(doc["at"]), "s": bool(doc.get("rush_short_notice"))}


_ENTRY_NAMESPACE = uuid.NAMESPACE_URL.bytes


def entry_id(source_event_id: str, rule_id: str, person_id: str) -> str:
    """The award's id: ``uuid5(NAMESPACE_URL, "insidetrack:points:<event>:<rule>:<person>")``,
    made without the UUID object (2.7 -> 1.0 us; the scorer makes one for every award)."""
    name = f"insidetrack:points:{source_event_id}:{rule_id}:{person_id}".encode()
    digest = bytearray(hashlib.sha1(_ENTRY_NAMESPACE + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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


# -- boards: everyone's points in a period, one document per period key ------------------------------

# A board's entries are one JSON string (``e``): person -> [points, department, role], with a
# fourth item, 1, for a person who keeps themselves off the leaderboards. FerretDB 1.24 decodes
# and encodes a whole document for any update, field by field: a board of 2,000 people kept as
# a map of sub-documents cost ~50 ms a write (one person's $inc as much as everyone's) and
# ~28 ms a read; as one string ~4 ms and ~2 ms (BENCH_ONLY=ferretdb, fourteenth session). Every write
# is the whole board, conditional on the version read (``v``). A store from before holds the
# map (``entries``): read as it is, and written as a string by the board's next update.


def read_board(collection: Collection, doc_id: str) -> dict[str, Any]:
    """A board as ``{"_id", "v", "applied", "entries": {person: {"p", "d", "r"[, "h"]}}}``, or {}."""
    doc = collection.find_one({"_id": doc_id})
    if not doc:
        return {}
    if "e" in doc:
        entries = {pid: {"p": row[0], "d": row[1], "r": row[2], **({"h": True} if len(row) > 3 and row[3] else {})}
                   for pid, row in orjson.loads(doc["e"]).items()}
    else:
        entries = doc.get("entries") or {}
    return {"_id": doc["_id"], "v": doc.get("v"), "applied": doc.get("applied") or {}, "entries": entries}


def write_board(collection: Collection, doc_id: str, before: dict[str, Any], entries: dict[str, dict],
                applied: dict[str, int]) -> bool:
    """Write a board whole, if it is still the one read (``before``, as :func:`read_board` gave
    it; {} for a board not there yet): its version goes up by one. False when another writer
    changed (or created) it since: read it again and work the change out anew."""
    encoded = orjson.dumps({pid: [int(e.get("p") or 0), e.get("d"), e.get("r"), *((1,) if e.get("h") else ())]
                            for pid, e in entries.items()}).decode()
    if before:
        return collection.update_one({"_id": doc_id, "v": before.get("v")}, {
            "$set": {"e": encoded, "applied": applied}, "$inc": {"v": 1}, "$unset": {"entries": ""}}).matched_count == 1
    return not insert_new(collection, [{"_id": doc_id, "v": 1, "e": encoded, "applied": applied}])


def insert_else_update(collection, updates: dict[str, dict[str, Any]]) -> list[UpdateOne]:
    """Insert whole the documents these upserts would create (their ids were missing when read:
    an update costs FerretDB ~15 inserts); return the upserts of those another writer created
    meanwhile (their insert refused), to be written with the rest."""
    again: list[UpdateOne] = []
    for part in chunks(list(updates)):
        refused = insert_new(collection, [as_document(doc_id, updates[doc_id]) for doc_id in part])
        again += [UpdateOne({"_id": doc_id}, updates[doc_id], upsert=True) for doc_id in part if doc_id in refused]
    return again
