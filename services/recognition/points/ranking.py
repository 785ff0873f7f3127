"""The ranking read model: top lists, counts and ranks of a period's board, read by ``_id`` only.

A board (``boards``, ``board:<key>``) holds everyone's points in a period; at 100k people it
takes seconds to read and decode on FerretDB 1.24 (which decodes whole documents). The ranking
keeps, beside each board, what the leaderboards ask for, in a few small documents of the
``rankings`` collection:

``head:<key>``  the key's head: generation ``g``, the board version ``v`` it reflects, the
                scopes that exist, and the company scope's summary.
``<key>|<g>|<scope>``  the summary of a department or role scope (``department:pricing``).

A summary holds the number of people with points (``n``), the best ``TOP_K`` people (``top``:
person, points, department, role, best first, ties by person id) and the histogram of scores
(``h``: people per score). The rank of a score is 1 + the people with strictly more: counted
from the top list when the score is within it, else from the histogram. So a top page, a
count and any rank are one read (two for a department or role). Lists and histograms are JSON
strings: FerretDB decodes a document field by field (a 300-key map costs ~14 ms to read, a
string of the same data ~1 ms). A histogram has one pair per distinct score (a few hundred for
a week, a few thousand for all time).

Exactness: points per person per period only increase, so the best K are kept exactly by
merging each change into the list; a person leaving a scope (a department or role change)
shortens the list, which stays the exact best of the rest, and is refilled from the board when
it gets short (``REFILL_BELOW``).

People who keep themselves off the leaderboards (``h`` on their board entry) are in no scope:
counts, lists and histograms hold visible people only, so the rank of any score is its rank
among them (no gap where a hidden person would be), and a hidden person's own rank is the rank
of their score among the visible (``ScoreChange.hidden``; hiding is a removal, showing again an
addition).

Versions: the board carries ``v``, incremented atomically with its entries by every update.
The head remembers the version it reflects and is written last, with a filter on the version
before; summaries remember the version that last changed them and are written only if they
are older, so an attempt interrupted half-way and retried changes each document once.
Versions of one key are applied in order: an update that finds the head behind waits briefly
for the other process, then rebuilds from the board. A rebuild writes a new generation (fresh
ids) and flips the head to it in one write, so readers never see half of one; readers check
that a summary they read is not newer than the head they read first, and read again if it is.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pymongo import ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.recognition.points.domain import scope_id, scopes_of, standing
from shared.db import find_by_ids

log = logging.getLogger(__name__)

TOP_K = 100          # people kept per scope in the top list
REFILL_BELOW = 50    # a list shortened below this (scope moves) is refilled from the board
WAIT_BEHIND_S = 2.0  # how long an update waits for an earlier version before rebuilding
READ_ATTEMPTS = 4

Entry = tuple[str, int, "str | None", "str | None"]  # person, points, department, role


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()


@dataclass(frozen=True)
class ScoreChange:
    """One person's points in a period before and after a board update.

    ``old_department``/``old_role``: where the person was counted before, when the update also
    moved them (a department or role change); by default the same as after. ``hidden``/
    ``old_hidden``: the person keeps themselves off the leaderboards after/before the update
    (by default as after): a hidden person is counted in no scope, so the ranks of everyone
    else are computed over visible people only and leave no gap.
    """

    person_id: str
    old: int
    new: int
    department: str | None
    role: str | None
    old_department: Any = SAME
    old_role: Any = SAME
    hidden: bool = False
    old_hidden: Any = SAME

    def __post_init__(self) -> None:
        if self.old_department is SAME:
            object.__setattr__(self, "old_department", self.department)
        if self.old_role is SAME:
            object.__setattr__(self, "old_role", self.role)
        if self.old_hidden is SAME:
            object.__setattr__(self, "old_hidden", self.hidden)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# -- one scope's state, pure --------------------------------------------------------------------

@dataclass
class ScopeState:
    """Count, best-K list and histogram of one scope."""

    n: int = 0
    top: list[Entry] = field(default_factory=list)
    hist: dict[int, int] = field(default_factory=dict)  # score -> people
    loaded: dict[str, Any] | None = None                # the stored fields it was read from
    # The people in ``top`` (at least), made when first asked and kept with it by the methods
    # below, the only writers of ``top``: most of a batch's changes are people outside the best
    # K, and a scan of the list for each of them, with a sort of the list (a key call per
    # entry) for each one in it, were most of the ranking's time, 18 % of the applier's under
    # the pipeline bench (twenty-second session). A change is now a set lookup, and one in the
    # list is taken out and put back in its place (``bisect``).
    _members: set[str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_doc(cls, doc: dict | None) -> "ScopeState":
        if not doc:
            return cls()
        state = cls(n=int(doc.get("n") or 0), top=[tuple(e) for e in json.loads(doc.get("top") or "[]")],
                    hist={int(p): c for p, c in json.loads(doc.get("h") or "[]")})
        state.loaded = state.fields()
        return state

    @property
    def changed(self) -> bool:
        return self.fields() != self.loaded

    def fields(self) -> dict[str, Any]:
        return {"n": self.n, "top": _dump([list(e) for e in self.top]), "h": _dump(sorted(self.hist.items()))}

    @property
    def complete(self) -> bool:
        """The list holds everyone in the scope."""
        return len(self.top) == self.n

    def _count(self, score: int, step: int) -> None:
        self.hist[score] = self.hist.get(score, 0) + step
        if self.hist[score] <= 0:
            del self.hist[score]

    def _in_top(self) -> set[str]:
        if self._members is None:
            self._members = {e[0] for e in self.top}
        return self._members

    def _position(self, person_id: str) -> int | None:
        if person_id not in self._in_top():
            return None
        return next((i for i, e in enumerate(self.top) if e[0] == person_id), None)

    def _take_out(self, at: int) -> None:
        self._in_top().discard(self.top.pop(at)[0])

    def _insert(self, entry: Entry) -> None:
        """Put ``entry`` in its place in the list (in order of ``standing``), then keep the best K."""
        members = self._in_top()
        bisect.insort(self.top, entry, key=standing)
        members.add(entry[0])
        if len(self.top) > TOP_K:
            members.difference_update(e[0] for e in self.top[TOP_K:])
            del self.top[TOP_K:]

    def _offer(self, entry: Entry, was_complete: bool) -> None:
        """Put ``entry`` (not in the list) in the list if it belongs to the best K."""
        if was_complete or (self.top and standing(entry) < standing(self.top[-1])):
            self._insert(entry)

    def add(self, person_id: str, points: int, department: str | None, role: str | None) -> None:
        was_complete = self.complete
        self.n += 1
        self._count(points, 1)
        self._offer((person_id, points, department, role), was_complete)

    def remove(self, person_id: str, points: int) -> None:
        self.n -= 1
        self._count(points, -1)
        at = self._position(person_id)
        if at is not None:
            self._take_out(at)  # the rest is still the exact best of the others

    def update(self, person_id: str, old: int, new: int, department: str | None, role: str | None) -> None:
        if old != new:
            self._count(old, -1)
            self._count(new, 1)
        at = self._position(person_id)
        entry = (person_id, new, department, role)
        if at is not None:
            if self.top[at] != entry:
                self._take_out(at)
                self._insert(entry)
        else:
            # More points than before, and outside the list: everyone outside had fewer than
            # the list's last, so the person belongs in it exactly when they now beat it.
            self._offer(entry, False)

    @property
    def short(self) -> bool:
        return not self.complete and len(self.top) < REFILL_BELOW


def apply_change(states: Callable[[str], ScopeState], change: ScoreChange) -> None:
    """Apply one person's change to the scopes it touches (``states`` gives a scope's state)."""
    before = scopes_of(change.old_department, change.old_role) if change.old > 0 and not change.old_hidden else []
    after = scopes_of(change.department, change.role) if change.new > 0 and not change.hidden else []
    for sid in before:
        if sid in after:
            states(sid).update(change.person_id, change.old, change.new, change.department, change.role)
        else:
            states(sid).remove(change.person_id, change.old)
    for sid in after:
        if sid not in before:
            states(sid).add(change.person_id, change.new, change.department, change.role)


def states_from_board(board: dict) -> dict[str, ScopeState]:
    """Every scope's state from a board document (people who keep themselves off the
    leaderboards, ``h``, are in none)."""
    people: dict[str, list[Entry]] = {}
    for pid, e in (board.get("entries") or {}).items():
        points = int((e or {}).get("p") or 0)
        if points > 0 and not (e or {}).get("h"):
            entry = (pid, points, e.get("d"), e.get("r"))
            for sid in scopes_of(e.get("d"), e.get("r")):
                people.setdefault(sid, []).append(entry)
    out = {}
    for sid, entries in people.items():
        entries.sort(key=standing)
        hist: dict[int, int] = {}
        for _, points, _, _ in entries:
            hist[points] = hist.get(points, 0) + 1
        out[sid] = ScopeState(n=len(entries), top=entries[:TOP_K], hist=hist)
    return out


# -- reading ------------------------------------------------------------------------------------

class RankingView:
    """One scope of one period as of one version: its top list, count and ranks."""

    def __init__(self, ranking: "Ranking", key: str, scope: str, value: str | None, head: dict, state: ScopeState):
        self.ranking, self.key, self.scope, self.value = ranking, key, scope, value
        self.sid = scope_id(scope, value)
        self._reset(head, state)

    def _reset(self, head: dict, state: ScopeState) -> None:
        self.head, self.state = head, state

    @property
    def version(self) -> int:
        return int(self.head.get("v") or 0)

    @property
    def count(self) -> int:
        return self.state.n

    def top(self, n: int) -> list[Entry] | None:
        """The best ``n`` (fewer if the scope has fewer); None if the list does not reach that far."""
        if n <= len(self.state.top) or self.state.complete:
            return list(self.state.top[:n])
        return None

    def entry(self, person_id: str) -> Entry | None:
        """A person's entry if they are in the top list."""
        return next((e for e in self.state.top if e[0] == person_id), None)

    def rank(self, points: int) -> int:
        """Competition rank of a score: 1 + the people in the scope with strictly more."""
        top = self.state.top
        if self.state.complete or (top and top[-1][1] <= points):
            return 1 + sum(1 for e in top if e[1] > points)  # everyone with more is in the list
        return 1 + sum(c for score, c in self.state.hist.items() if score > points)


# -- the model ----------------------------------------------------------------------------------

class Ranking:
    def __init__(self, collection: Collection, wait_behind_s: float = WAIT_BEHIND_S):
        self.collection = collection
        self.wait_behind_s = wait_behind_s

    # ids
    @staticmethod
    def head_id(key: str) -> str:
        return f"head:{key}"

    @staticmethod
    def summary_id(key: str, g: str, sid: str) -> str:
        return f"{key}|{g}|{sid}"


    # -- reads ------------------------------------------------------------------------------------

    def view(self, key: str, scope: str, value: str | None) -> RankingView | None:
        """The scope as of the latest version; None when this period has no ranking (yet)."""
        sid = scope_id(scope, value)
        for _ in range(READ_ATTEMPTS):
            head = self.collection.find_one({"_id": self.head_id(key)})
            if head is None:
                return None
            if sid == "company":
                return RankingView(self, key, scope, value, head, ScopeState.from_doc(head))
            if sid not in (head.get("scopes") or []):
                return RankingView(self, key, scope, value, head, ScopeState())
            doc = self.collection.find_one({"_id": self.summary_id(key, head["g"], sid)})
            if doc is None or int(doc.get("v") or 0) > int(head.get("v") or 0):
                continue  # a rebuild replaced this generation, or an update is half-way: read again
            return RankingView(self, key, scope, value, head, ScopeState.from_doc(doc))
        return None

    def top(self, key: str, scope: str, value: str | None, n: int) -> list[Entry] | None:
        view = self.view(key, scope, value)
        return view.top(n) if view is not None else None

    def rank(self, key: str, scope: str, value: str | None, points: int) -> int:
        view = self.view(key, scope, value)
        return view.rank(points) if view is not None else 1

    def count(self, key: str, scope: str, value: str | None) -> int:
        view = self.view(key, scope, value)
        return view.count if view is not None else 0

    # -- updates ----------------------------------------------------------------------------------

    def apply(self, key: str, version: int, changes: list[ScoreChange], load_board: Callable[[], dict]) -> None:
        """Reflect board version ``version`` of period ``key`` (see the module docstring)."""
        deadline = None
        while True:
            head = self.collection.find_one({"_id": self.head_id(key)})
            if head is None:
                # The period's first update (or a board from before rankings): start from the board.
                self.rebuild(key, load_board())
                head = self.collection.find_one({"_id": self.head_id(key)})
                if head is not None and int(head["v"]) >= version:
                    return
                continue
            at = int(head.get("v") or 0)
            if at >= version:
                return  # applied already (a retry)
            if at == version - 1:
                short = self._advance(key, head, version, changes)
                if short is None:
                    continue  # the head moved under us (a rebuild): look again
                if short:
                    log.info("ranking list short after scope moves: refilled from the board", extra={"key": key})
                    self.rebuild(key, load_board())
                return
            # Behind: another process's earlier version is being applied, or was lost in a crash.
            if deadline is None:
                deadline = time.monotonic() + self.wait_behind_s
            elif time.monotonic() > deadline:
                log.warning("ranking behind its board: rebuilt", extra={"key": key, "at": at, "version": version})
                board = load_board()
                self.rebuild(key, board)
                if int(board.get("v") or 0) >= version:
                    return
                deadline = None
                continue
            time.sleep(0.02)

    def _advance(self, key: str, head: dict, version: int, changes: Iterable[ScoreChange]) -> bool | None:
        """Apply one version on top of ``head``; True if a list got short, None if the head moved."""
        g = head["g"]
        states: dict[str, ScopeState] = {}
        done: set[str] = set()  # summaries already written by an interrupted attempt of this version
        known = set(head.get("scopes") or [])
        changes = list(changes)
        # The summaries these changes touch, read in one $in.
        touched = {sid for c in changes for sid in [*scopes_of(c.old_department, c.old_role), *scopes_of(c.department, c.role)]
                   if sid != "company" and sid in known}
        found = find_by_ids(self.collection, [self.summary_id(key, g, sid) for sid in sorted(touched)])

        def state(sid: str) -> ScopeState:
            if sid not in states:
                if sid == "company":
                    states[sid] = ScopeState.from_doc(head)
                else:
                    doc = found.get(self.summary_id(key, g, sid)) if sid in known else None
                    if doc is not None and int(doc.get("v") or 0) >= version:
                        done.add(sid)
                    states[sid] = ScopeState.from_doc(doc)
            return states[sid]

        for change in changes:
            apply_change(state, change)

        # Summaries in one bulk, the head last: readers trust nothing newer than the head.
        self._write_all(version, [(self.summary_id(key, g, sid), st.fields()) for sid, st in states.items()
                                  if sid != "company" and sid not in done and st.changed])
        company = states.get("company") or ScopeState.from_doc(head)
        update = {"v": version, "scopes": sorted(known | (set(states) - {"company"})), **company.fields()}
        result = self.collection.update_one({"_id": self.head_id(key), "g": g, "v": version - 1}, {"$set": update})
        if result.matched_count == 0:
            return None
        return any(st.short for st in states.values())

    def _write_all(self, version: int, writes: list[tuple[str, dict[str, Any]]]) -> None:
        """Write summaries for ``version``, each unless it already reflects it."""
        def op(doc_id: str, fields: dict[str, Any]):
            return UpdateOne({"_id": doc_id, "v": {"$lt": version}}, {"$set": {"v": version, **fields}}, upsert=True)

        if not writes:
            return
        try:
            self.collection.bulk_write([op(*w) for w in writes], ordered=False)
        except BulkWriteError as exc:
            # A duplicate key: that document is at this version already (an interrupted attempt got this far).
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise
        except KeyError:
            # FerretDB's reply to a bulk with refusals lacks "nModified": write them one by one.
            for doc_id, fields in writes:
                try:
                    self.collection.bulk_write([op(doc_id, fields)])
                except BulkWriteError as exc:
                    if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                        raise

    def rebuild(self, key: str, board: dict) -> None:
        """Compute the key's ranking from a board document and switch readers to it at once."""
        version = int(board.get("v") or 0)
        g = uuid.uuid4().hex[:12]
        scopes = states_from_board(board)
        docs = []
        for sid, state in scopes.items():
            if sid != "company":
                docs.append({"_id": self.summary_id(key, g, sid), "v": version, **state.fields()})
        for start in range(0, len(docs), 500):
            self.collection.insert_many(docs[start:start + 500], ordered=False)
        company = scopes.get("company") or ScopeState()
        head = {"_id": self.head_id(key), "key": key, "g": g, "v": version,
                "scopes": sorted(s for s in scopes if s != "company"), **company.fields()}
        try:
            old = self.collection.find_one_and_replace({"_id": head["_id"], "v": {"$lte": version}}, head, upsert=True,
                                                        return_document=ReturnDocument.BEFORE)
        except DuplicateKeyError:
            old = None
            self._drop_generation(key, g, [d["_id"] for d in docs])  # the ranking is newer than this board
            return
        if old is not None and old.get("g") != g:
            self._drop_generation(key, old["g"], self._generation_ids(key, old))

    def _generation_ids(self, key: str, head: dict) -> list[str]:
        return [self.summary_id(key, head["g"], sid) for sid in head.get("scopes") or []]

    def _drop_generation(self, key: str, g: str, ids: list[str]) -> None:
        # One by _id each: a filter on anything else would scan the collection on FerretDB.
        for doc_id in ids:
            self.collection.delete_one({"_id": doc_id})
