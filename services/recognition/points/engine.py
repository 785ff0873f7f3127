"""The scoring engine: stage 1 turns source events into awards, stage 2 applies them.

Stage 1, :class:`Scorer` (consumer group ``points-score`` on ``requests`` and ``kudos``):
evaluates the rules file for an event, runs the stateful guards, stores one ``scored_events``
document per source event with its awards (one write), then publishes the awards as
``points.awarded`` events before the consumer commits. The stored document is the record of
what to publish: an event delivered again (a crash or a rebalance before the commit) is not
scored again, but its stored awards are published again, and stage 2 skips awards it has.

Stage 2, :class:`Applier` (consumer group ``points-apply`` on ``points``, keyed by person):
one person's awards arrive in one partition, in order, so stage 2 is sequential per person.
It writes the ledger entry (its id is the award's deterministic id), adds the points to the
person's totals for each period with ``$inc`` upserts, and advances badge progress. Each of
those documents remembers the last (partition, offset) it applied, so a replayed message
changes nothing, and a duplicate publish of the same award (another offset) is recognised by
its ledger entry and skipped.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from pymongo import ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.recognition.directory import Directory
from services.recognition.points.ranking import Ranking, ScoreChange
from services.recognition.points.rules import Badge, Rule, RuleSet
from shared.bus.outbox import with_outbox
from shared.calendar import BusinessCalendar, period_key, previous_period_key
from shared.clock import Clock, utc
from shared.db import chunks, find_by_ids, insert_once
from shared.events import Envelope, build_event
from shared.events.envelope import parse_time
from shared.events.schemas import PointsAwarded
from shared.feeds import Entry, FeedStore

log = logging.getLogger(__name__)
SOURCE = "points"
PERIODS = ("week", "month", "quarter", "all")
RUSH_SHORT_NOTICE_HOURS = 24
WHOLE_BOARD_AT = 100  # people changed in one board update beyond which the whole entries map is written
WEEKS_KEPT = 12
BOARD_CACHE_ENTRIES = 20_000  # people's entries on the boards an applier keeps in memory, in all


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
            if _safe_key(doc.get("requester_id") or "") and _safe_key(str(doc["_id"])):
                days.setdefault(_day_id(doc["requester_id"], doc["at"]), {})[f"r.{doc['_id']}"] = _submission(doc)
        for part in chunks(list(days.items())):
            self.submission_days.bulk_write([UpdateOne({"_id": i}, {"$set": s}, upsert=True) for i, s in part], ordered=False)
        lists = [(ledger_list(d["person_id"]), Entry(d["_id"], utc(d["at"])))
                 for d in self.ledger.find({"$or": [{"points": {"$gt": 0}}, {"capped": True}]}, {"person_id": 1, "at": 1})
                 if _safe_key(d.get("person_id") or "")]
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


def _day_id(person_id: str, at: datetime) -> str:
    return f"{person_id}:{utc(at).strftime('%Y-%m-%d')}"


def _submission(doc: dict) -> dict:
    return {"t": utc(doc["at"]), "s": bool(doc.get("rush_short_notice"))}


def entry_id(source_event_id: str, rule_id: str, person_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:points:{source_event_id}:{rule_id}:{person_id}"))


def event_time(envelope: Envelope) -> datetime:
    """When it happened: the data's ``at`` if it has one, else the envelope time."""
    at = envelope.data.get("at")
    return parse_time(at) if isinstance(at, str) else envelope.time


# -- stage 1 ------------------------------------------------------------------------------------

@dataclass
class Scorer:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock
    # Sends events and waits for the broker's ack (EventProducer.publish_all); None in a
    # rebuild: history is re-scored, not re-announced.
    publish: Callable[[list[Envelope]], Any] | None = None

    def score(self, envelope: Envelope) -> list[dict[str, Any]] | None:
        """Score one source event; returns its awards, or None if it was scored before."""
        scored = self.score_batch([envelope])
        return scored[0]["awards"] if scored else None

    def score_batch(self, envelopes: list[Envelope]) -> list[dict[str, Any]]:
        """Score source events in order, store them in bulk, publish their awards; return the
        new documents (``_id`` = the source event id, with their awards).

        The guards and request facts each event touches are written as it is scored; all of
        them are idempotent by award id, so a batch interrupted before the insert is simply
        scored again. Events scored before (a redelivery, or the same event published twice)
        are not scored again, but their stored awards are published again: the consumer
        commits only after this returns, so a crash between the insert and the publish is
        mended by the redelivery.
        """
        before = find_by_ids(self.store.scored_events, [e.id for e in envelopes], {"awards": 1})
        todo, seen = [], set(before)
        for envelope in envelopes:
            if envelope.id in seen:
                continue
            seen.add(envelope.id)
            todo.append(envelope)
        docs = self._score_and_store(todo) if todo else []
        if self.publish:
            self.publish([self._event(award) for doc in [*before.values(), *docs] for award in doc["awards"]])
        return docs

    def _score_and_store(self, todo: list[Envelope]) -> list[dict[str, Any]]:
        try:
            docs = self._score_all(todo, batched=len(todo) > 1)
        except _GuardRace:
            log.info("another scorer counted against this batch's guards meanwhile: scoring it again, "
                     "one write at a time", extra={"events": len(todo)})
            docs = self._score_all(todo, batched=False)
        # A document refused as a duplicate was scored meanwhile by another process (a
        # rebalance): that process publishes its copy's awards.
        docs = _insert_many_once(self.store.scored_events, docs)
        # Only now that the thanks its deliveries awarded are stored (a crash before this line
        # scores the delivery again, with the same waiting thanks).
        cleared = [UpdateOne({"_id": doc["request_id"]}, {"$set": {"waiting_thanks": []}})
                   for doc in docs if doc["type"] == "request.delivered"]
        for part in chunks(cleared):
            self.store.request_facts.bulk_write(part, ordered=False)
        return docs

    def _score_all(self, envelopes: list[Envelope], batched: bool) -> list[dict[str, Any]]:
        batch = _Batch(self.store, self.directory, batched)
        if batched:  # what the batch's guards, requests and counterparts are, read in one query each
            guard_ids, people, requests = [], [], []
            for envelope in envelopes:
                if isinstance(envelope.data.get("request_id"), str):
                    requests.append(envelope.data["request_id"])
                month = period_key(self.calendar, "month", event_time(envelope))
                for rule in self.rules.for_event(envelope.type, envelope.data):
                    for person in rule.awardees(envelope.data):
                        guard_ids.extend(self._guard_ids(rule, person, envelope.data, month))
                    if rule.counterpart_role:
                        people.extend(rule.counterparts(envelope.data))
            batch.prefetch(guard_ids, people, requests)
        docs = [self._score(envelope, batch) for envelope in envelopes]
        batch.flush()
        return docs

    def _guard_ids(self, rule: Rule, person: str, data: dict[str, Any], month: str) -> list[str]:
        ids = []
        if rule.once_per_key:
            ids.append(_once_guard(rule, str(data.get(rule.once_per_key)), person))
        if rule.limit_per_month:
            ids.append(_limit_guard(rule, person, month))
        giver = data.get(rule.giver) if rule.giver else None
        if self.rules.giver_to_receiver_monthly_points is not None and isinstance(giver, str):
            ids.append(_giver_guard(giver, person, month))
        return ids

    def _score(self, envelope: Envelope, batch: "_Batch") -> dict[str, Any]:
        data = envelope.data
        at = event_time(envelope)
        self._track_facts(envelope, at, batch)
        awards = []
        for rule in self.rules.for_event(envelope.type, data):
            for person in rule.awardees(data):
                award = self._award(rule, person, envelope, at, batch)
                if award is not None:
                    awards.append(award)
        if envelope.type == "request.delivered":
            awards.extend(self._waiting_thanks(data["request_id"], at, batch))
        doc = {"_id": envelope.id, "type": envelope.type, "at": at, "awards": awards}
        if envelope.type == "request.delivered":
            doc["request_id"] = data["request_id"]
        return doc

    def _waiting_thanks(self, request_id: str, delivered_at: datetime, batch: "_Batch") -> list[dict[str, Any]]:
        """Kudos that thanked for this delivery but were read before it (topics are read in
        parallel): award them now, exactly as if they had come after."""
        facts = batch.facts(request_id)
        awards = []
        for waiting in facts.get("waiting_thanks") or []:
            kudos = Envelope.from_dict(waiting["event"])
            rule = next((r for r in self.rules.rules if r.id == waiting["rule"]), None)
            if rule is None or event_time(kudos) < delivered_at:
                continue  # thanks given before the delivery do not count
            award = self._award(rule, waiting["person"], kudos, event_time(kudos), batch)
            if award is not None:
                awards.append(award)
        return awards

    def _event(self, award: dict[str, Any]) -> Envelope:
        return build_event("points.awarded", award["person_id"], award, source=SOURCE, clock=self.clock, id=award["entry_id"])

    def _track_facts(self, envelope: Envelope, at: datetime, batch: "_Batch") -> None:
        data = envelope.data
        if envelope.type == "request.submitted":
            batch.change_facts(data["request_id"], {"requester_id": data["requester_id"]})
            short = data.get("priority") == "rush" and float(data.get("notice_business_hours") or 0) < RUSH_SHORT_NOTICE_HOURS
            submission = {"_id": data["request_id"], "requester_id": data["requester_id"], "at": at, "rush_short_notice": short}
            # The requester's day (read by _id for the rush share); idempotent, so a re-scored
            # event writes the same thing again.
            day = (_day_id(data["requester_id"], at), f"r.{data['request_id']}", _submission(submission)) \
                if _safe_key(data["requester_id"]) and _safe_key(str(data["request_id"])) else None
            batch.submit(submission, day)
        elif envelope.type == "request.delivered":
            batch.change_facts(data["request_id"], {
                "requester_id": data["requester_id"], "delivered": True, "delivered_at": at,
                "assignee_ids": data.get("assignee_ids", [])})

    def _award(self, rule: Rule, person: str, envelope: Envelope, at: datetime, batch: "_Batch") -> dict[str, Any] | None:
        data = envelope.data
        eid = entry_id(envelope.id, rule.id, person)
        month = period_key(self.calendar, "month", at)
        points, capped, reason = rule.points, False, rule.reason

        if rule.requires == "linked_request_delivered":
            request_id = data.get("request_id")
            if not isinstance(request_id, str):
                return None
            facts = batch.facts(request_id)
            if not facts.get("delivered"):
                # Maybe the delivery is still on its way (another topic): wait for it there.
                batch.change_facts(request_id, waiting={"event": envelope.to_dict(), "rule": rule.id, "person": person})
                return None
            if facts.get("requester_id") != person or (facts.get("delivered_at") and at < utc(facts["delivered_at"])):
                return None
        if rule.once_per_key and not self._spaced(batch, rule, person, str(data.get(rule.once_per_key)), eid, at):
            return None
        if rule.limit_per_month and not self._within(batch, _limit_guard(rule, person, month), eid, "n", 1, rule.limit_per_month):
            points, capped = 0, True
            reason = f"{rule.reason} (capped: at most {rule.limit_per_month} a month)"
        cap = self.rules.giver_to_receiver_monthly_points
        giver = data.get(rule.giver) if rule.giver else None
        if not capped and points > 0 and cap is not None and isinstance(giver, str):
            if not self._within(batch, _giver_guard(giver, person, month), eid, "points", points, cap):
                points, capped = 0, True
                reason = f"{rule.reason} (capped: at most {cap} points a month from one colleague)"

        counterparts = [c for c in rule.counterparts(data) if c != person]
        if rule.counterpart_role and counterparts:
            people = batch.people(counterparts)
            counterparts = [c for c in counterparts if c in people and people[c].role == rule.counterpart_role]
        return {
            "entry_id": eid, "person_id": person, "points": points, "rule": rule.id, "reason": reason,
            "source_event_id": envelope.id, "source_event_type": envelope.type, "capped": capped,
            "badges": list(rule.badges), "resets": list(rule.resets), "counterparts": counterparts, "at": at,
        }

    def _within(self, batch: "_Batch", guard_id: str, eid: str, field: str, amount: int, limit: int) -> bool:
        """Count ``amount`` against a limit once per award id; True if the award fits.

        The guard as read answers most cases (counted before, or already full); only an award
        that may fit is counted, by a conditional update that is exact when scorers race.
        """
        if amount > limit:
            return False  # never fits (and an upsert would ignore the filter on a new guard)
        doc = batch.guard(guard_id)
        if eid in (doc.get("ids") or []):
            return True  # this very award, counted before (a replay)
        if (doc.get(field) or 0) + amount > limit:
            return False  # full: counts only grow
        return batch.count(guard_id, eid, field, amount, limit)

    def _spaced(self, batch: "_Batch", rule: Rule, person: str, key: str, eid: str, at: datetime) -> bool:
        """At most one award per key per N business days (events of one key come in order)."""
        guard_id = _once_guard(rule, key, person)
        doc = batch.guard(guard_id)
        if doc.get("last_award") == eid:
            return True  # this very award, replayed
        if doc.get("last_at") is not None:
            gap = self.calendar.business_hours_between(utc(doc["last_at"]), at)
            if gap < rule.once_per_business_days * self.calendar.hours_per_day:
                return False
        batch.set(guard_id, {"last_at": at, "last_award": eid})
        return True


def _once_guard(rule: Rule, key: str, person: str) -> str:
    return f"once:{rule.id}:{key}:{person}"


def _limit_guard(rule: Rule, person: str, month: str) -> str:
    return f"limit:{rule.id}:{person}:{month}"


def _giver_guard(giver: str, person: str, month: str) -> str:
    return f"giver:{giver}:{person}:{month}"


class _GuardRace(Exception):
    """Another scorer changed a guard this batch counted against (see :class:`_Batch`)."""


class _Batch:
    """What one batch of scoring reads (guards, request facts, counterparts) and how it writes
    them.

    Live (a single event, or a batch scored again): each guard is read when needed and each
    decision written at once, counts as conditional updates that stay exact when scorers race.
    Batched: the batch's guards and counterparts are read in one query each, every decision
    changes the copy in memory (later events of the batch see it), and :meth:`flush` writes
    them in ordered bulk commands with the same conditional filters. A guard that did not exist
    when read (most of them, for history: a giver and a recipient in a month) is inserted whole
    instead, as it stands after the batch: an insert costs FerretDB a fraction of an update. If
    a write misses (another process counted against the guard, or created it, meanwhile),
    flush raises :class:`_GuardRace` and the batch is scored again live: it reads the truth,
    and awards already counted are recognised by their ids in the guard, so nothing is
    counted twice.

    The request facts (who asked, delivered when, thanks waiting for a delivery), submissions
    and submission days are field-level ``$set``/``$addToSet`` writes, idempotent, gathered per
    document and written before the guards (each request's events were one write each, three
    for a submission: 105k events of a year's requests cost ~100k single writes).
    """

    def __init__(self, store: Store, directory: Directory, batched: bool):
        self.store = store
        self.guards = store.guards
        self.directory = directory
        self.batched = batched
        self.docs: dict[str, dict] = {}
        self.known: dict[str, Any] = {}
        self.ops: list[UpdateOne] = []
        self.absent: set[str] = set()  # guards that did not exist when read
        self.created: set[str] = set()  # of those, the ones this batch writes (inserted at flush)
        self.requests: dict[str, dict] = {}  # request facts as read, with this batch's changes
        self.fact_sets: dict[str, dict[str, Any]] = {}
        self.fact_waiting: dict[str, list[dict]] = {}
        self.submissions: list[dict] = []
        self.days: dict[str, dict[str, Any]] = {}

    def prefetch(self, guard_ids: list[str], people: list[str], requests: list[str] = ()) -> None:
        missing = [i for i in dict.fromkeys(guard_ids) if i not in self.docs]
        found = find_by_ids(self.guards, missing)
        self.docs.update((i, found.get(i) or {}) for i in missing)
        self.absent.update(i for i in missing if i not in found)
        unread = [r for r in dict.fromkeys(requests) if r not in self.requests]
        facts = find_by_ids(self.store.request_facts, unread)
        self.requests.update((r, facts.get(r) or {}) for r in unread)
        self.people(people)

    def facts(self, request_id: str) -> dict:
        """What is known of a request (as of this point of the batch)."""
        if not self.batched:
            return self.store.request_facts.find_one({"_id": request_id}) or {}
        if request_id not in self.requests:
            self.prefetch([], [], [request_id])
        return self.requests[request_id]

    def change_facts(self, request_id: str, fields: dict[str, Any] | None = None, waiting: dict | None = None) -> None:
        """Set fields of a request's facts, and/or add a thanks waiting for its delivery."""
        update: dict[str, Any] = {}
        if fields:
            update["$set"] = fields
        if waiting is not None:
            update["$addToSet"] = {"waiting_thanks": waiting}
        if not self.batched:
            self.store.request_facts.update_one({"_id": request_id}, update, upsert=True)
            return
        doc = self.facts(request_id)
        if fields:
            doc.update(fields)
            self.fact_sets.setdefault(request_id, {}).update(fields)
        if waiting is not None and waiting not in (doc.get("waiting_thanks") or []):
            doc["waiting_thanks"] = [*(doc.get("waiting_thanks") or []), waiting]
            self.fact_waiting.setdefault(request_id, []).append(waiting)

    def submit(self, submission: dict, day: tuple[str, str, dict] | None) -> None:
        """A request submitted, and its entry in the requester's day (id, field path, value)."""
        if not self.batched:
            insert_once(self.store.submissions, submission)
            if day:
                self.store.submission_days.update_one({"_id": day[0]}, {"$set": {day[1]: day[2]}}, upsert=True)
            return
        self.submissions.append(submission)
        if day:
            self.days.setdefault(day[0], {})[day[1]] = day[2]

    def guard(self, guard_id: str) -> dict:
        if not self.batched:
            return self.guards.find_one({"_id": guard_id}) or {}
        if guard_id not in self.docs:
            self.prefetch([guard_id], [])
        return self.docs[guard_id]

    def count(self, guard_id: str, eid: str, field: str, amount: int, limit: int) -> bool:
        """Count ``amount`` under ``field`` for award ``eid`` if it stays within ``limit``."""
        filter_ = {"_id": guard_id, "ids": {"$ne": eid}, field: {"$lte": limit - amount}}
        update = {"$push": {"ids": eid}, "$inc": {field: amount}}
        if self.batched:
            if guard_id in self.absent:
                self.created.add(guard_id)
            else:
                self.ops.append(UpdateOne(filter_, update, upsert=True))
            doc = self.docs[guard_id]
            doc["ids"] = [*(doc.get("ids") or []), eid]
            doc[field] = (doc.get(field) or 0) + amount
            return True
        try:
            result = self.guards.update_one(filter_, update, upsert=True)
            if result.modified_count == 1 or result.upserted_id is not None:
                return True
        except DuplicateKeyError:
            pass  # the guard exists and the filter missed: over the limit, or counted already
        doc = self.guards.find_one({"_id": guard_id}, {"ids": 1})
        return bool(doc) and eid in (doc.get("ids") or [])

    def set(self, guard_id: str, fields: dict[str, Any]) -> None:
        if self.batched:
            if guard_id in self.absent:
                self.created.add(guard_id)
            else:
                self.ops.append(UpdateOne({"_id": guard_id}, {"$set": fields}, upsert=True))
            self.docs.setdefault(guard_id, {}).update(fields)
        else:
            self.guards.update_one({"_id": guard_id}, {"$set": fields}, upsert=True)

    def people(self, ids: list[str]) -> dict[str, Any]:
        missing = [i for i in dict.fromkeys(ids) if i not in self.known]
        if missing:
            found = self.directory.many(missing)
            self.known.update((i, found.get(i)) for i in missing)
        return {i: self.known[i] for i in ids if self.known.get(i) is not None}

    def flush(self) -> None:
        facts = []
        for request_id in dict.fromkeys([*self.fact_sets, *self.fact_waiting]):
            update: dict[str, Any] = {}
            if self.fact_sets.get(request_id):
                update["$set"] = self.fact_sets[request_id]
            if self.fact_waiting.get(request_id):
                update["$addToSet"] = {"waiting_thanks": {"$each": self.fact_waiting[request_id]}}
            facts.append(UpdateOne({"_id": request_id}, update, upsert=True))
        days = [UpdateOne({"_id": d}, {"$set": paths}, upsert=True) for d, paths in self.days.items()]
        for collection, writes in ((self.store.request_facts, facts), (self.store.submission_days, days)):
            for part in chunks(writes):
                collection.bulk_write(part, ordered=False)
        _insert_many_once(self.store.submissions, self.submissions)
        self.fact_sets, self.fact_waiting, self.days, self.submissions = {}, {}, {}, []
        ops, self.ops = self.ops, []
        created, self.created = [{**self.docs[i], "_id": i} for i in self.created], set()
        for part in chunks(created):
            if _insert_new(self.guards, part):
                raise _GuardRace()  # created meanwhile by another scorer
        try:
            for part in chunks(ops):
                result = self.guards.bulk_write(part, ordered=True)
                if result.matched_count + result.upserted_count != len(part):
                    raise _GuardRace()
        except (BulkWriteError, KeyError) as exc:  # KeyError: FerretDB's incomplete reply to a refused write
            raise _GuardRace() from exc


# -- stage 2 ------------------------------------------------------------------------------------

@dataclass
class _Item:
    award: PointsAwarded
    partition: str
    offset: int
    at: datetime


class _Sum:
    """What one batch adds to one document: its items, and per person the fields to set."""

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields
        self.items: list[_Item] = []
        self.people: dict[str, dict[str, Any]] = {}

    def add(self, item: _Item, person_id: str, fields: dict[str, Any] | None = None) -> None:
        self.items.append(item)
        if fields is not None:
            self.people[person_id] = fields


def _period_rank(key: str) -> int:
    """Weeks, months, quarters, then all time (the order boards are written in)."""
    return 3 if key == "all" else 2 if "-Q" in key else 0 if "-W" in key else 1


def _safe_key(value: str) -> bool:
    return bool(value) and "." not in value and not value.startswith("$")


def _apply_sums(collection, sums: dict[str, _Sum], build: Callable[[_Sum, list[_Item]], dict]) -> None:
    """Add each batch sum to its document once, whatever happened before a crash.

    Each document remembers the last offset it applied per partition: read them (by ``_id``,
    in one query per chunk), add only the items after it, and move it forward in the same
    write. Reads and writes go by ``_id`` alone, because FerretDB scans the whole collection
    for a filter without one (a conditional update cost 0.46 s at 20k documents; by ``_id``, a
    few ms). This relies on one
    writer per partition at a time, which the consumer group gives (a person's awards are all
    in one partition; a board's fields per partition are only moved by that partition's owner).

    A document that does not exist yet is inserted whole (historical awards mostly open new
    weeks and months: an update costs FerretDB ~15 inserts); one created meanwhile by another
    writer (its insert refused) gets the update instead.
    """
    ops, new, stored = [], {}, find_by_ids(collection, sums, {"applied": 1})
    for doc_id, total in sums.items():
        applied = stored.get(doc_id, {}).get("applied") or {}
        todo = [i for i in total.items if applied.get(i.partition, -1) < i.offset]
        if not todo:
            continue  # applied before the crash that replays it
        update = build(total, todo)
        update.setdefault("$set", {}).update({f"applied.{i.partition}": i.offset for i in sorted(todo, key=lambda i: i.offset)})
        if doc_id in stored:
            ops.append(UpdateOne({"_id": doc_id}, update, upsert=True))
        else:
            new[doc_id] = update
    for part in chunks(list(new)):
        refused = _insert_new(collection, [_as_document(doc_id, new[doc_id]) for doc_id in part])
        ops += [UpdateOne({"_id": doc_id}, new[doc_id], upsert=True) for doc_id in part if doc_id in refused]
    if ops:
        for part in chunks(ops):
            collection.bulk_write(part, ordered=False)


def _as_document(doc_id: str, update: dict[str, Any]) -> dict[str, Any]:
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


def _insert_new(collection, documents: list[dict]) -> set:
    """Insert documents that were missing when read; the ids refused because another writer
    created them meanwhile."""
    try:
        collection.insert_many(documents, ordered=False)
        return set()
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(err.get("code") != 11000 for err in errors):
            raise
        return {documents[err["index"]]["_id"] for err in errors}
    except KeyError:  # FerretDB's incomplete reply to a bulk with refusals: one by one
        return {doc["_id"] for doc in documents if not insert_once(collection, doc)}


def _insert_many_once(collection, documents: list[dict]) -> list[dict]:
    """Insert the documents (deterministic ids) in chunks; return those that were new."""
    stored = []
    for part in chunks(documents):
        try:
            collection.insert_many(part, ordered=False)
            stored.extend(part)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise
            lost = {err["index"] for err in errors}
            stored.extend(doc for i, doc in enumerate(part) if i not in lost)
        except KeyError:  # FerretDB's incomplete reply to a bulk with refusals: one by one
            stored.extend(doc for doc in part if insert_once(collection, doc))
    return stored


@dataclass
class Applier:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock
    publish: bool = True
    notify: Callable[..., None] = lambda collection=None, *ids: None
    notify_inserted: Callable[..., None] | None = None  # the relay's notify_inserted (insert-only badge awards)

    def __post_init__(self) -> None:
        self.ranking = Ranking(self.store.rankings)
        # The boards this applier wrote last, as it wrote them (board id -> document): the next
        # batch's update is conditional on the version, so a board someone else wrote since is
        # noticed and read again. Not kept beyond BOARD_CACHE_ENTRIES people in all.
        self._boards: OrderedDict[str, dict] = OrderedDict()

    def apply(self, award: PointsAwarded, partition: str, offset: int) -> bool:
        """Apply one award delivered at (partition, offset); False if it was applied before."""
        return bool(self.apply_batch([(award, partition, offset)]))

    def apply_batch(self, items: list[tuple[PointsAwarded, str, int]],
                    on_boards: Callable[[list[PointsAwarded], list[str]], None] | None = None) -> int:
        """Apply awards delivered at (partition, offset), in order; return how many were new.

        One poll's awards become a few bulk writes: the totals of each person and period (one
        ``$inc`` each), each period's board (one update), each person's badge progress (one
        write), then the ledger entries (one insert), written last: an award is in the ledger
        only once everything it changes is in place, so readers and a restart can rely on it.
        An award already in the ledger is skipped (a redelivery, or a second publish of the same
        award); documents changed before a crash remember the offsets they applied, so a replay
        adds nothing twice.

        ``on_boards(awards, [period key])`` is called as soon as a period's board and ranking
        have the batch's awards on it (the week first; totals before all boards; badges and the
        ledger after): what a live leaderboard of that period shows.
        """
        seen = set(find_by_ids(self.store.ledger, [award.entry_id for award, _, _ in items], {"_id": 1}))
        fresh = []
        for award, partition, offset in items:
            if award.entry_id in seen:
                continue
            seen.add(award.entry_id)
            fresh.append(_Item(award, str(partition), offset, utc(award.at)))
        if not fresh:
            return 0
        people = self.directory.many({item.award.person_id for item in fresh})
        self._add_to_totals([i for i in fresh if i.award.points > 0], people, on_boards)
        by_person: dict[str, list[_Item]] = {}
        for item in fresh:
            if item.award.badges or item.award.resets:
                by_person.setdefault(item.award.person_id, []).append(item)
        stored = find_by_ids(self.store.badge_progress, by_person)
        progress, changes = {}, {}
        for person_id, person_items in by_person.items():
            progress[person_id] = self._advance_badges(person_id, stored.get(person_id, {}), person_items, changes)
        # A person's first progress is inserted (one created meanwhile is updated instead).
        firsts = [pid for pid in changes if pid not in stored]
        refused = set()
        for part in chunks(firsts):
            refused |= _insert_new(self.store.badge_progress, [_as_document(pid, changes[pid]) for pid in part])
        writes = [UpdateOne({"_id": pid}, update, upsert=True) for pid, update in changes.items()
                  if pid in stored or pid in refused]
        if writes:
            for part in chunks(writes):  # everyone's progress in a few bulks
                self.store.badge_progress.bulk_write(part, ordered=False)
        self._award_badges({pid: (state, by_person[pid][-1].at) for pid, state in progress.items()})
        entries = [{
            "_id": i.award.entry_id, "person_id": i.award.person_id, "points": i.award.points, "rule": i.award.rule,
            "reason": i.award.reason, "capped": i.award.capped, "source_event_id": i.award.source_event_id,
            "source_event_type": i.award.source_event_type, "at": i.at, "src": f"{i.partition}:{i.offset}",
        } for i in fresh]
        # Each person's ledger list first (idempotent): the ledger insert is the last write, and a
        # replay skips awards already in the ledger.
        self.store.ledger_feeds.add_many((ledger_list(e["person_id"]), Entry(e["_id"], e["at"])) for e in entries
                                         if shown_in_ledger(e["points"], e["capped"]) and _safe_key(e["person_id"]))
        _insert_many_once(self.store.ledger, entries)
        return len(fresh)

    def _add_to_totals(self, items: list["_Item"], people: dict,
                       on_boards: Callable[[list[PointsAwarded], list[str]], None] | None = None) -> None:
        if not items:
            return
        totals: dict[str, _Sum] = {}
        boards: dict[str, _Sum] = {}
        # A person's total per period is read (by _id) only for this and the previous period;
        # the boards keep every period's points per person. Awards of older periods (history:
        # an import, a rebuild) go on the boards only: a year of kudos wrote ~3 totals documents
        # per person and batch that nothing reads.
        now = self.clock.now()
        readable = {period: {period_key(self.calendar, period, now), previous_period_key(self.calendar, period, now)}
                    for period in PERIODS}
        for item in items:
            pid, person = item.award.person_id, people.get(item.award.person_id)
            fields = {"person_id": pid, "department": person.department if person else None, "role": person.role if person else None}
            for period in PERIODS:
                key = period_key(self.calendar, period, item.at)
                if key in readable[period] or item.at > now:
                    totals.setdefault(f"{pid}:{key}", _Sum({**fields, "key": key})).add(item, pid)
                if _safe_key(pid):  # never let an id become a field path in the board documents
                    boards.setdefault(f"board:{key}", _Sum({})).add(item, pid, fields)
        _apply_sums(self.store.totals, totals, self._totals_update)
        # The board of each period (everyone's points in one document), then the ranking read
        # model beside it, which leaderboards read (ranking.py): weeks first, the live screens'
        # usual period, each announced as soon as it is written.
        for doc_id, board in sorted(boards.items(), key=lambda kv: _period_rank(kv[0].removeprefix("board:"))):
            self._update_board(doc_id, board)
            if on_boards is not None:
                on_boards(list({i.award.entry_id: i.award for i in board.items}.values()), [doc_id.removeprefix("board:")])

    def _update_board(self, doc_id: str, board: "_Sum", remembered: bool = True) -> None:
        """One board update, versioned (``v``), and the same change in the ranking read model.

        The board is read once (its ``applied`` offsets and the entries before) — or taken as
        this applier wrote it last — then written once: an update conditional on the version
        read, so the state before it is the one read and the ranking needs no second read; a
        new board is inserted. If another process wrote the board in between (another
        partition's owner), the update is made atomically returning the board before it, as one
        write too; if it was the board remembered that was out of date, it is read again and
        the batch's part worked out anew (its offsets may be applied already)."""
        cached = self._boards.pop(doc_id, None) if remembered else None
        before = cached if cached is not None else (self.store.boards.find_one({"_id": doc_id}) or {})
        applied = before.get("applied") or {}
        todo = [i for i in board.items if applied.get(i.partition, -1) < i.offset]
        if not todo:
            return  # applied before the crash that replays it
        update = self._board_update(board, todo)
        update["$inc"]["v"] = 1
        update["$set"].update({f"applied.{i.partition}": i.offset for i in sorted(todo, key=lambda i: i.offset)})
        if before:
            write = update
            people = list(dict.fromkeys(i.award.person_id for i in todo))
            if len(people) > WHOLE_BOARD_AT:
                # Many people at once (a backlog, history): the whole entries map in one $set.
                # FerretDB's cost of an update grows faster than its number of paths (a board
                # of 2,000: 1,000 people's paths 2.2 s, the map 0.5 s), and the map is known:
                # the board as read plus this batch, written only if nothing changed since.
                entries = {pid: dict(e) for pid, e in (before.get("entries") or {}).items()}
                for pid in people:
                    old, fields = entries.get(pid) or {}, board.people[pid]
                    entries[pid] = {**old, "p": int(old.get("p") or 0) + update["$inc"][f"entries.{pid}.p"],
                                    "d": fields["department"], "r": fields["role"]}
                write = {"$set": {"entries": entries, **{k: v for k, v in update["$set"].items() if k.startswith("applied.")}},
                         "$inc": {"v": 1}}
            exact = self.store.boards.update_one({"_id": doc_id, "v": before.get("v")}, write).matched_count == 1
            if not exact and cached is not None:
                return self._update_board(doc_id, board, remembered=False)
        else:
            exact = not _insert_new(self.store.boards, [_as_document(doc_id, update)])
        if not exact:
            # FerretDB 1.24 refuses a projection here: the whole board comes back.
            before = self.store.boards.find_one_and_update({"_id": doc_id}, update, upsert=True,
                                                           return_document=ReturnDocument.BEFORE) or {}
        entries = before.get("entries") or {}
        changes = []
        for pid in dict.fromkeys(i.award.person_id for i in todo):
            old = entries.get(pid) or {}
            fields = board.people[pid]
            changes.append(ScoreChange(pid, int(old.get("p") or 0), int(old.get("p") or 0) + update["$inc"][f"entries.{pid}.p"],
                                       fields["department"], fields["role"], old_department=old.get("d"), old_role=old.get("r")))

        after: dict | None = None
        if exact:
            after = {**before, "_id": doc_id, "entries": {pid: dict(e) for pid, e in entries.items()},
                     "applied": {**applied, **{i.partition: i.offset for i in sorted(todo, key=lambda i: i.offset)}},
                     "v": int(before.get("v") or 0) + 1}
            for change in changes:
                after["entries"][change.person_id] = {"p": change.new, "d": change.department, "r": change.role}
            self._remember_board(doc_id, after)

        def board_after() -> dict:
            return after if after is not None else (self.store.boards.find_one({"_id": doc_id}) or {})

        self.ranking.apply(doc_id.removeprefix("board:"), int(before.get("v") or 0) + 1, changes, board_after)

    def _remember_board(self, doc_id: str, board: dict) -> None:
        self._boards[doc_id] = board
        while self._boards and sum(len(b.get("entries") or {}) for b in self._boards.values()) > BOARD_CACHE_ENTRIES:
            self._boards.popitem(last=False)

    @staticmethod
    def _totals_update(total: "_Sum", items: list["_Item"]) -> dict:
        return {"$inc": {"points": sum(i.award.points for i in items)}, "$set": dict(total.fields)}

    @staticmethod
    def _board_update(board: "_Sum", items: list["_Item"]) -> dict:
        inc: dict[str, int] = {}
        sets: dict[str, Any] = {}
        for item in items:
            pid = item.award.person_id
            inc[f"entries.{pid}.p"] = inc.get(f"entries.{pid}.p", 0) + item.award.points
            fields = board.people[pid]
            sets[f"entries.{pid}.d"], sets[f"entries.{pid}.r"] = fields["department"], fields["role"]
        return {"$inc": inc, "$set": sets}

    def person_changed(self, person, now: datetime) -> None:
        """Keep a person's department and role right on the boards of the current periods."""
        if not _safe_key(person.id):
            return
        keys = [key for period in PERIODS
                for key in {period_key(self.calendar, period, now), previous_period_key(self.calendar, period, now)} - {None}]
        # The totals that scoped reads look at (this and the previous period), by _id; older
        # totals keep the department and role the person had then.
        self.store.totals.update_many({"_id": {"$in": [f"{person.id}:{key}" for key in keys]}},
                                      {"$set": {"department": person.department, "role": person.role}})
        entry = f"entries.{person.id}"
        for period in PERIODS:
            for key in {period_key(self.calendar, period, now), previous_period_key(self.calendar, period, now)} - {None}:
                before = self.store.boards.find_one_and_update(
                    {"_id": f"board:{key}", entry: {"$exists": True},
                     "$or": [{f"{entry}.d": {"$ne": person.department}}, {f"{entry}.r": {"$ne": person.role}}]},
                    {"$set": {f"{entry}.d": person.department, f"{entry}.r": person.role}, "$inc": {"v": 1}})
                if before is not None:  # moved: the ranking moves them too
                    old = before["entries"][person.id]
                    points = int(old.get("p") or 0)
                    self.ranking.apply(key, int(before.get("v") or 0) + 1, [ScoreChange(
                        person.id, points, points, person.department, person.role, old_department=old.get("d"),
                        old_role=old.get("r"))], lambda key=key: self.store.boards.find_one({"_id": f"board:{key}"}) or {})

    def _advance_badges(self, person_id: str, doc: dict, items: list["_Item"], writes: dict) -> dict[str, Any]:
        """Fold a person's awards into their badge progress (``doc``, as stored); put its update
        (by _id) in ``writes``."""
        applied = dict(doc.get("applied") or {})
        badges = doc.get("badges") or {}
        todo = [i for i in items if applied.get(i.partition, -1) < i.offset]
        if not todo:
            return badges  # applied before the crash that replays them
        unchanged = copy.deepcopy(badges)
        for item in todo:
            self._advance(badges, item)
            applied[item.partition] = item.offset
        if badges == unchanged:
            # Nothing moved (a distinct badge's members and evidence are full, say): no write.
            # Applying these awards again, after a crash, finds the same state and moves
            # nothing either, so the offsets need not move.
            return badges
        writes[person_id] = {"$set": {"badges": badges, **{f"applied.{p}": o for p, o in applied.items()}}}
        return badges

    def _advance(self, badges: dict[str, Any], item: "_Item") -> None:
        award, at = item.award, item.at
        week = period_key(self.calendar, "week", at)
        stamp = at.isoformat()
        for bid in award.resets:
            # A streak counts the hits after the latest reset *in time*, so awards that arrive
            # out of order (from different partitions) give the same streak.
            state = badges.setdefault(bid, {})
            state["reset_at"] = max(filter(None, [state.get("reset_at"), stamp]))
            kept = [(h, e) for h, e in zip(state.get("hits", []), state.get("evidence", [])) if h > state["reset_at"]]
            state["hits"], state["evidence"] = [h for h, _ in kept], [e for _, e in kept]
        for bid in award.badges:
            badge = self.rules.badges[bid]
            state = badges.setdefault(bid, {"count": 0, "members": [], "weeks": [], "evidence": []})
            keep = badge.tiers[-1][1]
            if badge.kind == "streak":
                if state.get("reset_at") and stamp <= state["reset_at"]:
                    continue  # before the streak was broken: does not count
                if len(state.setdefault("hits", [])) < keep:
                    state["hits"].append(stamp)
                    state.setdefault("evidence", []).append(award.source_event_id)
                continue
            if badge.kind == "count":
                state["count"] = state.get("count", 0) + 1
            elif badge.kind == "distinct":
                members = state.setdefault("members", [])
                members.extend(c for c in award.counterparts if c not in members and len(members) < keep)
            elif badge.kind == "weekly_streak":
                weeks = sorted(set(state.get("weeks", [])) | {week})
                state["weeks"] = weeks[-WEEKS_KEPT:]
            evidence = state.setdefault("evidence", [])
            if len(evidence) < keep and award.source_event_id not in evidence:
                evidence.append(award.source_event_id)

    def _award_badges(self, progress: dict[str, tuple[dict[str, Any], datetime]]) -> None:
        """Award every tier the people's badge progress (person -> (badges, time)) has reached."""
        reached = [(person_id, bid, self.rules.badges[bid], state, tier, at)
                   for person_id, (badges, at) in progress.items()
                   for bid, state in badges.items() if bid in self.rules.badges
                   for tier in self.rules.badges[bid].reached(badge_level(self.rules.badges[bid], state))]
        ids = [badge_award_id(person_id, bid, tier) for person_id, bid, _, _, tier, _ in reached]
        awarded = find_by_ids(self.store.badge_awards, ids, {"_id": 1})  # a read: cheaper than a refused insert
        new = []
        for award_id, (person_id, bid, badge, state, tier, at) in zip(ids, reached):
            if award_id not in awarded:
                evidence = list(state.get("evidence") or [])
                event = build_event("badge.awarded", person_id, {
                    "person_id": person_id, "badge": bid, "name": badge.name, "tier": tier,
                    "evidence_event_ids": evidence, "at": at,
                }, source=SOURCE, clock=self.clock, id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:badge:{award_id}")))
                doc = {"_id": award_id, "person_id": person_id, "badge": bid, "tier": tier, "evidence": evidence, "at": at}
                new.append(with_outbox(doc, [event] if self.publish else []))
        # In bulk; the relay is handed the documents it publishes (insert-only: nothing to read back).
        stored = _insert_many_once(self.store.badge_awards, new)
        if stored and self.publish:
            if self.notify_inserted is not None:
                self.notify_inserted(self.store.badge_awards, stored)
            else:
                self.notify(self.store.badge_awards, *[d["_id"] for d in stored])


def badge_level(badge: Badge, state: dict[str, Any]) -> int:
    if badge.kind == "distinct":
        return len(state.get("members") or [])
    if badge.kind == "streak":
        return len(state.get("hits") or [])
    if badge.kind == "weekly_streak":
        return consecutive_weeks(state.get("weeks") or [])
    return int(state.get("count") or 0)


def consecutive_weeks(keys: list[str]) -> int:
    """Length of the run of consecutive ISO weeks ending at the latest one."""
    mondays = sorted({date.fromisocalendar(int(k[:4]), int(k.split("-W")[1]), 1) for k in keys})
    if not mondays:
        return 0
    run = 1
    for earlier, later in zip(reversed(mondays[:-1]), reversed(mondays)):
        if later - earlier != timedelta(days=7):
            break
        run += 1
    return run
