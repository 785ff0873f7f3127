"""The read side of insights (``Insights.read``): a manager's or an admin's view of one period,
from the documents insights.py writes (insights_docs.py), read by ``_id``: the departments'
documents and the team's buckets for one period key, by ``$in``, the cost of the team, never of
the history; and only those changed since this process last read them, as the key's versions
document (``pv:<key>``) says.

:class:`InsightsReads` is the read half of :class:`services.recognition.points.insights.Insights`
(which it is mixed into): it uses that object's ``docs``, ``directory``, ``calendar`` and
``_raise_versions`` (a read that finds a bucket the versions document does not name yet adds it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from datetime import datetime
from typing import Any, NamedTuple

from services.recognition.points.insights_docs import (
    BUCKET_FIELDS, INSIGHTS_BUCKETS, PERIODS, _keep, _person_doc, _person_key, _unpacked, _versions_of, quantile, share,
)
from services.recognition.points.store import person_bucket, person_id_of
from shared.auth import ADMIN_ROLE
from shared.calendar import period_key
from shared.db import find_by_ids
from shared.errors import BadInput, Forbidden
from shared.pagination import decode_cursor, encode_cursor, page_size
from shared.vocabulary import Department, values

DECODED_KEPT = 300  # people's documents kept for reads, each person decoded when first read (256 per period key)
TEAMS_KEPT = 64  # scopes whose sorted people are kept (everyone, and the managers who read lately)
ANSWERS_KEPT = 64  # teams' reps, recognition and queues kept for reads (a company's: ~1,000 reps, ~300 KB)
DEPARTMENTS_KEPT = 64  # departments' documents kept for reads, by their offsets (8 per period key)


class _Team(NamedTuple):
    """A scope's active people as the directory copy had them at ``generation``."""
    generation: int
    people: list
    by_id: dict
    buckets: tuple[str, ...]  # their people's documents' buckets


class InsightsReads:
    """Reads of the insights read model (mixed into ``Insights``; see the module's docstring)."""

    def _init_reads(self) -> None:
        # The read side's copies: a people's document as read, under its version (doc id ->
        # (v, {field: the person's JSON, replaced by its decoding when first read})), a scope's
        # people by name, and a team's answer under the versions of its documents; reads run
        # on several threads.
        self._decoded: OrderedDict[str, tuple[int, dict[str, dict]]] = OrderedDict()
        self._answers: OrderedDict[tuple, tuple[list, dict, set]] = OrderedDict()
        self._teams: OrderedDict[str, _Team] = OrderedDict()  # by scope: "*" (everyone) or a manager
        self._departments: OrderedDict[str, tuple[dict[str, int], dict]] = OrderedDict()  # doc id -> (offsets, doc)
        self._read_lock = threading.Lock()

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
