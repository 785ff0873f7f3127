"""The ranking read model against a brute-force sort of the board it mirrors.

Random boards and random sequences of board updates (more points, ties, department and role
moves), applied in order, replayed, out of order, interrupted half-way and concurrently; after
each step every scope's top list, count and the rank of every score must equal what sorting
the board gives. Short lists (monkeypatched) make truncated lists and refills happen with a
few dozen people. The store is an in-memory stand-in with the few
operations the model uses (reads and conditional writes by ``_id``); the same model runs on
FerretDB in tests/integration/test_points_ranking_store.py.
"""

from __future__ import annotations

import bisect
import copy
import random
import threading
import time

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.recognition.points import ranking as rk
from services.recognition.points.ranking import Ranking, ScoreChange

DEPARTMENTS = ["sales", "pricing", "legal", None]
ROLES = ["rep", "support", None]


# -- an in-memory collection with the operations the model uses --------------------------------------

class _Result:
    def __init__(self, matched: int):
        self.matched_count = matched


def _matches(doc: dict, filt: dict) -> bool:
    for k, cond in filt.items():
        value = doc.get(k)
        if isinstance(cond, dict):
            for op, arg in cond.items():
                if value is None or not {"$lt": value < arg, "$lte": value <= arg}[op]:
                    return False
        elif value != cond:
            return False
    return True


class MemoryCollection:
    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.lock = threading.RLock()
        self.fail_after: int | None = None  # raise on the n-th write from now (a crash half-way)
        self.writes = 0

    def _write(self):
        self.writes += 1
        if self.fail_after is not None:
            self.fail_after -= 1
            if self.fail_after < 0:
                self.fail_after = None
                raise ConnectionError("crash")

    def find_one(self, filt):
        with self.lock:
            doc = self.docs.get(filt["_id"])
            return copy.deepcopy(doc) if doc is not None and _matches(doc, filt) else None

    def find(self, filt, projection=None):  # only by _id: {"_id": {"$in": [...]}} (shared.db.find_by_ids)
        with self.lock:
            return [copy.deepcopy(self.docs[i]) for i in filt["_id"]["$in"] if i in self.docs]

    def update_one(self, filt, update, upsert=False):
        with self.lock:
            self._write()
            doc = self.docs.get(filt["_id"])
            if doc is not None:
                if not _matches(doc, filt):
                    if upsert:
                        raise DuplicateKeyError("E11000")
                    return _Result(0)
                doc.update(copy.deepcopy(update["$set"]))
                return _Result(1)
            if upsert:
                self.docs[filt["_id"]] = {"_id": filt["_id"], **copy.deepcopy(update["$set"])}
            return _Result(0)

    def bulk_write(self, ops, ordered=True):
        """Each operation on its own (a crash can stop the bulk half-way); refusals reported at the end."""
        refused = []
        for index, op in enumerate(ops):
            try:
                self.update_one(op._filter, op._doc, upsert=op._upsert)
            except DuplicateKeyError:
                refused.append({"index": index, "code": 11000})
        if refused:
            raise BulkWriteError({"writeErrors": refused})

    def insert_many(self, docs, ordered=True):
        with self.lock:
            self._write()
            for d in docs:
                assert d["_id"] not in self.docs
                self.docs[d["_id"]] = copy.deepcopy(d)

    def find_one_and_replace(self, filt, doc, upsert=False, return_document=None):
        with self.lock:
            self._write()
            old = self.docs.get(filt["_id"])
            if old is not None and not _matches(old, filt):
                raise DuplicateKeyError("E11000")
            self.docs[filt["_id"]] = copy.deepcopy(doc)
            return old

    def delete_one(self, filt):
        with self.lock:
            self._write()
            doc = self.docs.get(filt["_id"])
            if doc is not None and _matches(doc, filt):
                del self.docs[filt["_id"]]


# -- the board and its brute-force answers ----------------------------------------------------------

class Board:
    """A period's board as the applier keeps it, and the changes each update makes."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.v = 0
        self.entries: dict[str, dict] = {}

    def doc(self) -> dict:
        return {"_id": "board:k", "v": self.v, "entries": copy.deepcopy(self.entries)}

    def update(self, people: int, moves: float = 0.1, max_points: int = 12) -> list[ScoreChange]:
        """One board version: a few people earn points (maybe 0: ties), some change department/role."""
        changes = {}
        for _ in range(self.rng.randint(1, 4)):
            pid = f"p{self.rng.randrange(people):03d}"
            e = self.entries.get(pid) or {"p": 0, "d": self.rng.choice(DEPARTMENTS), "r": self.rng.choice(ROLES)}
            first = changes.get(pid)
            old = (first.old, first.old_department, first.old_role) if first else (e["p"], e["d"], e["r"])
            new_d, new_r = e["d"], e["r"]
            gain = self.rng.choice([0, 1, 1, 2, 3, self.rng.randint(1, max_points)])
            if pid in self.entries and self.rng.random() < moves:
                new_d, new_r = self.rng.choice(DEPARTMENTS), self.rng.choice(ROLES)
            elif gain == 0:
                gain = 1
            hidden = bool(e.get("h"))
            self.entries[pid] = {"p": e["p"] + gain, "d": new_d, "r": new_r, **({"h": True} if hidden else {})}
            changes[pid] = ScoreChange(pid, old[0], e["p"] + gain, new_d, new_r, old_department=old[1], old_role=old[2],
                                       hidden=hidden)
        self.v += 1
        return list(changes.values())

    def show(self, pid: str, visible: bool) -> list[ScoreChange]:
        """One board version: a person keeps themselves off the leaderboards, or comes back
        (``applier.person_changed``)."""
        e = self.entries[pid]
        was = bool(e.pop("h", False))
        if not visible:
            e["h"] = True
        self.v += 1
        return [ScoreChange(pid, e["p"], e["p"], e["d"], e["r"], hidden=not visible, old_hidden=was)]

    def rows(self, sid: str) -> list[tuple[str, int, str | None, str | None]]:
        """A scope's people best first, those off the leaderboards (``h``) left out."""
        rows = [(pid, e["p"], e["d"], e["r"]) for pid, e in self.entries.items()
                if e["p"] > 0 and not e.get("h") and sid in rk.scopes_of(e["d"], e["r"])]
        return sorted(rows, key=lambda r: (-r[1], r[0]))


def all_scopes():
    return [("company", None)] + [("department", d) for d in DEPARTMENTS if d] + [("role", r) for r in ROLES if r]


def check(ranking: Ranking, board: Board) -> None:
    for scope, value in all_scopes():
        rows = board.rows(rk.scope_id(scope, value))
        view = ranking.view("k", scope, value)
        assert view is not None
        assert view.version == board.v
        assert view.count == len(rows), (scope, value)
        for n in (1, 3, rk.TOP_K, len(rows)):
            top = view.top(n)
            if top is not None:
                assert top == rows[:n], (scope, value, n)
        assert view.top(min(len(rows), 3)) is not None or len(view.state.top) < 3
        scores = sorted({r[1] for r in rows} | {0, 1, 5, 7, 8, 9, 100})
        if len(scores) > 80:
            scores = scores[:20] + random.Random(len(rows)).sample(scores[20:-20], 40) + scores[-20:]
        ascending = sorted(r[1] for r in rows)
        for points in scores:
            expected = 1 + len(ascending) - bisect.bisect_right(ascending, points)
            assert view.rank(points) == expected, (scope, value, points)
        assert ranking.count("k", scope, value) == len(rows)


@pytest.fixture
def small(monkeypatch):
    """Lists of 6, so truncation and refills happen with few people."""
    monkeypatch.setattr(rk, "TOP_K", 6)
    monkeypatch.setattr(rk, "REFILL_BELOW", 3)


# -- the tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_updates_in_order_equal_a_sort_of_the_board(small, seed):
    rng = random.Random(seed)
    board, ranking = Board(rng), Ranking(MemoryCollection(), wait_behind_s=0.01)
    people = rng.choice([5, 20, 60])
    for _ in range(80):
        changes = board.update(people, moves=rng.choice([0.0, 0.1, 0.4]))
        ranking.apply("k", board.v, changes, board.doc)
        check(ranking, board)


@pytest.mark.parametrize("seed", range(4))
def test_one_scope_changed_many_times_keeps_the_exact_best(small, seed):
    """A scope's state taking many changes of the same people (a board update changes a person
    once, but the state must not rely on it): after each change its list is still the exact
    best of the scope (all of it, or a prefix after people left), with no one twice, and its
    count and histogram are exact."""
    rng = random.Random(seed)
    state, points = rk.ScopeState(), {}
    for _ in range(3000):
        pid = f"p{rng.randrange(25)}"
        if pid in points and rng.random() < 0.15:
            state.remove(pid, points.pop(pid))
        elif pid in points:
            new = points[pid] + rng.choice([0, 1, 1, 4])
            state.update(pid, points[pid], new, "sales", "rep")
            points[pid] = new
        else:
            points[pid] = rng.randint(1, 12)
            state.add(pid, points[pid], "sales", "rep")
        best = sorted(((p, n, "sales", "rep") for p, n in points.items()), key=lambda e: (-e[1], e[0]))
        assert state.top == best[:len(state.top)] and len(state.top) <= rk.TOP_K
        assert state.n == len(points) and state.complete == (len(state.top) == len(points))
        assert state.hist == {n: sum(1 for v in points.values() if v == n) for n in set(points.values())}


def test_the_real_sizes_on_a_large_board():
    rng = random.Random(7)
    board, ranking = Board(rng), Ranking(MemoryCollection())
    for i in range(3000):
        board.entries[f"p{i:04d}"] = {"p": rng.randint(1, 1500), "d": rng.choice(DEPARTMENTS), "r": rng.choice(ROLES)}
    board.v = 41
    ranking.rebuild("k", board.doc())
    check(ranking, board)
    for _ in range(30):
        ranking.apply("k", board.v + 1, board.update(3000, max_points=400), board.doc)
        check(ranking, board)


def test_a_replayed_version_changes_nothing(small):
    rng = random.Random(1)
    board, store = Board(rng), MemoryCollection()
    ranking = Ranking(store, wait_behind_s=0.01)
    history = []
    for _ in range(30):
        changes = board.update(15)
        history.append((board.v, changes))
        ranking.apply("k", board.v, changes, board.doc)
    before = copy.deepcopy(store.docs)
    for version, changes in history[-5:]:
        ranking.apply("k", version, changes, board.doc)
    assert store.docs == before
    check(ranking, board)


def test_an_update_interrupted_half_way_and_retried_counts_once(small):
    rng = random.Random(2)
    board, store = Board(rng), MemoryCollection()
    ranking = Ranking(store, wait_behind_s=0.01)
    for step in range(60):
        changes = board.update(25, moves=0.3)
        store.fail_after = rng.randint(0, 6)
        try:
            ranking.apply("k", board.v, changes, board.doc)
        except ConnectionError:
            ranking.apply("k", board.v, changes, board.doc)  # the applier retries the same version
        store.fail_after = None
        check(ranking, board)


def test_a_lost_version_is_recovered_from_the_board(small):
    rng = random.Random(3)
    board, ranking = Board(rng), Ranking(MemoryCollection(), wait_behind_s=0.01)
    for _ in range(10):
        ranking.apply("k", board.v + 1, board.update(20), board.doc)
    board.update(20)                       # the board moved on; its ranking update was lost (a crash)
    changes = board.update(20)
    ranking.apply("k", board.v, changes, board.doc)
    check(ranking, board)


def test_versions_out_of_order_end_right(small):
    rng = random.Random(4)
    board, ranking = Board(rng), Ranking(MemoryCollection(), wait_behind_s=0.01)
    for _ in range(40):
        first = (board.v + 1, board.update(20, moves=0.2))
        second = (board.v + 1, board.update(20, moves=0.2))
        # Version n+1 first: it waits for n, gives up, and rebuilds from the board; then n is a no-op.
        ranking.apply("k", second[0], second[1], board.doc)
        ranking.apply("k", first[0], first[1], board.doc)
        check(ranking, board)


def test_two_processes_applying_consecutive_versions_concurrently(small):
    rng = random.Random(5)
    board, store = Board(rng), MemoryCollection()
    ranking = Ranking(store, wait_behind_s=2.0)
    for _ in range(15):
        ranking.apply("k", board.v + 1, board.update(30), board.doc)
    for _ in range(10):
        five = (board.v + 1, board.update(30, moves=0.2))
        six = (board.v + 1, board.update(30, moves=0.2))
        rebuilt = []
        original = ranking.rebuild
        ranking.rebuild = lambda key, doc: (rebuilt.append(key), original(key, doc))
        late = threading.Thread(target=ranking.apply, args=("k", six[0], six[1], board.doc))
        late.start()            # 6 waits for 5 ...
        time.sleep(0.05)
        ranking.apply("k", five[0], five[1], board.doc)
        late.join(10)
        ranking.rebuild = original
        assert rebuilt == []    # ... and applies it incrementally once 5 is in
        check(ranking, board)


def test_rebuild_equals_incremental_and_drops_the_old_generation(small):
    rng = random.Random(6)
    board, store = Board(rng), MemoryCollection()
    ranking = Ranking(store, wait_behind_s=0.01)
    for _ in range(50):
        ranking.apply("k", board.v + 1, board.update(40, moves=0.1), board.doc)
    incremental = {s: ranking.view("k", *s).top(100) for s in all_scopes()}
    ranking.rebuild("k", board.doc())
    check(ranking, board)
    assert {s: ranking.view("k", *s).top(100) for s in all_scopes()} == incremental
    g = store.docs["head:k"]["g"]
    assert all(doc_id == "head:k" or doc_id.startswith(f"k|{g}|") for doc_id in store.docs)


def test_a_rebuild_from_an_older_board_does_not_go_back(small):
    rng = random.Random(8)
    board, ranking = Board(rng), Ranking(MemoryCollection(), wait_behind_s=0.01)
    for _ in range(5):
        ranking.apply("k", board.v + 1, board.update(10), board.doc)
    old = board.doc()
    ranking.apply("k", board.v + 1, board.update(10), board.doc)
    ranking.rebuild("k", old)
    check(ranking, board)


def test_a_department_emptied_from_the_top_is_refilled(small):
    board, ranking = Board(random.Random(9)), Ranking(MemoryCollection(), wait_behind_s=0.01)
    for i in range(20):
        board.entries[f"p{i:03d}"] = {"p": 100 - i, "d": "legal", "r": "rep"}
    ranking.rebuild("k", board.doc())
    for i in range(12):  # the best of legal move to sales one by one
        pid = f"p{i:03d}"
        board.entries[pid]["d"] = "sales"
        board.v += 1
        ranking.apply("k", board.v, [ScoreChange(pid, 100 - i, 100 - i, "sales", "rep", old_department="legal")], board.doc)
        check(ranking, board)
        assert ranking.top("k", "department", "legal", 3) == board.rows("department:legal")[:3]


def test_no_ranking_yet_and_empty_scopes():
    ranking = Ranking(MemoryCollection())
    assert ranking.view("2026-W48", "company", None) is None
    assert ranking.top("2026-W48", "company", None, 10) is None
    assert (ranking.rank("2026-W48", "company", None, 5), ranking.count("2026-W48", "company", None)) == (1, 0)
    board = Board(random.Random(0))
    ranking.apply("k", 1, board.update(3), board.doc)  # a new period: started from its board
    assert ranking.top("k", "department", "marketing", 10) == [] and ranking.count("k", "role", "manager") == 0


def test_score_change_defaults_to_no_move():
    change = ScoreChange("p1", 5, 10, "sales", "rep")
    assert (change.old_department, change.old_role) == ("sales", "rep")
    moved = ScoreChange("p1", 5, 5, "sales", "rep", old_department="legal", old_role=None)
    assert (moved.old_department, moved.old_role) == ("legal", None)


def test_a_hidden_person_leaves_no_gap_and_comes_back_with_the_right_rank():
    board, ranking = Board(random.Random(1)), Ranking(MemoryCollection())
    board.entries = {"ann": {"p": 30, "d": "sales", "r": "rep"}, "bob": {"p": 20, "d": "sales", "r": "rep"},
                     "cat": {"p": 10, "d": "sales", "r": "rep"}}
    board.v = 1
    ranking.rebuild("k", board.doc())
    assert [ranking.rank("k", "company", None, p) for p in (30, 20, 10)] == [1, 2, 3]

    ranking.apply("k", board.v + 1, board.show("bob", visible=False), board.doc)  # bob keeps himself off
    view = ranking.view("k", "company", None)
    assert view.top(10) == [("ann", 30, "sales", "rep"), ("cat", 10, "sales", "rep")] and view.count == 2
    assert view.rank(30) == 1 and view.rank(10) == 2  # cat moves up: no gap
    assert view.rank(20) == 2  # bob's own rank, among the visible people (what he sees himself)
    assert ranking.top("k", "department", "sales", 10) == [("ann", 30, "sales", "rep"), ("cat", 10, "sales", "rep")]
    check(ranking, board)

    # Hidden, bob goes on earning: still off every list, his points still counted for himself.
    board.entries["bob"]["p"] = 40
    board.v += 1
    ranking.apply("k", board.v, [ScoreChange("bob", 20, 40, "sales", "rep", hidden=True)], board.doc)
    assert ranking.view("k", "company", None).top(10) == [("ann", 30, "sales", "rep"), ("cat", 10, "sales", "rep")]
    assert ranking.rank("k", "company", None, 40) == 1
    check(ranking, board)

    ranking.apply("k", board.v + 1, board.show("bob", visible=True), board.doc)  # back, at his rank
    assert [e[0] for e in ranking.view("k", "company", None).top(10)] == ["bob", "ann", "cat"]
    assert [ranking.rank("k", "company", None, p) for p in (40, 30, 10)] == [1, 2, 3]
    check(ranking, board)
    # A rebuild from the board (a repair, a new generation) leaves the hidden out the same way.
    board.show("ann", visible=False)
    ranking.rebuild("k", board.doc())
    check(ranking, board)
    assert ranking.count("k", "company", None) == 2


@pytest.mark.parametrize("seed", range(6))
def test_people_hiding_and_coming_back_equal_a_sort_of_the_visible(small, seed):
    rng = random.Random(100 + seed)
    board, ranking = Board(rng), Ranking(MemoryCollection(), wait_behind_s=0.01)
    people = rng.choice([8, 30])
    for _ in range(80):
        if board.entries and rng.random() < 0.25:
            pid = rng.choice(sorted(board.entries))
            changes = board.show(pid, visible=bool(board.entries[pid].get("h")))
        else:
            changes = board.update(people, moves=0.1)
        ranking.apply("k", board.v, changes, board.doc)
        check(ranking, board)
