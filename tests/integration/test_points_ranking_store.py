"""The ranking read model on FerretDB: leaderboards from it equal leaderboards from the boards,
and board updates applied by two writers at once leave it equal to the board."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import pytest
from pymongo import ReturnDocument

from services.recognition.directory import Directory
from services.recognition.points.store import Store
from services.recognition.points.queries import PointsQueries, rankings_collection
from services.recognition.points.domain import scope_id, scopes_of
from services.recognition.points.ranking import Ranking, ScoreChange
from services.recognition.points.rules import load_rules
from shared.calendar import BusinessCalendar, period_key, previous_period_key
from shared.clock import ManualClock
from shared.db import connect, disconnect, mongo_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)  # Thursday of 2026-W48
DEPARTMENTS = ["sales", "pricing", "legal"]
ROLES = ["rep", "support"]


@pytest.fixture
def store(settings):
    db = connect(settings, "points")
    yield Store(db)
    disconnect()


def seed_totals(store: Store, key: str, entries: dict[str, dict]) -> None:
    """People's totals for a period (board entries), as the applier keeps them (the points state)."""
    store.table.write_totals(key, {pid: (e["p"], e["d"], e["r"]) for pid, e in entries.items()})


def seed(store: Store, key: str, people: int, rng: random.Random, top: int = 40) -> None:
    """A board and the matching totals for a period: ties (few distinct scores), three departments."""
    entries = {}
    for i in range(people):
        if rng.random() < 0.2:
            continue  # not everyone has points every period
        pid = f"p{i:03d}"
        e = {"p": rng.randint(1, top), "d": rng.choice(DEPARTMENTS), "r": rng.choice(ROLES)}
        entries[pid] = e
    store.boards.insert_one({"_id": f"board:{key}", "v": 7, "entries": entries, "applied": {}})
    seed_totals(store, key, entries)


def test_leaderboards_from_the_ranking_equal_those_from_the_boards(store, settings):
    calendar = BusinessCalendar.from_settings(settings)
    rng = random.Random(11)
    for period in ("week", "month"):
        for key in (period_key(calendar, period, NOW), previous_period_key(calendar, period, NOW)):
            seed(store, key, 320, rng)
            Ranking(rankings_collection(store)).rebuild(key, store.boards.find_one({"_id": f"board:{key}"}))
    args = (store, load_rules(), calendar, Directory(), ManualClock(NOW))
    ranked = PointsQueries(*args)
    from_boards = PointsQueries(*args, ranking=Ranking(store.db["no_rankings"]))  # no ranking: the boards

    scopes = [("company", None, None)] + [("department", d, None) for d in DEPARTMENTS] + [("role", None, r) for r in ROLES]
    people = ["p000", "p007", "p123", "p318", "nobody"]
    for period in ("week", "month"):
        for scope, department, role in scopes:
            for first in (1, 10, 37):
                after, pages = None, 0
                while True:
                    me = people[pages % len(people)]
                    want = from_boards.leaderboard(period, scope, department, role, first=first, after=after, me=me)
                    got = ranked.leaderboard(period, scope, department, role, first=first, after=after, me=me)
                    assert got == want, (period, scope, department, role, first, after)
                    pages += 1
                    if not want["page_info"]["has_next_page"] or pages > 4:
                        break
                    after = want["page_info"]["end_cursor"]
            key = period_key(calendar, period, NOW)
            scope_filter = {"department": department} if department else {"role": role} if role else {}
            for pid in people:
                assert ranked.rank_of(key, scope_filter, pid) == from_boards.rank_of(key, scope_filter, pid)
    assert any(e["movement"] not in (None, 0) for e in ranked.leaderboard("week", first=20)["entries"])
    for pid in people:
        assert ranked.summary(pid)["periods"] == from_boards.summary(pid)["periods"]


def _update_board(boards, key: str, pid: str, points: int, department: str, role: str) -> tuple[int, ScoreChange]:
    """What the applier does: one atomic board update with its version, and the change it made."""
    before = boards.find_one_and_update(
        {"_id": f"board:{key}"},
        {"$inc": {f"entries.{pid}.p": points, "v": 1}, "$set": {f"entries.{pid}.d": department, f"entries.{pid}.r": role}},
        upsert=True, return_document=ReturnDocument.BEFORE)  # FerretDB 1.24: no projection here
    old = ((before or {}).get("entries") or {}).get(pid) or {}
    change = ScoreChange(pid, int(old.get("p") or 0), int(old.get("p") or 0) + points, department, role,
                         old_department=old.get("d"), old_role=old.get("r"))
    return int((before or {}).get("v") or 0) + 1, change


def test_two_writers_updating_one_board_at_once_leave_the_ranking_equal_to_it(settings):
    key = "2026-W48"
    rng = random.Random(3)
    plans = [[(f"w{w}p{rng.randrange(12)}", rng.randint(1, 9), rng.choice(DEPARTMENTS), rng.choice(ROLES)) for _ in range(25)]
             for w in range(2)]
    errors = []

    def writer(plan):
        client = mongo_client(settings)  # each writer its own connection, like two processes
        try:
            db = client[settings.database("points")]
            ranking = Ranking(db["rankings"])
            for pid, points, department, role in plan:
                version, change = _update_board(db["boards"], key, pid, points, department, role)
                ranking.apply(key, version, [change], lambda: db["boards"].find_one({"_id": f"board:{key}"}))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors

    client = mongo_client(settings)
    try:
        db = client[settings.database("points")]
        board = db["boards"].find_one({"_id": f"board:{key}"})
        ranking = Ranking(db["rankings"])
        assert ranking.view(key, "company", None).version == board["v"] == 50
        for scope, value in [("company", None)] + [("department", d) for d in DEPARTMENTS] + [("role", r) for r in ROLES]:
            rows = sorted(((pid, e["p"], e["d"], e["r"]) for pid, e in board["entries"].items()
                           if scope_id(scope, value) in scopes_of(e["d"], e["r"])), key=lambda r: (-r[1], r[0]))
            assert ranking.top(key, scope, value, 100) == rows
            assert ranking.count(key, scope, value) == len(rows)
            for points in {r[1] for r in rows} | {0, 100}:
                assert ranking.rank(key, scope, value, points) == 1 + sum(1 for r in rows if r[1] > points)
    finally:
        client.close()
