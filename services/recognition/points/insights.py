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

A read (insights_read.py, mixed into :class:`Insights`) is the departments' documents and the
team's buckets for one period key, by ``$in``: the cost of the team, never of the history; and
only those changed since this process last read them, as the key's versions document
(``pv:<key>``, ``_raise_versions``) says. The documents' shapes and their helpers are in
insights_docs.py.

Idempotent: each document keeps the last offset it took from each topic partition
(``o.<topic>|<partition>``), and takes an event only beyond it; every batch is added and
written back with a conditional write per document on the offsets it had (a department's) or
its version (a people's: a document another writer changed meanwhile is read again), so a
redelivered batch, with other boundaries or not, adds nothing twice.

Cost: one write per touched document per batch, whatever number of events touch it, all of a
batch's writes in bulks (``shared.db.WRITE_CHUNK``); the offsets of the documents this
process wrote last are kept in memory (``OFFSETS_KEPT``), so a batch reads only documents it
has not seen (or that another writer changed: its conditional write misses and it is read
again). Behind (an import, a restart, a burst), the consumer hands over batches of up to
``GATHER`` events (``ConsumerRunner``'s ``gather_records``), and their changes are held, added
up per document (``add``), until ``FLUSH_EVENTS`` are held or the consumer is caught up
(``flush``, then the commit: ``ConsumerRunner``'s ``flush``): a year of history touches each
person's "all" document once per 20,000 events instead of once per poll of a thousand. A
crash loses what was held, and the consumer reads it again from its last commit.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from services.recognition.points.insights_docs import (
    NO_PEOPLE, PERIODS, Marks, Touch, _base_marks, _Change, _condition, _Held, _keep, _marks_of, _nested, _new_people_doc,
    _People, _people_write, _person_doc, _person_key, _strings, _versions_of, bin_of,
)
from services.recognition.points.insights_read import InsightsReads
from services.recognition.points.store import person_field
from shared.bus.consumer import Replay
from shared.calendar import BusinessCalendar, period_key
from shared.clock import Clock, as_utc
from shared.db import chunks, find_by_ids, insert_many_once, insert_new, patient
from shared.events import TYPE_HEADER, data_header, header_value
from shared.events.schemas import awards_in
from shared.vocabulary import Priority

log = logging.getLogger(__name__)

INSIGHTS_GROUP = "points-insights"
LAYOUT_MARKER = "~layout:people-buckets"  # the person documents of an older store are folded into buckets
INSIGHTS_TOPICS = ("requests", "kudos", "points")
RULES_HEADER = data_header("rules")  # a person's awards' rules, on their record (points.awarded's headers)
RULE_HEADER = data_header("rule")  # the rule of a version-1 record's one award (an older topic's)
SHORT_NOTICE_HOURS = 24  # a rush with less notice than this (business hours) is "short notice"
MAX_RETRIES = 5
# Events per batch when behind (a backlog), in polls of POLL_RECORDS. Each event held costs
# ~4 KB of Python objects while its batch is handled (10,000 held the points process at
# 216 MB RSS through a year's import; 1,000 at ~145).
GATHER = 3_000
# Behind, the events added before the documents are written and the offsets committed
# (``Insights.add``): each touched document is rewritten once per this many events. Held as
# their documents' changes added up (bounded by people x periods, not by events).
FLUSH_EVENTS = 20_000
POLL_RECORDS = 1_000
OFFSETS_KEPT = 50_000  # documents whose offsets this process remembers (a year: ~2,000 people x 4 periods)
VERSIONS_KEPT = 16  # period keys' versions documents as last written (a batch touches 4: week, month, quarter, all)
PEOPLE_DOCS_KEPT = 1_100  # people's documents held as last written (256 per period key; ~10 KB each in a year)


def rep_rules(rules) -> frozenset[str]:
    """The rules of the internal-selling score: those that award the requester, and thanking the
    helpers of a request (``requires`` a delivered request)."""
    return frozenset(r.id for r in rules.rules if r.to == "requester_id" or (r.on == "kudos.given" and r.requires))


def _merged(effects: list[tuple[str, str | None, dict, dict]]) -> list[tuple[str, str | None, dict, dict]]:
    """Effects on the same document added up into one (an event's changes to a document are
    taken together: a second at the same offset would be passed by as taken)."""
    by_doc: dict[str, tuple[str, str | None, dict, dict]] = {}
    for doc_id, who, inc, sets in effects:
        if doc_id not in by_doc:
            by_doc[doc_id] = (doc_id, who, dict(inc), dict(sets))
            continue
        merged = by_doc[doc_id]
        for name, n in inc.items():
            merged[2][name] = merged[2].get(name, 0) + n
        merged[3].update(sets)
    return list(by_doc.values())


class Insights(InsightsReads):
    """The read model's write side (its consumer's batches: ``add`` and ``flush``) and, mixed in from
    insights_read.py, its reads (``read``)."""

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
        self._init_reads()  # the read side's copies (insights_read.py)
        # The versions documents as this process last wrote or read them (key -> document).
        self._versions_docs: OrderedDict[str, dict | None] = OrderedDict()
        self._versions_lock = threading.Lock()
        # Documents' events added and not yet written (``add``, ``flush``), and the documents
        # written whose key's versions document is not raised yet.
        self._held: dict[str, _Held] = {}
        self._unannounced: set[str] = set()

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
        """A person's awards none of whose rules the internal-selling score counts, known by
        their header (``data_rules``; a version-1 record's one award by ``data_rule``): passed by
        undecoded (the consumer's ``skip``). Most awards are of other rules (kudos received and
        given, acknowledgements), and decoding them was most of this stage's work. A record
        without the header (from before it) is decoded and looked at."""
        if header_value(message, TYPE_HEADER) != "points.awarded":
            return False
        rules = header_value(message, RULES_HEADER)
        if rules is not None:  # a person's awards (version 2): passed by when none is counted
            return not any(rule in self.rep_rules for rule in rules.split(","))
        rule = header_value(message, RULE_HEADER)
        return rule is not None and rule not in self.rep_rules

    def _keys(self, at: datetime) -> list[str]:
        keys = [(p, period_key(self.calendar, p, at)) for p in PERIODS]
        # Keys of one period sort as their periods do ("2026-W09" < "2026-W10" < "2027-W01").
        return [key for p, key in keys if key >= self._current.get(p, "")]

    def apply_batch(self, deliveries: Iterable) -> None:
        """Add events (``shared.bus.consumer.Delivery``) to the read model and write them."""
        self.add(deliveries)
        self.flush()

    def add(self, deliveries: Iterable) -> None:
        """Add a batch's events to what is held (:class:`_Held`), written by :meth:`flush`.

        The consumer (``ConsumerRunner``'s ``flush``) calls flush once a backlog's batches held
        ``FLUSH_EVENTS`` events or 10 s passed, and after every batch that leaves it caught up: so a live event
        is written at once, and a backlog rewrites each touched document once per
        ``FLUSH_EVENTS`` events, not once per gathered batch (its offsets are committed only
        after). An event already held, or taken by the document, is passed by (offsets)."""
        deliveries = list(deliveries)
        if self.clock is not None:
            now = self.clock.now()
            self._current = {p: period_key(self.calendar, p, now) for p in PERIODS}
        submitted = [d for d in deliveries if d.envelope.type == "request.submitted"]
        if submitted:  # at once, not held: a delivery held later reads its request's submission
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
        self._hold(touches)

    def _hold(self, touches: dict[str, list[Touch]]) -> None:
        """Merge each document's new events into what it holds; the documents neither held nor
        in memory (``_offsets``, ``_people``: as last written) read first, in one query each kind."""
        # Each document not held as this process last wrote it (taken now: keeping those read
        # below may push some out of memory), or as read now (None: not stored).
        bases = {doc_id: (self._people if doc_id.startswith("pb:") else self._offsets).get(doc_id)
                 for doc_id in touches if doc_id not in self._held}
        unknown = [doc_id for doc_id, base in bases.items() if base is None]
        for doc_id, doc in find_by_ids(self.docs, [doc_id for doc_id in unknown if doc_id.startswith("pb:")]).items():
            bases[doc_id] = _People.of(doc)
            self._keep_people(doc_id, bases[doc_id])
        counters = [doc_id for doc_id in unknown if not doc_id.startswith("pb:")]
        for doc_id, doc in find_by_ids(self.docs, counters, {"o": 1, "l": 1}).items():
            bases[doc_id] = _marks_of(doc)
            self._remember(doc_id, bases[doc_id])
        # Their key's versions document is raised with the next flush, whether they change or
        # not: one found with nothing new mends a versions document a crash left behind.
        self._unannounced.update(touches)
        changes: dict[str, tuple[Any, _Change]] = {}
        for doc_id, events in touches.items():
            held = self._held.get(doc_id)
            base = held.base if held is not None else bases[doc_id]
            marks = _base_marks(base)
            if held is not None:  # what it holds counts as taken
                marks = Marks({**marks.offsets, **held.taken}, marks.legacy)
            change = self._change(events, marks)
            if change is not None:
                changes[doc_id] = (base, change)
        # Worked out in full before any is held: a batch that fails is handed over again (or
        # one event at a time) and must find nothing of itself held.
        for doc_id, (base, change) in changes.items():
            held = self._held.get(doc_id)
            if held is None:
                held = self._held[doc_id] = _Held(base, dict(change.first), {}, {}, {})
            held.add(change)

    def flush(self) -> None:
        """Write what is held: one write per document (inserts for new ones, bulks of
        conditional updates for the rest), then the key's versions documents.

        A document another writer changed since it was read is read again: when none of the
        events it holds are in it (another partition's writer), they are added to it as it is
        now; when all are, it is passed by; when some are (a partition that moved from this
        process to another and back, or the other way), what is held cannot be split: all of
        it is let go and :class:`Replay` raised, so the consumer reads again from its last
        commit (the documents written meanwhile take nothing twice: their offsets say)."""
        if self._held:
            self._write_counters([doc_id for doc_id in self._held if not doc_id.startswith("pb:")])
            self._write_people([doc_id for doc_id in self._held if doc_id.startswith("pb:")])
        if self._unannounced:
            self._publish_versions(self._unannounced)
            self._unannounced = set()

    def _write_counters(self, doc_ids: list[str]) -> None:
        """The departments' documents: counters, added with ``$inc``."""
        inserts = [doc_id for doc_id in doc_ids if self._held[doc_id].base is None]
        updates = [doc_id for doc_id in doc_ids if self._held[doc_id].base is not None]
        again = []
        refused = insert_new(self.docs, [_nested({"_id": doc_id, **self._held[doc_id].fields()}) for doc_id in inserts])
        again += [doc_id for doc_id in inserts if doc_id in refused]
        for part in chunks(updates):
            ops = [UpdateOne({"_id": doc_id, **_condition(self._held[doc_id].base, self._held[doc_id].taken)},
                             self._held[doc_id].update()) for doc_id in part]
            if self.docs.bulk_write(ops, ordered=False).matched_count < len(ops):
                again += part  # someone else wrote some of them: which, their offsets say
        for doc_id in doc_ids:
            if doc_id not in again:
                held = self._held.pop(doc_id)
                before = _base_marks(held.base)
                self._remember(doc_id, Marks({**before.offsets, **held.taken}, before.legacy))
        for doc_id in again:
            self._offsets.pop(doc_id, None)
            self._write(doc_id)

    def _write_people(self, doc_ids: list[str]) -> None:
        """The people's documents: each person's fields one JSON string, rewritten whole.

        FerretDB decodes and encodes a whole document to update a field of it, at a cost that
        grows with its values: a bucket of eight people field by field (deal-update weeks, values,
        queues: ~650 values) took 8.4 ms an update and 5.8 ms a read, as eight strings 1.7 and 0.7
        (measured). So each document is read once (or taken as this process last wrote it,
        ``_people``), its held events added to each touched person in memory, and written once:
        the new strings and offsets, conditional on the version it had (``v``; a document from
        before versions: on having none), so a document another writer changed meanwhile is
        read again and its part worked out anew. A person left as fields (a store from before
        the strings) is read as fields and written back as a string when next touched."""
        strings = {doc_id: _strings(self._held[doc_id].base, self._held[doc_id]) for doc_id in doc_ids}
        inserts = [doc_id for doc_id in doc_ids if self._held[doc_id].base is None]
        updates = [doc_id for doc_id in doc_ids if self._held[doc_id].base is not None]
        again = []
        refused = insert_new(self.docs, [_new_people_doc(doc_id, self._held[doc_id].taken, strings[doc_id]) for doc_id in inserts])
        again += [doc_id for doc_id in inserts if doc_id in refused]
        for part in chunks(updates):
            ops = [UpdateOne(*_people_write(doc_id, self._held[doc_id].base, (self._held[doc_id].taken, strings[doc_id])))
                   for doc_id in part]
            if self.docs.bulk_write(ops, ordered=False).matched_count < len(ops):
                again += part  # another writer changed some of them: each is read again below
        for doc_id in doc_ids:
            if doc_id not in again:
                held = self._held.pop(doc_id)
                self._keep_people(doc_id, (held.base or NO_PEOPLE).after(held.taken, strings[doc_id]))
        for doc_id in again:
            self._people.pop(doc_id, None)
            self._write_person_doc(doc_id)

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

    def _write_person_doc(self, doc_id: str) -> None:
        """One people's document on its own, read first: after another writer changed it."""
        for _ in range(MAX_RETRIES):
            doc = self.docs.find_one({"_id": doc_id})
            state = _People.of(doc) if doc is not None else None
            held = self._rebased(doc_id, state.marks if state is not None else None, state)
            if held is None:
                if state is not None:
                    self._keep_people(doc_id, state)
                return  # everything held was taken before
            strings = _strings(state, held)
            if state is None:
                try:
                    self.docs.insert_one(_new_people_doc(doc_id, held.taken, strings))
                except DuplicateKeyError:
                    continue
            elif not self.docs.update_one(*_people_write(doc_id, state, (held.taken, strings))).matched_count:
                continue
            del self._held[doc_id]
            self._keep_people(doc_id, (state or NO_PEOPLE).after(held.taken, strings))
            return
        raise RuntimeError(f"insights document {doc_id} kept changing under this writer")

    def _rebased(self, doc_id: str, marks: "Marks | None", base: Any) -> "_Held | None":
        """What ``doc_id`` holds, on the document as just read (its ``marks``, None: not there):
        None when it has every held event already; :class:`Replay` when it has some of them."""
        held = self._held[doc_id]
        offsets = marks.offsets if marks is not None else {}
        have = [offsets.get(source, -1) >= last for source, last in held.taken.items()]
        if all(have):
            del self._held[doc_id]
            return None
        if any(have) or any(held.first[source] <= offsets.get(source, -1) for source in held.taken):
            for held_id in self._held:  # read afresh when their events come again: another writer was here
                self._people.pop(held_id, None)
                self._offsets.pop(held_id, None)
            self._held.clear()
            raise Replay(f"insights document {doc_id} has some of the events held for it (a partition moved)")
        held.base = base
        return held

    def _keep_people(self, doc_id: str, state: "_People") -> None:
        _keep(self._people, doc_id, state, PEOPLE_DOCS_KEPT)

    def _remember(self, doc_id: str, marks: "Marks") -> None:
        _keep(self._offsets, doc_id, marks, OFFSETS_KEPT)

    @staticmethod
    def _change(events: list["Touch"], marks: "Marks") -> "_Change | None":
        """The events beyond ``marks`` (a person's own offsets too, kept from an older store),
        added up; None when every one was taken before."""
        inc: dict[str, int] = defaultdict(int)
        sets: dict[str, Any] = {}
        taken: dict[str, int] = {}
        first: dict[str, int] = {}
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
            first[source] = min(offset, first.get(source, offset))
        if not taken:
            return None
        return _Change(taken, first, dict(inc), sets)

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
            for award in awards_in(data):
                if award.rule in self.rep_rules and award.points:
                    both("p", award.person_id, as_utc(award.at), {"score": award.points})
            return _merged(out)  # a record's awards are one event at one offset: one change per document
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

    def _write(self, doc_id: str) -> None:
        """One department's document on its own, read first: after another writer changed it."""
        for _ in range(MAX_RETRIES):
            doc = self.docs.find_one({"_id": doc_id}, {"o": 1, "l": 1})
            marks = _marks_of(doc) if doc is not None else None
            held = self._rebased(doc_id, marks, marks)
            if held is None:
                self._remember(doc_id, marks)
                return  # everything held was taken before
            if doc is None:
                try:
                    self.docs.insert_one(_nested({"_id": doc_id, **held.fields()}))
                except DuplicateKeyError:
                    continue
            elif not self.docs.update_one({"_id": doc_id, **_condition(marks, held.taken)}, held.update()).matched_count:
                continue
            del self._held[doc_id]
            before = marks or Marks({}, {})
            self._remember(doc_id, Marks({**before.offsets, **held.taken}, before.legacy))
            return
        raise RuntimeError(f"insights document {doc_id} kept changing under this writer")
