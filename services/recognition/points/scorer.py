"""Stage 1 of the points pipeline: source events become awards.

Stage 1, :class:`Scorer` (consumer group ``points-score`` on ``requests`` and ``kudos``):
evaluates the rules file for an event, runs the stateful guards and publishes the awards as
``points.awarded`` records (one per person per batch, holding that person's awards) before
the consumer commits. Nothing is stored per source event: an
event delivered again (a crash or a rebalance before the commit, or the same event published
twice) is scored again and comes out the same. Award ids are deterministic (event, rule,
person), the guards remember the ids they counted (``_within``) or awarded (``_spaced``), and
stage 2 skips awards it has: so a replay awards nothing twice, and awards lost between the
guards' write and the publish go out with the redelivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.recognition.directory import Directory
from services.recognition.points.domain import (
    Rule, RuleSet, event_time, guard_ids, giver_guard_id, limit_guard_id, once_guard_id, rush_short_notice,
)
from services.recognition.points.store import (
    SOURCE, Store, as_document, day_id, entry_id, insert_else_update, safe_key, submission_entry,
)
from shared.calendar import BusinessCalendar, period_key
from shared.clock import Clock, utc
from shared.db import chunks, find_by_ids, insert_many_once, insert_new, insert_once
from shared.events import Envelope, OversizedEvent, build_event
from shared.events.schemas import AWARDS_PER_RECORD

log = logging.getLogger(__name__)
# Award ids a spacing guard (once per key per N business days) keeps: an event scored again
# after later ones of its key (a redelivery) is recognised by its award's id among them.
ONCE_KEPT = 20


@dataclass
class Scorer:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock
    # Sends events and waits for the broker's ack (EventProducer.publish_all; given a
    # generator, each award's event is built as it is sent); None in a rebuild: history is
    # re-scored, not re-announced.
    publish: Callable[[Iterable[Envelope]], Any] | None = None

    def score_batch(self, envelopes: list[Envelope]) -> list[dict[str, Any]]:
        """Score source events in order, publish their awards; return one document per event
        (``_id`` = the source event id, with its awards).

        The guards and request facts each event touches are written as it is scored (in bulk at
        the batch's end); all of them are idempotent by award id, so a batch interrupted anywhere
        (before, during or after the publish) is simply scored again when it is delivered again,
        with the same awards. Until the thanks waiting for a delivery are published, they stay
        waiting: they are cleared last. An event twice in one batch is scored once.

        (Until the seventeenth session each event's awards were stored, one ``scored_events``
        document per event, to publish them again instead: a third of FerretDB's time in the
        pipeline bench, for what scoring again gives as well.)
        """
        todo, seen = [], set()
        for envelope in envelopes:
            if envelope.id in seen:
                continue
            seen.add(envelope.id)
            todo.append(envelope)
        docs = self._score_fresh(todo) if todo else []
        if self.publish:
            self.publish(self._events(award for doc in docs for award in doc["awards"]))
        self._settle_waiting([doc for doc in docs if "waited" in doc])
        return docs

    def _settle_waiting(self, deliveries: list[dict[str, Any]]) -> None:
        """Clear the thanks these deliveries read as waiting, now that their awards are
        published (a crash before this scores the delivery again, with the same thanks), and
        award any that another scorer added after they were read.

        A thanks waits only while its request is not delivered (:meth:`_Batch.wait_for_delivery`
        adds it on that condition), and the delivery is written before this runs: so the list
        read here is final, and what is on it beyond what the batch read came from a scorer
        that read the request just before the delivery was written.
        """
        handled = {doc["request_id"]: doc.pop("waited") for doc in deliveries}
        while handled:
            pulls = [UpdateOne({"_id": rid}, {"$pullAll": {"waiting_thanks": entries}})
                     for rid, entries in handled.items() if entries]
            for part in chunks(pulls):
                self.store.request_facts.bulk_write(part, ordered=False)
            late = {rid: doc for rid, doc in find_by_ids(self.store.request_facts, list(handled)).items()
                    if doc.get("waiting_thanks") and doc.get("delivered")}
            handled = {}
            for rid, facts in late.items():
                log.info("thanks added while its request's delivery was scored: awarded now",
                         extra={"request_id": rid, "thanks": len(facts["waiting_thanks"])})
                batch = _Batch(self.store, self.directory, batched=False)
                awards = self._waiting_thanks(facts["waiting_thanks"], utc(facts["delivered_at"]), batch)
                if self.publish and awards:
                    self.publish(self._events(awards))
                handled[rid] = facts["waiting_thanks"]
                doc = next(d for d in deliveries if d["request_id"] == rid)
                doc["awards"].extend(awards)

    def _score_fresh(self, todo: list[Envelope]) -> list[dict[str, Any]]:
        try:
            return self._score_all(todo, batched=len(todo) > 1)
        except _GuardRace:
            log.info("another scorer counted against this batch's guards meanwhile: scoring it again, "
                     "one write at a time", extra={"events": len(todo)})
            return self._score_all(todo, batched=False)

    def _score_all(self, envelopes: list[Envelope], batched: bool) -> list[dict[str, Any]]:
        batch = _Batch(self.store, self.directory, batched)
        # Each event's rules, matched once (the prefetch and the scoring both need them).
        matched = [self.rules.for_event(envelope.type, envelope.data) for envelope in envelopes]
        if batched:  # what the batch's guards, requests and counterparts are, read in one query each
            guards, people, requests = [], [], []
            for envelope, rules in zip(envelopes, matched):
                if isinstance(envelope.data.get("request_id"), str):
                    requests.append(envelope.data["request_id"])
                if not rules:
                    continue
                month = period_key(self.calendar, "month", event_time(envelope))
                for rule in rules:
                    for person in rule.awardees(envelope.data):
                        guards.extend(guard_ids(self.rules, rule, person, envelope.data, month))
                    if rule.counterpart_role:
                        people.extend(rule.counterparts(envelope.data))
            batch.prefetch(guards, people, requests)
        docs = [self._score(envelope, batch, rules) for envelope, rules in zip(envelopes, matched)]
        batch.flush()
        return docs

    def _score(self, envelope: Envelope, batch: "_Batch", rules: list[Rule]) -> dict[str, Any]:
        data = envelope.data
        at = event_time(envelope)
        self._track_facts(envelope, at, batch)
        awards = []
        for rule in rules:
            for person in rule.awardees(data):
                award = self._award(rule, person, envelope, at, batch)
                if award is not None:
                    awards.append(award)
        doc = {"_id": envelope.id, "type": envelope.type, "at": at, "awards": awards}
        if envelope.type == "request.delivered":
            waited = list(batch.facts(data["request_id"]).get("waiting_thanks") or [])
            awards.extend(self._waiting_thanks(waited, at, batch))
            # The thanks read as waiting are cleared, and any added meanwhile awarded, once
            # this batch's awards are published (_settle_waiting).
            doc.update(request_id=data["request_id"], waited=waited)
        return doc

    def _waiting_thanks(self, waited: list[dict[str, Any]], delivered_at: datetime, batch: "_Batch") -> list[dict[str, Any]]:
        """Kudos that thanked for this delivery but were read before it (topics are read in
        parallel): award them now, exactly as if they had come after."""
        awards = []
        for waiting in waited:
            kudos = Envelope.from_dict(waiting["event"])
            rule = next((r for r in self.rules.rules if r.id == waiting["rule"]), None)
            if rule is None or event_time(kudos) < delivered_at:
                continue  # thanks given before the delivery do not count
            award = self._award(rule, waiting["person"], kudos, event_time(kudos), batch)
            if award is not None:
                awards.append(award)
        return awards

    def _events(self, awards: Iterable[dict[str, Any]]) -> Iterator[Envelope]:
        """The awards as ``points.awarded`` records: one per person (up to AWARDS_PER_RECORD
        awards each), each person's in the order given. Built one at a time as they are taken
        (the publish sends each before the next is built)."""
        by_person: dict[str, list[dict[str, Any]]] = {}
        for award in awards:
            by_person.setdefault(award["person_id"], []).append(award)
        for person_id, theirs in by_person.items():
            for part in chunks(theirs, AWARDS_PER_RECORD):
                yield from self._record(person_id, part)

    def _record(self, person_id: str, awards: list[dict[str, Any]]) -> Iterator[Envelope]:
        """One record of a person's awards, or several when one would be over the largest event
        (MAX_EVENT_BYTES: awards with long reasons or many counterparts): halves, in order."""
        data = {"person_id": person_id, "awards": awards, "rules": sorted({award["rule"] for award in awards})}
        try:
            record = build_event("points.awarded", person_id, data, source=SOURCE, clock=self.clock)
        except OversizedEvent:  # split; an award that is not valid is raised as it is
            if len(awards) == 1:
                raise
            half = len(awards) // 2
            yield from self._record(person_id, awards[:half])
            yield from self._record(person_id, awards[half:])
            return
        yield record

    def _track_facts(self, envelope: Envelope, at: datetime, batch: "_Batch") -> None:
        data = envelope.data
        if envelope.type == "request.submitted":
            batch.change_facts(data["request_id"], {"requester_id": data["requester_id"]})
            submission = {"_id": data["request_id"], "requester_id": data["requester_id"], "at": at,
                          "rush_short_notice": rush_short_notice(data)}
            # The requester's day (read by _id for the rush share); idempotent, so a re-scored
            # event writes the same thing again.
            day = (day_id(data["requester_id"], at), f"r.{data['request_id']}", submission_entry(submission)) \
                if safe_key(data["requester_id"]) and safe_key(str(data["request_id"])) else None
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
                # Maybe the delivery is still on its way (another topic): wait for it there,
                # unless it was written since the facts were read (then they are read again).
                entry = {"event": envelope.to_dict(), "rule": rule.id, "person": person}
                if batch.wait_for_delivery(request_id, entry):
                    return None
                facts = batch.facts(request_id)
            if facts.get("requester_id") != person or (facts.get("delivered_at") and at < utc(facts["delivered_at"])):
                return None
        if rule.once_per_key and not self._spaced(batch, rule, person, str(data.get(rule.once_per_key)), eid, at):
            return None
        if rule.limit_per_month and not self._within(batch, limit_guard_id(rule, person, month), eid, "n", 1, rule.limit_per_month):
            points, capped = 0, True
            reason = f"{rule.reason} (capped: at most {rule.limit_per_month} a month)"
        cap = self.rules.giver_to_receiver_monthly_points
        giver = data.get(rule.giver) if rule.giver else None
        if not capped and points > 0 and cap is not None and isinstance(giver, str):
            if not self._within(batch, giver_guard_id(giver, person, month), eid, "points", points, cap):
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
        guard_id = once_guard_id(rule, key, person)
        doc = batch.guard(guard_id)
        awarded = doc.get("awards") or []
        if doc.get("last_award") == eid or eid in awarded:
            return True  # this very award, scored again (a redelivery: maybe after a later one of its key)
        if doc.get("last_at") is not None:
            gap = self.calendar.business_hours_between(utc(doc["last_at"]), at)
            if gap < rule.once_per_business_days * self.calendar.hours_per_day:
                return False
        # The awards of a key are few (one per N business days); the latest ONCE_KEPT are kept.
        batch.set(guard_id, {"last_at": at, "last_award": eid, "awards": [*awarded[-(ONCE_KEPT - 1):], eid]})
        return True


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
        self.facts_absent: set[str] = set()  # requests without facts when read (inserted at flush)
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
        self.facts_absent.update(r for r in unread if r not in facts)
        self.people(people)

    def facts(self, request_id: str) -> dict:
        """What is known of a request (as of this point of the batch)."""
        if not self.batched:
            return self.store.request_facts.find_one({"_id": request_id}) or {}
        if request_id not in self.requests:
            self.prefetch([], [], [request_id])
        return self.requests[request_id]

    def change_facts(self, request_id: str, fields: dict[str, Any]) -> None:
        """Set fields of a request's facts."""
        if not self.batched:
            self.store.request_facts.update_one({"_id": request_id}, {"$set": fields}, upsert=True)
            return
        self.facts(request_id).update(fields)
        self.fact_sets.setdefault(request_id, {}).update(fields)

    def wait_for_delivery(self, request_id: str, waiting: dict[str, Any]) -> bool:
        """Add a thanks to those waiting for its request's delivery, on condition that the
        delivery is not written: False (live) if it is, so the thanks is scored now instead.
        Batched, the condition is checked at :meth:`flush` (a miss scores the batch again live).
        """
        if not self.batched:
            try:
                self.store.request_facts.update_one(
                    {"_id": request_id, "delivered": {"$ne": True}}, {"$addToSet": {"waiting_thanks": waiting}}, upsert=True)
                return True
            except DuplicateKeyError:
                return False  # delivered meanwhile: the upsert found no match and its insert was refused
        doc = self.facts(request_id)
        if waiting not in (doc.get("waiting_thanks") or []):
            doc["waiting_thanks"] = [*(doc.get("waiting_thanks") or []), waiting]
            self.fact_waiting.setdefault(request_id, []).append(waiting)
        return True

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
        facts, new_facts, new_waiting, waits = [], {}, {}, []
        for request_id in dict.fromkeys([*self.fact_sets, *self.fact_waiting]):
            update: dict[str, Any] = {}
            if self.fact_sets.get(request_id):
                update["$set"] = self.fact_sets[request_id]
            # Thanks that waited in this batch for a delivery this batch scored were awarded
            # by it; the others wait on condition that the delivery is not written meanwhile.
            waiting = [] if self.requests[request_id].get("delivered") else self.fact_waiting.get(request_id)
            if request_id in self.facts_absent:
                if waiting:
                    new_waiting[request_id] = {**update, "$addToSet": {"waiting_thanks": {"$each": waiting}}}
                else:
                    new_facts[request_id] = update
                continue
            if update:
                facts.append(UpdateOne({"_id": request_id}, update, upsert=True))
            if waiting:
                waits.append(UpdateOne({"_id": request_id, "delivered": {"$ne": True}},
                                       {"$addToSet": {"waiting_thanks": {"$each": waiting}}}, upsert=True))
        # A request's first facts are inserted whole (an update costs FerretDB ~15 inserts; an
        # import's requests are all new); one created meanwhile (refused) gets the update,
        # unless it has thanks to wait: it may be delivered by now.
        if insert_new(self.store.request_facts, [as_document(r, update) for r, update in new_waiting.items()]):
            raise _GuardRace()
        facts += insert_else_update(self.store.request_facts, new_facts)
        try:
            for part in chunks(waits):
                self.store.request_facts.bulk_write(part, ordered=False)
        except (BulkWriteError, KeyError) as exc:  # a delivery written since the batch read its request
            raise _GuardRace() from exc
        # The requesters' days are not read first (nothing here needs them): each is inserted,
        # and updated only when it is there already (its insert refused).
        days = insert_else_update(self.store.submission_days, {d: {"$set": paths} for d, paths in self.days.items()})
        for collection, writes in ((self.store.request_facts, facts), (self.store.submission_days, days)):
            for part in chunks(writes):
                collection.bulk_write(part, ordered=False)
        insert_many_once(self.store.submissions, self.submissions)
        self.fact_sets, self.fact_waiting, self.days, self.submissions = {}, {}, {}, []
        ops, self.ops = self.ops, []
        created, self.created = [{**self.docs[i], "_id": i} for i in self.created], set()
        if insert_new(self.guards, created):
            raise _GuardRace()  # created meanwhile by another scorer
        try:
            for part in chunks(ops):
                result = self.guards.bulk_write(part, ordered=True)
                if result.matched_count + result.upserted_count != len(part):
                    raise _GuardRace()
        except (BulkWriteError, KeyError) as exc:  # KeyError: FerretDB's incomplete reply to a refused write
            raise _GuardRace() from exc

