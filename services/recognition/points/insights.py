"""Insights for managers: a read model kept by the events, read by ``_id`` (issue 21).

The points process keeps it with its own consumer group (``points-insights`` on ``requests``,
``kudos`` and ``points``): the internal-selling score comes from the same awards as the ledger
(``points.awarded`` of the rep rules), the rest from the request and kudos events. For each
event, counters are added to a few documents, one per period the event falls in (its week,
month, quarter and "all", in the company calendar) that has not ended yet on the process's
clock (a read asks for the period containing now; history adds to "all" only):

- ``d:<department>:<period key>``: the department's queue: requests received, rush and
  short-notice rush, acknowledgements and deliveries with histograms of their business hours
  (so medians and p90s need no list of values), on time, info requests, closed loops;
- ``pb:<bucket>:<period key>``: the people of a bucket (a hash of the person, ``INSIGHTS_BUCKETS`` =
  256), each under their own field as one JSON string: as a rep (requests,
  complete briefs, rushes, deal updates and the weeks they fell in, internal-selling points),
  and kudos given and received with the values they were thanked for; and the document's
  version ``v``. A batch of events touches at most 256 such documents per period, however
  many people (one per person cost a FerretDB update each, and an admin's read of 2,000
  people read 2,000 documents); a string each keeps a document a few values to FerretDB
  (``_write_people``).

A read is the departments' documents and the team's buckets for one period key, by ``$in``:
the cost of the team, never of the history; and only those changed since this process last
read them, as the key's versions document (``pv:<key>``, ``_raise_versions``) says.

Idempotent: each document keeps the last offset it took from each topic partition
(``o.<topic>|<partition>``), and takes an event only beyond it; every batch is added and
written back with a conditional write per document on the offsets it had (a department's) or
its version (a people's: a document another writer changed meanwhile is read again), so a
redelivered batch, with other boundaries or not, adds nothing twice.

Cost: one write per touched document per batch, whatever number of events touch it, all of a
batch's writes in bulks (``shared.db.WRITE_CHUNK``); the offsets of the documents this
process wrote last are kept in memory (``OFFSETS_KEPT``), so a batch reads only documents it
has not seen (or that another writer changed: its conditional write misses and it is read
again). Behind (an import, a restart), the consumer hands over batches of up to ``GATHER``
events (``ConsumerRunner``'s ``gather_records``): a year of history touches each person's
"all" document once per batch of thousands instead of once per poll of a thousand.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple

import orjson
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.auth import ADMIN_ROLE
from services.recognition.points.store import person_bucket, person_field, person_id_of
from shared.calendar import BusinessCalendar, period_key
from shared.clock import Clock, as_utc
from shared.db import chunks, find_by_ids, insert_many_once, insert_new, patient
from shared.errors import BadInput, Forbidden
from shared.events import TYPE_HEADER, data_header, header_value
from shared.pagination import decode_cursor, encode_cursor, page_size
from shared.vocabulary import Department, Period, Priority, values

log = logging.getLogger(__name__)

INSIGHTS_GROUP = "points-insights"
LAYOUT_MARKER = "~layout:people-buckets"  # the person documents of an older store are folded into buckets
INSIGHTS_TOPICS = ("requests", "kudos", "points")
RULE_HEADER = data_header("rule")  # an award's rule, on its record (points.awarded's headers)
PERIODS = values(Period)
SHORT_NOTICE_HOURS = 24  # a rush with less notice than this (business hours) is "short notice"
# Histogram bins of business hours: upper bounds. A median or p90 is the upper bound of the bin
# it falls in (within a quarter of an hour below 1 h, half an hour to 8 h, 2 h to 40 h, ...).
BINS = ([0.25, 0.5, 0.75, 1.0] + [1.0 + 0.5 * i for i in range(1, 15)] + [8.0 + 2 * i for i in range(1, 17)]
        + [40.0 + 10 * i for i in range(1, 17)] + [float("inf")])
MAX_RETRIES = 5
# Events per batch when behind (a backlog), in polls of POLL_RECORDS. Each event held costs
# ~4 KB of Python objects while its batch is handled (10,000 held the points process at
# 216 MB RSS through a year's import; 1,000 at ~145).
GATHER = 3_000
POLL_RECORDS = 1_000
INSIGHTS_BUCKETS = 256  # people's documents per period (an admin's read of the company reads them all)
OFFSETS_KEPT = 50_000  # documents whose offsets this process remembers (a year: ~2,000 people x 4 periods)
DECODED_KEPT = 300  # people's documents kept for reads, each person decoded when first read (256 per period key)
TEAMS_KEPT = 64  # scopes whose sorted people are kept (everyone, and the managers who read lately)
ANSWERS_KEPT = 64  # teams' reps, recognition and queues kept for reads (a company's: ~1,000 reps, ~300 KB)
DEPARTMENTS_KEPT = 64  # departments' documents kept for reads, by their offsets (8 per period key)
VERSIONS_KEPT = 16  # period keys' versions documents as last written (a batch touches 4: week, month, quarter, all)
PEOPLE_DOCS_KEPT = 1_100  # people's documents held as last written (256 per period key; ~10 KB each in a year)


def rep_rules(rules) -> frozenset[str]:
    """The rules of the internal-selling score: those that award the requester, and thanking the
    helpers of a request (``requires`` a delivered request)."""
    return frozenset(r.id for r in rules.rules if r.to == "requester_id" or (r.on == "kudos.given" and r.requires))


def bin_of(hours: float) -> int:
    for i, bound in enumerate(BINS):
        if hours <= bound:
            return i
    return len(BINS) - 1


def quantile(histogram: dict[str, int], q: float) -> float | None:
    """The upper bound of the bin holding the ``q`` quantile; None without values."""
    counts = sorted((int(k), n) for k, n in (histogram or {}).items() if n)
    total = sum(n for _, n in counts)
    if not total:
        return None
    seen = 0
    for index, n in counts:
        seen += n
        if seen >= q * total:
            bound = BINS[index]
            return None if bound == float("inf") else bound
    return None


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """A new document from update paths (``"u1.ack.3": 1`` -> ``{"u1": {"ack": {"3": 1}}}``)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        target = out
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = value
    return out


class Marks(NamedTuple):
    """What a document has taken: the last offset per source partition (``o``), and per person
    the offsets their own document had in an older store (``l``, from ``Insights.upgrade``)."""
    offsets: dict[str, int]
    legacy: dict[str, dict[str, int]]


Touch = tuple[str, int, "str | None", dict, dict]  # source, offset, person field or None, increments, sets
BUCKET_FIELDS = ("_id", "o", "l", "v")  # a people's document's own fields; every other one is a person


def _packed(person: dict[str, Any]) -> str:
    # orjson: a busy batch packs thousands of people (the json module took a sixth of insights' time).
    return orjson.dumps(person, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _unpacked(value: Any) -> dict[str, Any]:
    """A person's fields in their bucket: a JSON string, or fields (a store from before them)."""
    if isinstance(value, str):
        return orjson.loads(value)
    return value or {}


@dataclass
class _People:
    """A people's document as read or written: its version (None: from before versions), its
    offsets and each person's fields as JSON."""
    version: int | None
    marks: Marks
    people: dict[str, str]

    @classmethod
    def of(cls, doc: dict) -> "_People":
        return cls(doc.get("v"), Marks(doc.get("o") or {}, doc.get("l") or {}),
                   {k: v if isinstance(v, str) else _packed(v or {}) for k, v in doc.items() if k not in BUCKET_FIELDS})

    def after(self, taken: dict[str, int], strings: dict[str, str]) -> "_People":
        return _People((self.version or 0) + 1, Marks({**self.marks.offsets, **taken}, self.marks.legacy),
                       {**self.people, **strings})


NO_PEOPLE = _People(0, Marks({}, {}), {})  # a people's document not stored yet


def _new_people_doc(doc_id: str, taken: dict[str, int], strings: dict[str, str]) -> dict[str, Any]:
    """A people's document inserted by its first change."""
    return {"_id": doc_id, "v": 1, "o": dict(taken), **strings}


def _keep(cache: OrderedDict, key: str, value: Any, limit: int) -> None:
    """Put ``value`` in an in-memory cache as the newest, dropping the oldest beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _people_write(doc_id: str, state: _People, change: tuple[dict[str, int], dict[str, str]]) -> tuple[dict, dict]:
    """The conditional update of a people's document: on the version read."""
    taken, strings = change
    version = state.version if state.version is not None else {"$exists": False}
    return ({"_id": doc_id, "v": version},
            {"$set": {**strings, **{f"o.{s}": o for s, o in taken.items()}}, "$inc": {"v": 1}})


def _person_key(person_id: str) -> str:
    """A person's field in their bucket's document: their id as a field name, never one of the
    bucket's own fields (``BUCKET_FIELDS``: a ``%`` first, which no escaped id starts with)."""
    field = person_field(person_id)
    return f"%{field}" if field in BUCKET_FIELDS else field


def _person_doc(person_id: str, key: str) -> str:
    """The document of a person's bucket for a period key (``pb:<bucket>:<key>``)."""
    return f"pb:{person_bucket(person_id, INSIGHTS_BUCKETS)}:{key}"


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Team(NamedTuple):
    """A scope's active people as the directory copy had them at ``generation``."""
    generation: int
    people: list
    by_id: dict
    buckets: tuple[str, ...]  # their people's documents' buckets


class Insights:
    def __init__(self, db, rules, calendar: BusinessCalendar, directory, clock: Clock | None = None):
        # With a clock, an event adds only to the periods that are not over yet (the current
        # one, or a later one): nothing reads an ended period, and a year of history written to
        # every past week, month and quarter quadrupled the writes of an import.
        self.clock = clock
        self._current: dict[str, str] = {}
        self.docs = db["insights"]
        self.requests = db["insight_requests"]
        self.calendar, self.directory = calendar, directory
        self.rep_rules = rep_rules(rules)
        # The offsets of documents as this process last wrote them (doc id -> {source: offset}).
        self._offsets: OrderedDict[str, Marks] = OrderedDict()
        # The people's documents as this process last wrote them (doc id -> version, offsets, people).
        self._people: OrderedDict[str, _People] = OrderedDict()
        # The read side's copies: a people's document as read, under its version (doc id ->
        # (v, {field: the person's JSON, replaced by its decoding when first read})), a scope's
        # people by name, and a team's answer under the versions of its documents; reads run
        # on several threads.
        self._decoded: OrderedDict[str, tuple[int, dict[str, dict]]] = OrderedDict()
        self._answers: OrderedDict[tuple, tuple[list, dict, set]] = OrderedDict()
        self._teams: OrderedDict[str, _Team] = OrderedDict()  # by scope: "*" (everyone) or a manager
        self._departments: OrderedDict[str, tuple[dict[str, int], dict]] = OrderedDict()  # doc id -> (offsets, doc)
        self._read_lock = threading.Lock()
        # The versions documents as this process last wrote or read them (key -> document).
        self._versions_docs: OrderedDict[str, dict | None] = OrderedDict()
        self._versions_lock = threading.Lock()

    def upgrade(self) -> int:
        """Fold the person documents of an older store (``p:<person>:<key>``, one each) into
        their buckets, once, before the consumer starts; return how many were folded.

        Exact whatever the old documents' offsets: each person keeps the offsets their own
        document had (``l.<person>``: a batch cut short by a crash may have reached some people
        and not others), and the bucket's offsets are the lowest of its people's (absent where
        one had none), so an event delivered again is skipped for the people who had it and
        added for those who did not. A crash midway folds the same values again."""
        if self.docs.find_one({"_id": LAYOUT_MARKER}, {"_id": 1}) is not None:
            return 0
        buckets: dict[str, dict[str, Any]] = {}
        old = []
        with patient():  # once, for an older store: a filtered search answers when it has read everything
            found = list(self.docs.find({"_id": {"$regex": "^p:"}}))
        for doc in found:
            _, person, key = doc["_id"].split(":", 2)
            old.append(doc["_id"])
            field, marks = _person_key(person), doc.get("o") or {}
            bucket = buckets.setdefault(_person_doc(person, key), {"o": None, "l": {}})
            bucket[field] = {name: value for name, value in doc.items() if name not in ("_id", "o")}
            bucket["l"][field] = marks
            # The bucket's offsets: the lowest of its people's, per source every one of them has.
            low = bucket["o"]
            bucket["o"] = dict(marks) if low is None else {s: min(o, marks[s]) for s, o in low.items() if s in marks}
        for part in chunks(list(buckets.items())):
            self.docs.bulk_write([UpdateOne({"_id": doc_id}, {"$set": fields}, upsert=True) for doc_id, fields in part],
                                 ordered=False)
        self.docs.update_one({"_id": LAYOUT_MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)
        for part in chunks(old):
            self.docs.delete_many({"_id": {"$in": part}})
        if old:
            log.info("insights person documents folded into buckets", extra={"documents": len(old), "buckets": len(buckets)})
        return len(old)

    # -- write side -----------------------------------------------------------------------------

    def not_counted(self, message) -> bool:
        """An award whose rule the internal-selling score does not count, known by its header
        (``data_rule``): passed by undecoded (the consumer's ``skip``). Most awards are of other
        rules (kudos received and given, acknowledgements), and decoding them was most of this
        stage's work. An award without the header (from before it) is decoded and looked at."""
        if header_value(message, TYPE_HEADER) != "points.awarded":
            return False
        rule = header_value(message, RULE_HEADER)
        return rule is not None and rule not in self.rep_rules

    def _keys(self, at: datetime) -> list[str]:
        keys = [(p, period_key(self.calendar, p, at)) for p in PERIODS]
        # Keys of one period sort as their periods do ("2026-W09" < "2026-W10" < "2027-W01").
        return [key for p, key in keys if key >= self._current.get(p, "")]

    def apply_batch(self, deliveries: Iterable) -> None:
        """Add a poll's events (``shared.bus.consumer.Delivery``) to the read model."""
        deliveries = list(deliveries)
        if self.clock is not None:
            now = self.clock.now()
            self._current = {p: period_key(self.calendar, p, now) for p in PERIODS}
        submitted = [d for d in deliveries if d.envelope.type == "request.submitted"]
        if submitted:
            insert_many_once(self.requests, [
                {"_id": d.payload.request_id, "submitted_at": as_utc(d.payload.at), "department": d.payload.department.value}
                for d in submitted])
        delivered_ids = [d.payload.request_id for d in deliveries if d.envelope.type == "request.delivered"]
        facts = find_by_ids(self.requests, delivered_ids) if delivered_ids else {}
        # Per document: the (partition, offset, person or None, increments, sets) of each event
        # touching it (a kudos may touch its giver and a recipient in one bucket).
        touches: dict[str, list[Touch]] = defaultdict(list)
        for d in deliveries:
            source = f"{d.topic}|{d.partition}"
            for doc_id, who, inc, sets in self._effects(d.envelope.type, d.payload, facts):
                touches[doc_id].append((source, d.offset, who, inc, sets))
        self._write_counters({doc_id: t for doc_id, t in touches.items() if not doc_id.startswith("pb:")})
        self._write_people({doc_id: t for doc_id, t in touches.items() if doc_id.startswith("pb:")})
        self._publish_versions(touches)

    def _write_counters(self, touches: dict[str, list[Touch]]) -> None:
        """The departments' documents: counters, added with ``$inc``."""
        # The offsets of the touched documents not remembered, in one read (an $in by _id); then
        # one write each, in bulks: inserts for new documents, conditional updates for the rest.
        unknown = [doc_id for doc_id in touches if doc_id not in self._offsets]
        known = {doc_id: Marks(doc.get("o") or {}, doc.get("l") or {})
                 for doc_id, doc in find_by_ids(self.docs, unknown, {"o": 1, "l": 1}).items()}
        inserts, updates, again = {}, {}, []
        for doc_id, events in touches.items():
            marks = self._offsets[doc_id] if doc_id in self._offsets else known.get(doc_id)
            change = self._change(events, marks or Marks({}, {}))
            if change is None:
                if marks is not None and doc_id not in self._offsets:
                    self._remember(doc_id, marks)  # its offsets go to the versions document too
                continue  # everything here was taken before
            (inserts if marks is None else updates)[doc_id] = (marks, change)
        for part in chunks(list(inserts)):
            refused = insert_new(self.docs, [_nested({"_id": doc_id, **inserts[doc_id][1][2]}) for doc_id in part])
            again += [doc_id for doc_id in part if doc_id in refused]
        for part in chunks(list(updates)):
            ops = [UpdateOne({"_id": doc_id, **self._condition(*updates[doc_id])}, updates[doc_id][1][1]) for doc_id in part]
            if self.docs.bulk_write(ops, ordered=False).matched_count < len(ops):
                again += part  # someone else wrote some of them: which, their offsets say
        for doc_id in again:
            self._offsets.pop(doc_id, None)
        for doc_id, (_, (taken, _, _)) in [*inserts.items(), *updates.items()]:
            if doc_id not in again:
                before = self._offsets.get(doc_id) or known.get(doc_id) or Marks({}, {})
                self._remember(doc_id, Marks({**before.offsets, **taken}, before.legacy))
        for doc_id in again:
            self._write(doc_id, touches[doc_id])

    def _write_people(self, touches: dict[str, list[Touch]]) -> None:
        """The people's documents: each person's fields one JSON string, rewritten whole.

        FerretDB decodes and encodes a whole document to update a field of it, at a cost that
        grows with its values: a bucket of eight people field by field (deal-update weeks, values,
        queues: ~650 values) took 8.4 ms an update and 5.8 ms a read, as eight strings 1.7 and 0.7
        (measured). So a batch reads the documents it does not hold (``_people``, the last it
        wrote), adds its events to each touched person in memory, and writes each document once:
        the new strings and offsets, conditional on the version it read (``v``; a document from
        before versions: on having none), so a document another writer changed meanwhile is
        read again and its part worked out anew. A person left as fields (a store from before
        the strings) is read as fields and written back as a string when next touched."""
        unknown = [doc_id for doc_id in touches if doc_id not in self._people]
        for doc_id, doc in find_by_ids(self.docs, unknown).items():
            self._keep_people(doc_id, _People.of(doc))
        inserts, updates, again = {}, {}, []
        for doc_id, events in touches.items():
            state = self._people.get(doc_id)
            change = self._people_change(events, state)
            if change is not None:
                (updates if state is not None else inserts)[doc_id] = (state, change)
        for part in chunks(list(inserts)):
            refused = insert_new(self.docs, [_new_people_doc(doc_id, *inserts[doc_id][1]) for doc_id in part])
            again += [doc_id for doc_id in part if doc_id in refused]
        for part in chunks(list(updates)):
            ops = [UpdateOne(*_people_write(doc_id, *updates[doc_id])) for doc_id in part]
            if self.docs.bulk_write(ops, ordered=False).matched_count < len(ops):
                again += part  # another writer changed some of them: each is read again below
        for doc_id, (state, (taken, strings)) in [*inserts.items(), *updates.items()]:
            if doc_id in again:
                self._people.pop(doc_id, None)
            else:
                self._keep_people(doc_id, (state or NO_PEOPLE).after(taken, strings))
        for doc_id in again:
            self._write_person_doc(doc_id, touches[doc_id])

    def _publish_versions(self, doc_ids: Iterable[str]) -> None:
        """Raise each period key's versions document (``pv:<key>``, :meth:`_raise_versions`) to
        the state of these documents as this process now knows them, written or found with
        nothing new (a batch delivered again after a crash between its writes and this one
        mends it): a people's document's version, a department's offsets. A read learns from
        it, in one document, which of a team's buckets and which departments changed."""
        buckets: dict[str, dict[str, int]] = defaultdict(dict)
        departments: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for doc_id in doc_ids:
            kind, name, key = doc_id.split(":", 2)
            if kind == "pb":
                state = self._people.get(doc_id)
                if state is not None and state.version is not None:
                    buckets[key][name] = state.version
            elif kind == "d" and doc_id in self._offsets:
                departments[key][name] = dict(self._offsets[doc_id].offsets)
        if buckets or departments:
            self._raise_versions(buckets, departments)

    def _raise_versions(self, buckets: dict[str, dict[str, int]], departments: dict[str, dict[str, dict[str, int]]] | None = None,
                        read: dict[str, dict | None] | None = None) -> None:
        """Raise each key's versions document to at least these versions (``{key: {bucket:
        version}}``; versions only grow) and departments' offsets (``{key: {department:
        {source: offset}}}``; the highest per source: a department's document's own ``o``).
        The document is ``{s: <JSON {"b": buckets, "d": departments}>, n: its writes}``: one
        string, because FerretDB decodes a document field by field (a company's 256 buckets as
        a map cost every insights read ~0.7 ms more than the string). Each write is the whole
        string, conditional on the write count it had (as this process last wrote or read it);
        another writer's change since makes it read and merge again. A store from before holds
        a map of buckets (``v``): read as it is, written as the string. The consumer's batches
        and the reads that mend a document may run at once; a read passes the documents as it
        just read them (``read``: None for one not there)."""
        with self._versions_lock:
            self._versions_docs.update(read or {})
            pending = {key: (buckets.get(key) or {}, (departments or {}).get(key) or {})
                       for key in {*buckets, *(departments or {})}}
            self._raise_versions_locked(pending)

    def _raise_versions_locked(self, pending: dict[str, tuple[dict[str, int], dict[str, dict[str, int]]]]) -> None:
        for _ in range(MAX_RETRIES * 4):
            stale = [key for key in pending if key not in self._versions_docs]
            if stale:
                found = find_by_ids(self.docs, [f"pv:{key}" for key in stale])
                for key in stale:
                    self._versions_docs[key] = found.get(f"pv:{key}")
            missed = {}
            for key, (versions, offsets) in pending.items():
                doc = self._versions_docs[key]
                known, known_departments = _versions_of(doc)
                merged = {**known, **{b: n for b, n in versions.items() if n > known.get(b, 0)}}
                merged_departments = {**known_departments, **{
                    name: {**known_departments.get(name, {}),
                           **{source: o for source, o in marks.items() if o > known_departments.get(name, {}).get(source, -1)}}
                    for name, marks in offsets.items()}}
                if doc is not None and "s" in doc and merged == known and merged_departments == known_departments:
                    continue
                written = {"_id": f"pv:{key}", "s": orjson.dumps({"b": merged, "d": merged_departments}).decode(),
                           "n": int((doc or {}).get("n", 0)) + 1}
                if doc is None:
                    ok = not insert_new(self.docs, [written])
                else:
                    ok = self.docs.update_one({"_id": written["_id"], "n": doc["n"] if "n" in doc else {"$exists": False}},
                                              {"$set": {"s": written["s"], "n": written["n"]}, "$unset": {"v": ""}}
                                              ).matched_count == 1
                if ok:
                    self._versions_docs[key] = written
                else:  # another writer first: read it again
                    self._versions_docs.pop(key, None)
                    missed[key] = (versions, offsets)
            while len(self._versions_docs) > VERSIONS_KEPT:
                self._versions_docs.popitem(last=False)
            if not missed:
                return
            pending = missed
        raise RuntimeError(f"versions documents still changing under this writer: {sorted(pending)}")

    def _people_change(self, events: list[Touch], state: "_People | None") -> tuple[dict[str, int], dict[str, str]] | None:
        """(offsets taken, each touched person's new JSON) for the events beyond the document's
        offsets; None when every one was taken before."""
        change = self._change(events, state.marks if state is not None else Marks({}, {}))
        if change is None:
            return None
        taken, update, _ = change
        stored = state.people if state is not None else {}
        touched: dict[str, dict[str, Any]] = {}
        for operator in ("$inc", "$set"):
            for path, value in (update.get(operator) or {}).items():
                if path.startswith("o."):
                    continue  # the document's offsets
                who, rest = path.split(".", 1)
                if who not in touched:
                    touched[who] = orjson.loads(stored[who]) if who in stored else {}
                *parents, leaf = rest.split(".")
                target = touched[who]
                for name in parents:
                    target = target.setdefault(name, {})
                target[leaf] = target.get(leaf, 0) + value if operator == "$inc" else value
        return taken, {who: _packed(person) for who, person in touched.items()}

    def _write_person_doc(self, doc_id: str, events: list[Touch]) -> None:
        """One people's document on its own, read first: after another writer changed it."""
        for _ in range(MAX_RETRIES):
            doc = self.docs.find_one({"_id": doc_id})
            state = _People.of(doc) if doc is not None else None
            change = self._people_change(events, state)
            if change is None:
                if state is not None:
                    self._keep_people(doc_id, state)
                return  # everything here was taken before
            taken, strings = change
            if state is None:
                try:
                    self.docs.insert_one(_new_people_doc(doc_id, taken, strings))
                except DuplicateKeyError:
                    continue
            elif not self.docs.update_one(*_people_write(doc_id, state, change)).matched_count:
                continue
            self._keep_people(doc_id, (state or NO_PEOPLE).after(taken, strings))
            return
        raise RuntimeError(f"insights document {doc_id} kept changing under this writer")

    def _keep_people(self, doc_id: str, state: "_People") -> None:
        _keep(self._people, doc_id, state, PEOPLE_DOCS_KEPT)

    def _remember(self, doc_id: str, marks: "Marks") -> None:
        _keep(self._offsets, doc_id, marks, OFFSETS_KEPT)

    @staticmethod
    def _change(events: list["Touch"], marks: "Marks"):
        """(offsets taken, the update, the fields of a new document) for the events beyond
        ``marks`` (a person's own offsets too, kept from an older store); None when every one
        was taken before."""
        inc: dict[str, int] = defaultdict(int)
        sets: dict[str, Any] = {}
        taken: dict[str, int] = {}
        seen: dict[tuple[str, str | None], int] = {}  # within this batch, per source and person
        for source, offset, who, event_inc, event_sets in events:
            own = (marks.legacy.get(who) or {}).get(source, -1) if who is not None else -1
            if offset <= max(marks.offsets.get(source, -1), own, seen.get((source, who), -1)):
                continue
            seen[(source, who)] = offset
            for field, n in event_inc.items():
                inc[field] += n
            sets.update(event_sets)
            taken[source] = max(offset, taken.get(source, -1))
        if not taken:
            return None
        offsets = {f"o.{s}": o for s, o in taken.items()}
        update = {"$set": {**sets, **offsets}}
        if inc:
            update["$inc"] = dict(inc)
        return taken, update, {**offsets, **sets, **inc}

    @staticmethod
    def _condition(marks: "Marks", change) -> dict[str, Any]:
        """The offsets the document had for the sources this change moves (none: not there)."""
        return {f"o.{s}": marks.offsets[s] if s in marks.offsets else {"$exists": False} for s in change[0]}

    def _effects(self, event_type: str, data, facts: dict) -> list[tuple[str, str | None, dict, dict]]:
        """(document id, person field or None, increments, fields set) for each document an
        event changes."""
        out: list[tuple[str, str | None, dict, dict]] = []

        def both(kind: str, owner: str, at: datetime, inc: dict, sets: dict | None = None) -> None:
            who = None
            if kind == "p":  # a person: their fields in their bucket's document
                who = _person_key(owner)
                inc = {f"{who}.{name}": n for name, n in inc.items()}
                sets = {f"{who}.{name}": v for name, v in (sets or {}).items()}
            for key in self._keys(at):
                out.append((_person_doc(owner, key) if who else f"{kind}:{owner}:{key}", who, inc, sets or {}))

        if event_type == "points.awarded":
            if data.rule in self.rep_rules and data.points:
                both("p", data.person_id, as_utc(data.at), {"score": data.points})
            return out
        if event_type == "kudos.given":
            at = as_utc(data.at)
            both("p", data.giver_id, at, {"kudos_given": 1})
            for recipient in dict.fromkeys(data.recipient_ids):
                both("p", recipient, at, {"kudos_received": 1, **{f"v.{person_field(v)}": 1 for v in data.values}})
            return out
        if not event_type.startswith("request."):
            return out
        at, queue = as_utc(data.at), data.department.value
        if event_type == "request.submitted":
            rush = data.priority == Priority.RUSH
            short = rush and data.notice_business_hours < SHORT_NOTICE_HOURS
            both("d", queue, at, {"received": 1, "rush": int(rush), "rush_short": int(short)})
            both("p", data.requester_id, at, {"submitted": 1, "brief_complete": int(data.brief_complete),
                                              "rush": int(rush), "rush_short": int(short), f"qd.{queue}": 1})
        elif event_type == "request.acknowledged":
            both("d", queue, at, {"acknowledged": 1, f"ack.{bin_of(data.business_hours_since_submitted)}": 1})
        elif event_type == "request.info_requested":
            both("d", queue, at, {"info_requests": 1})
        elif event_type == "request.deal_updated":
            week = period_key(self.calendar, "week", at)
            both("p", data.requester_id, at, {"deal_updates": 1}, {f"uw.{week}": 1})
        elif event_type == "request.delivered":
            inc = {"delivered": 1, "on_time": int(data.on_time)}
            fact = facts.get(data.request_id)
            if fact is not None:
                hours = self.calendar.business_hours_between(as_utc(fact["submitted_at"]), at)
                inc[f"dlv.{bin_of(hours)}"] = 1
            both("d", queue, at, inc)
        elif event_type == "request.closed":
            both("d", queue, at, {"closed": 1, "closed_loop": int(data.business_hours_since_delivered is not None)})
        return out

    def _write(self, doc_id: str, events: list["Touch"]) -> None:
        """One document on its own, read first: after another writer changed it under a bulk."""
        for _ in range(MAX_RETRIES):
            doc = self.docs.find_one({"_id": doc_id}, {"o": 1, "l": 1})
            marks = Marks(dict((doc or {}).get("o") or {}), (doc or {}).get("l") or {})
            change = self._change(events, marks)
            if change is None:
                self._remember(doc_id, marks)
                return  # everything here was taken before
            taken, update, fields = change
            if doc is None:
                try:
                    self.docs.insert_one(_nested({"_id": doc_id, **fields}))
                except DuplicateKeyError:
                    continue
            elif not self.docs.update_one({"_id": doc_id, **self._condition(marks, change)}, update).matched_count:
                continue
            self._remember(doc_id, Marks({**marks.offsets, **taken}, marks.legacy))
            return
        raise RuntimeError(f"insights document {doc_id} kept changing under this writer")

    # -- read side ------------------------------------------------------------------------------

    def read(self, actor, period: str, department: str | None, now: datetime,
             pages: dict[str, tuple[Any, str | None]] | None = None) -> dict[str, Any]:
        """The insights of ``period`` (the one containing ``now``) for the actor's team: a
        manager's reports down the chain, or everyone for an admin; ``department`` narrows it.

        ``pages`` may cut the two lists that grow with the team (a company is 2,000 people):
        ``{"reps": (first, after), "unrecognized": (first, after)}``; reps go by score (highest
        first, then name), the unrecognized by name; each list's full count and page info come
        with it (``reps_count``, ``reps_page_info``; in ``recognition``: ``unrecognized_count``,
        ``unrecognized_page_info``). Without it, every rep and person is listed."""
        if period not in PERIODS:
            raise BadInput("bad_period", f"period must be one of {', '.join(PERIODS)}", "period")
        if department is not None and department not in values(Department):
            raise BadInput("unknown_department", f"unknown department {department!r}", "department")
        scope = "*" if actor.role == ADMIN_ROLE else actor.id
        whole = self._team(scope)
        if actor.role != ADMIN_ROLE and not whole.people:
            raise Forbidden("not_a_manager", "insights are for managers (about the people below them) and admins")
        key = period_key(self.calendar, period, now)
        whole_team = whole.people
        team = whole_team if department is None else [p for p in whole_team if p.department == department]
        # A team is summed once per state of its documents (the reps sorted, the recognition,
        # the queues its requests went to): an admin's is the company, thousands of people.
        versions, department_offsets = self._versions(whole, key)
        answer_key = (key, department, scope, whole.generation, versions)
        with self._read_lock:
            kept = self._answers.get(answer_key) if versions is not None else None
        if kept is None:
            people = self._team_people(whole_team, key, versions)
            names = {p.id: p.name for p in team}
            reps = [self._rep(p, people[p.id]) for p in team if p.role == "rep"]
            reps.sort(key=lambda r: (-r["score"], names[r["person_id"]], r["person_id"]))
            # A manager: the queues their team works, and those their team's requests went to in
            # the period (a sales manager sees how pricing and legal answered their reps).
            used = {d for doc in people.values() for d, n in (doc.get("qd") or {}).items() if n}
            kept = (reps, self._recognition(team, people), used)
            if versions is not None:
                with self._read_lock:
                    _keep(self._answers, answer_key, kept, ANSWERS_KEPT)
        if actor.role == ADMIN_ROLE:
            departments = list(values(Department))
        else:
            departments = sorted({p.department for p in whole_team} | kept[2])
        if department is not None:
            departments = [d for d in departments if d == department]
        docs = self._department_docs(departments, key, department_offsets)
        names = {p.id: p.name for p in team}
        reps, recognition = kept[0], dict(kept[1])
        reps, reps_info = _cut(reps, (pages or {}).get("reps"), lambda r: [r["score"], names[r["person_id"]], r["person_id"]])
        unrecognized, info = _cut(recognition["unrecognized_ids"], (pages or {}).get("unrecognized"), lambda i: [names[i], i])
        recognition.update(unrecognized_ids=unrecognized, unrecognized_page_info=info["page_info"])
        named = {r["person_id"] for r in reps} | set(recognition["unrecognized_ids"])
        return {
            "period": period, "key": key,
            "departments": [self._department(d, docs.get(f"d:{d}:{key}") or {}) for d in departments],
            "reps": reps, "reps_count": reps_info["total_count"], "reps_page_info": reps_info["page_info"],
            "recognition": recognition,
            # The people it names, from the directory copy (as the requests service shows them),
            # so the gateway needs no lookup for their names.
            "people": [whole.by_id[i].as_record() for i in sorted(named, key=lambda i: (names[i], i))],
        }

    def _team(self, scope: str) -> "_Team":
        """The active people of a scope (``*``: everyone; else a manager's reports down the
        chain), by name, kept while the directory copy stays the same (sorting a company's
        2,000 people for every read was a tenth of an admin's)."""
        generation = self.directory.generation
        with self._read_lock:
            kept = self._teams.get(scope)
        if kept is not None and kept.generation == generation:
            return kept
        members = self.directory.everyone() if scope == "*" else self.directory.below(scope)
        people = sorted((p for p in members if p.active), key=lambda p: (p.name, p.id))
        team = _Team(generation, people, {p.id: p for p in people},
                     tuple(sorted({str(person_bucket(p.id, INSIGHTS_BUCKETS)) for p in people})))
        with self._read_lock:
            _keep(self._teams, scope, team, TEAMS_KEPT)
        return team

    def _versions(self, team: "_Team", key: str) -> tuple[tuple | None, dict[str, dict[str, int]]]:
        """The versions of a team's people's documents for ``key``, and the departments'
        offsets, from the key's versions document (one read, ``_publish_versions``); a bucket
        it does not name yet (a store from before it) is asked of the bucket's own document,
        and added to it. The versions are None when a document is from before versions (the
        team is then read whole every time)."""
        buckets = team.buckets
        doc = self.docs.find_one({"_id": f"pv:{key}"})
        known, departments = _versions_of(doc)
        versions = {b: known[b] for b in buckets if b in known}
        missing = {f"pb:{b}:{key}": b for b in buckets if b not in known}
        if missing:
            found = find_by_ids(self.docs, list(missing), {"v": 1})
            if any(bucket.get("v") is None for bucket in found.values()):
                return None, departments
            mended = {missing[doc_id]: int(bucket["v"]) for doc_id, bucket in found.items()}
            versions.update(mended)
            if mended:
                self._raise_versions({key: mended}, read={key: doc})
        return tuple((f"pb:{b}:{key}", versions[b]) for b in buckets if b in versions), departments

    def _department_docs(self, names: list[str], key: str, offsets: dict[str, dict[str, int]]) -> dict[str, dict]:
        """The departments' documents for ``key``: as this process read them while their
        offsets are those the versions document names (``offsets``, just read), else read
        again (``$in``). A year's departments' histograms cost FerretDB ~1 ms a read."""
        ids = {f"d:{name}:{key}": name for name in names}
        docs: dict[str, dict] = {}
        with self._read_lock:
            for doc_id, name in ids.items():
                kept = self._departments.get(doc_id)
                if kept is not None and name in offsets and kept[0] == offsets[name]:
                    docs[doc_id] = kept[1]
        for doc_id, doc in find_by_ids(self.docs, [i for i in ids if i not in docs]).items():
            docs[doc_id] = doc
            with self._read_lock:
                _keep(self._departments, doc_id, (dict(doc.get("o") or {}), doc), DEPARTMENTS_KEPT)
        return docs

    def _team_people(self, team: list, key: str, versions: tuple | None) -> dict[str, dict]:
        """Each person's figures for ``key``: their buckets' documents as this process read
        them, while their version is the one ``versions`` (just read) names, else read again
        (``$in``); a person's JSON decoded when first needed and kept with its document.
        Decoding 2,000 people's JSON for every read was most of an admin's read."""
        wanted = dict(versions or ())
        ids = sorted({_person_doc(p.id, key) for p in team})
        with self._read_lock:
            docs = {i: self._decoded[i][1] for i in ids if i in self._decoded and self._decoded[i][0] == wanted.get(i)}
        for doc_id, doc in find_by_ids(self.docs, [i for i in ids if i not in docs]).items():
            docs[doc_id] = {f: value for f, value in doc.items() if f not in BUCKET_FIELDS}
            if doc.get("v") is not None:  # a document from before versions is read every time
                with self._read_lock:
                    _keep(self._decoded, doc_id, (doc["v"], docs[doc_id]), DECODED_KEPT)
        people = {}
        for p in team:
            fields, field = docs.get(_person_doc(p.id, key)) or {}, _person_key(p.id)
            value = fields.get(field)
            if isinstance(value, str):
                value = fields[field] = _unpacked(value)  # kept decoded (the same dict for every thread)
            people[p.id] = value or {}
        return people

    @staticmethod
    def _department(name: str, doc: dict) -> dict[str, Any]:
        received, delivered = int(doc.get("received", 0)), int(doc.get("delivered", 0))
        return {
            "department": name, "requests_received": received,
            "acknowledged": int(doc.get("acknowledged", 0)), "delivered": delivered,
            "ack_median_hours": quantile(doc.get("ack"), 0.5), "ack_p90_hours": quantile(doc.get("ack"), 0.9),
            "deliver_median_hours": quantile(doc.get("dlv"), 0.5), "deliver_p90_hours": quantile(doc.get("dlv"), 0.9),
            "on_time_share": share(int(doc.get("on_time", 0)), delivered),
            "rush_share": share(int(doc.get("rush", 0)), received),
            "rush_short_notice_share": share(int(doc.get("rush_short", 0)), received),
            "info_loops_per_request": share(int(doc.get("info_requests", 0)), received),
            "closed_loop_share": share(int(doc.get("closed_loop", 0)), delivered),
        }

    @staticmethod
    def _rep(person, doc: dict) -> dict[str, Any]:
        submitted = int(doc.get("submitted", 0))
        return {
            "person_id": person.id, "score": int(doc.get("score", 0)), "requests": submitted,
            "rush_share": share(int(doc.get("rush_short", 0)), submitted),
            "complete_brief_share": share(int(doc.get("brief_complete", 0)), submitted),
            "deal_updates": int(doc.get("deal_updates", 0)), "weeks_with_deal_update": len(doc.get("uw") or {}),
        }

    @staticmethod
    def _recognition(team: list, docs: dict[str, dict]) -> dict[str, Any]:
        gave = [p for p in team if docs[p.id].get("kudos_given")]
        got = [p for p in team if docs[p.id].get("kudos_received")]
        received = sum(int(docs[p.id].get("kudos_received", 0)) for p in team)
        thanked: dict[str, int] = defaultdict(int)
        for p in team:
            for value, n in (docs[p.id].get("v") or {}).items():
                thanked[person_id_of(value)] += int(n)  # a value's name as a field (store.person_field)
        top = sorted(thanked.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        return {
            "people": len(team), "gave_share": share(len(gave), len(team)), "received_share": share(len(got), len(team)),
            "kudos_per_person": share(received, len(team)),
            "top_values": [{"value": v, "count": n} for v, n in top],
            "unrecognized_ids": [p.id for p in team if not docs[p.id].get("kudos_received")],  # by name
            "unrecognized_count": len(team) - len(got),
        }


def _versions_of(doc: dict | None) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """A versions document's buckets with their versions, and departments with their offsets:
    its string ``s``, or the map ``v`` of buckets of a store from before."""
    if not doc:
        return {}, {}
    if "s" in doc:
        parsed = orjson.loads(doc["s"])
        return parsed.get("b") or {}, parsed.get("d") or {}
    return {bucket: int(n) for bucket, n in (doc.get("v") or {}).items()}, {}


def _cut(items: list, page: tuple[Any, str | None] | None, sort_values) -> tuple[list, dict[str, Any]]:
    """A page of ``items`` (already in order) after the cursor of the item whose ``sort_values``
    it names; the whole list when there is no ``page``. Returns the items and
    ``{"total_count", "page_info"}``."""
    total = len(items)
    if page is None:
        return items, {"total_count": total, "page_info": {
            "has_next_page": False, "has_previous_page": False,
            "start_cursor": encode_cursor(sort_values(items[0])) if items else None,
            "end_cursor": encode_cursor(sort_values(items[-1])) if items else None}}
    first, after = page
    size = page_size(first)
    start = 0
    if after and items:
        mark = _order(decode_cursor(after, len(sort_values(items[0]))))
        # Past the named item in the list's order: the first one whose values sort after it
        # (stable when people join or leave the list between two pages).
        try:
            start = next((i for i, item in enumerate(items) if _order(sort_values(item)) > mark), total)
        except TypeError:  # values of another list's cursor
            raise BadInput("bad_cursor", "the cursor is not one this list gave out", field="after") from None
    chosen = items[start:start + size]
    return chosen, {"total_count": total, "page_info": {
        "has_next_page": start + size < total, "has_previous_page": start > 0,
        "start_cursor": encode_cursor(sort_values(chosen[0])) if chosen else None,
        "end_cursor": encode_cursor(sort_values(chosen[-1])) if chosen else after}}


def _order(values: list) -> tuple:
    """Sort values in the lists' order: a number (a score) highest first, strings ascending."""
    return tuple((-v if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for v in values)
