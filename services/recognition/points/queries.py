"""Reads: leaderboards with competition ranking and movement, a person's summary, the ledger.

Leaderboards read the ranking read model (:mod:`services.recognition.points.ranking`): per
period and scope a summary with the best 100, the number of people and a coarse histogram, and
histogram pages, all read by ``_id`` (FerretDB 1.24 uses an index only for ``_id`` equality
and decodes whole documents, so the period's board, one document with everyone in it, takes
seconds to read at 100k people). A top page is one or two reads; "my rank" reads the person's
totals (their bucket ``<key>|<bucket>``) and counts the people above that score. Movement is each listed
person's rank in the previous period's ranking, for the score they had then (in that period's
top list, or their totals document). Ranks are competition ranks: 1 + the number of people
with strictly more points (1, 2, 2, 4).

Pages beyond the top lists (a cursor deeper than 100), and periods whose ranking is not there
yet, are answered from the board as before: one read and a sort in memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from services.recognition.directory import Directory
from services.recognition.points.domain import RUSH_SHARE_DAYS, RuleSet, badge_level
from services.recognition.points.ranking import Ranking, RankingView
from services.recognition.points.store import Store, badge_award_id, read_board, safe_key
from shared.calendar import PERIODS, BusinessCalendar, period_bounds, period_key, previous_period_key
from shared.clock import Clock, utc
from shared.db import find_by_ids
from shared.errors import BadInput
from shared.feeds import in_order
from shared.pagination import decode_cursor, encode_cursor, page_size
from shared.vocabulary import Role, Scope, values

SCOPES = values(Scope)
_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="points-reads")


def rankings_collection(store: Store):
    """The store's ranking read model collection (``rankings``, renamed with the store's suffix)."""
    collection = getattr(store, "rankings", None)
    return collection if collection is not None else store.db["rankings" + store.suffix]


def _scope_of(scope_filter: dict) -> tuple[str, str | None]:
    if "department" in scope_filter:
        return "department", scope_filter["department"]
    if "role" in scope_filter:
        return "role", scope_filter["role"]
    return "company", None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class PointsQueries:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock
    ranking: Ranking | None = None

    def __post_init__(self) -> None:
        if self.ranking is None:
            self.ranking = Ranking(rankings_collection(self.store))
        self._previous_memo: dict[tuple, dict[str, int | None]] = {}

    # -- leaderboards --------------------------------------------------------------------------

    def _scope_filter(self, scope: str, department: str | None, role: str | None) -> dict[str, Any]:
        if scope not in SCOPES:
            raise BadInput("invalid_scope", f"scope must be one of {', '.join(SCOPES)}", field="scope")
        if scope == "department":
            if not department:
                raise BadInput("department_required", "a department leaderboard needs a department", field="department")
            return {"department": department}
        if scope == "role":
            if not role:
                raise BadInput("role_required", "a role leaderboard needs a role", field="role")
            return {"role": role}
        return {}

    def _period(self, period: str) -> str:
        if period not in PERIODS:
            raise BadInput("invalid_period", f"period must be one of {', '.join(PERIODS)}", field="period")
        return period

    def board(self, key: str | None, scope_filter: dict, also: str | None = None) -> list[tuple[str, int, dict]]:
        """Everyone with points in a period (and scope), best first: (person, points, entry);
        people who keep themselves off the leaderboards (``h``) left out, but for ``also``."""
        if key is None:
            return []
        doc = read_board(self.store.boards, f"board:{key}")
        department, role = scope_filter.get("department"), scope_filter.get("role")
        rows = [(pid, int(e.get("p") or 0), e) for pid, e in (doc.get("entries") or {}).items()
                if (e.get("p") or 0) > 0 and (department is None or e.get("d") == department)
                and (role is None or e.get("r") == role) and (not e.get("h") or pid == also)]
        rows.sort(key=lambda row: (-row[1], row[0]))
        return rows

    @staticmethod
    def ranks(rows: list[tuple[str, int, dict]]) -> dict[str, int]:
        """Competition ranking (1, 2, 2, 4) over a board sorted best first."""
        ranks, previous_points, previous_rank = {}, None, 0
        for position, (pid, points, _) in enumerate(rows, start=1):
            if points != previous_points:
                previous_points, previous_rank = points, position
            ranks[pid] = previous_rank
        return ranks

    @staticmethod
    def _mine_from_rows(rows: list[tuple[str, int, dict]], person_id: str) -> tuple[int, int | None]:
        """A person's points and rank on a board's rows, among the visible people (the person
        may be hidden: a hidden person's rank is 1 + the visible people with more)."""
        mine = next((pts for pid, pts, _ in rows if pid == person_id), 0)
        above = sum(1 for pid, pts, e in rows if pts > mine and not e.get("h"))
        return mine, (1 + above) if mine else None

    def hidden(self, person_id: str | None) -> bool:
        """The person keeps themselves off the leaderboards (the directory copy says so)."""
        person = self.directory.get(person_id) if person_id else None
        return bool(person is not None and person.hidden)

    def rank_of(self, key: str, scope_filter: dict, person_id: str) -> int | None:
        """A person's rank in a period and scope, among the people on the leaderboards (and
        themselves, if they are hidden); None without points there."""
        scope, value = _scope_of(scope_filter)
        view = self.ranking.view(key, scope, value)
        if view is None:
            return self._mine_from_rows(self.board(key, scope_filter, also=person_id), person_id)[1]
        points = self._points(person_id, key, scope_filter, view, hidden=self.hidden(person_id))
        return view.rank(points) if points else None

    def _points(self, person_id: str, key: str, scope_filter: dict, view: RankingView, hidden: bool = False) -> int:
        """A person's points in a period if they are in the scope (as the board has them), else 0.
        ``hidden``: the person is in no summary of the ranking; their totals say."""
        entry = view.entry(person_id)
        if entry is not None:
            return entry[1]
        if (view.state.complete and not hidden) or not safe_key(person_id):
            return 0  # everyone in the scope is in the list; and an unsafe id is on no board
        total = self.store.totals_with_scope(person_id, [key])[key]
        now = self.clock.now()
        person = self.directory.get(person_id)
        if person is not None and any(key in (period_key(self.calendar, p, now), previous_period_key(self.calendar, p, now))
                                      for p in PERIODS):
            # This and the previous period count a person where they are now, as their boards
            # do (Applier.person_changed); older periods where they were when awarded.
            total = {**total, "department": person.department, "role": person.role}
        if any(total.get(field) != wanted for field, wanted in scope_filter.items()):
            return 0
        return total["points"]

    def leaderboard(self, period: str, scope: str = "company", department: str | None = None, role: str | None = None,
                    first: Any = 10, after: str | None = None, me: str | None = None, at: datetime | None = None,
                    previous_period: bool = False, viewer: Any = "me") -> dict[str, Any]:
        """The board of the period containing ``at`` (default now), or, with ``previous_period``,
        the final board of the period before it (what a screen shows while this one is empty).

        People who keep themselves off the leaderboards are on no board and counted in no rank
        (the ranking leaves them out: no gap). ``me`` of such a person is answered only to
        ``viewer`` (the caller; by default ``me`` themselves): their points and their rank
        among the visible people; to anyone else ``me`` is null."""
        if viewer == "me":
            viewer = me
        hidden_me = bool(me) and self.hidden(me)
        if hidden_me and me != viewer:
            me = None  # not theirs to see
        period = self._period(period)
        scope_filter = self._scope_filter(scope, department, role)
        now = at or self.clock.now()
        if previous_period:
            if period == "all":
                raise BadInput("no_previous_period", "all time has no previous period", field="period")
            now = period_bounds(self.calendar, period, now)[0] - timedelta(microseconds=1)
        key = period_key(self.calendar, period, now)
        previous = previous_period_key(self.calendar, period, now)
        size = page_size(first)
        cursor = tuple(decode_cursor(after, 2)) if after else None
        _, value = _scope_of(scope_filter)
        view = self.ranking.view(key, scope, value)
        ranked = self._ranked_page(view, size, cursor) if view is not None else None
        if ranked is None:
            return self._leaderboard_from_board(period, scope, department, role, key, previous, size, cursor, me, scope_filter,
                                                hidden_me)
        page, ranks, has_next = ranked
        previous_view = self.ranking.view(previous, scope, value) if previous else None
        previous_ranks = (self._previous_ranks(previous, scope_filter, previous_view, [row[0] for row in page])
                          if previous else {})
        result = self._answer(period, scope, department, role, key, previous, page, ranks, previous_ranks, has_next, view.count)
        if me:
            mine = self._points(me, key, scope_filter, view, hidden=hidden_me)
            result["me"] = {"person_id": me, "points": mine, "rank": view.rank(mine) if mine else None}
        return result

    @staticmethod
    def _ranked_page(view: RankingView, size: int, cursor: tuple | None):
        """The page from the top list: (rows, ranks, has_next); None if it reaches beyond it."""
        top = view.state.top
        start = 0
        if cursor is not None:
            points, person = cursor
            start = next((i for i, (pid, pts, _, _) in enumerate(top)
                          if (pts, pid) != (points, person) and (pts < points or (pts == points and pid > person))), len(top))
        if start + size > len(top) and not view.state.complete:
            return None
        rows = [(pid, pts, {"d": d, "r": r}) for pid, pts, d, r in top[start:start + size]]
        # Everyone with more points than a listed person is listed before them.
        ranks = {pid: 1 + sum(1 for e in top if e[1] > pts) for pid, pts, _ in rows}
        return rows, ranks, start + size < view.count

    def _previous_ranks(self, previous: str, scope_filter: dict, view: RankingView | None, people: list[str]) -> dict[str, int]:
        if view is None:
            ranks = self.ranks(self.board(previous, scope_filter))  # no ranking for that period: its board
            return {pid: ranks[pid] for pid in people if pid in ranks}
        # The previous period rarely changes once it is over: remember its ranks per version.
        memo_key = (previous, view.sid, view.head.get("g"), view.version)
        memo = self._previous_memo.get(memo_key)
        if memo is None:
            if len(self._previous_memo) >= 64:
                self._previous_memo.clear()
            memo = self._previous_memo[memo_key] = {}
        missing = [pid for pid in people if pid not in memo]
        if missing:
            # One read by _id per person not in last period's top list: issued together.
            points = dict(zip(missing, _READS.map(lambda pid: self._points(pid, previous, scope_filter, view), missing)))
            for pid in missing:
                memo[pid] = view.rank(points[pid]) if points[pid] else None
        return {pid: memo[pid] for pid in people if memo[pid] is not None}

    def _answer(self, period, scope, department, role, key, previous, page, ranks, previous_ranks, has_next, total) -> dict[str, Any]:
        people = self.directory.many(pid for pid, _, _ in page)
        entries = []
        for pid, pts, entry in page:
            prev_rank = previous_ranks.get(pid)
            person = people.get(pid)
            entries.append({
                "rank": ranks[pid], "person_id": pid, "name": person.name if person else None,
                "department": entry.get("d"), "role": entry.get("r"), "points": pts,
                "previous_rank": prev_rank, "movement": (prev_rank - ranks[pid]) if prev_rank is not None else None,
                "cursor": encode_cursor([pts, pid]),
            })
        return {
            "period": period, "key": key, "previous_key": previous, "scope": scope,
            "department": department, "role": role, "entries": entries,
            "page_info": {"has_next_page": has_next, "end_cursor": entries[-1]["cursor"] if entries else None},
            "total_count": total,
            "me": None,
        }

    def _leaderboard_from_board(self, period, scope, department, role, key, previous, size, cursor, me, scope_filter,
                                hidden_me: bool = False) -> dict[str, Any]:
        """The same answer from the period's board: for pages beyond the top lists."""
        rows = self.board(key, scope_filter, also=me if hidden_me else None)
        mine = self._mine_from_rows(rows, me) if me else None
        rows = [row for row in rows if not row[2].get("h")]  # a hidden ``me`` is on no page
        ranks = self.ranks(rows)
        start = 0
        if cursor is not None:
            points, person = cursor
            start = next((i for i, (pid, pts, _) in enumerate(rows) if (pts, pid) != (points, person)
                          and (pts < points or (pts == points and pid > person))), len(rows))
        page = rows[start:start + size]
        previous_ranks = self.ranks(self.board(previous, scope_filter))
        result = self._answer(period, scope, department, role, key, previous, page, ranks, previous_ranks,
                              start + size < len(rows), len(rows))
        if me:
            result["me"] = {"person_id": me, "points": mine[0], "rank": mine[1]}
        return result

    # -- a person -------------------------------------------------------------------------------

    def summary(self, person_id: str, viewer: str | None = "self") -> dict[str, Any]:
        """Points and rank per period, badges, rush share: every read by ``_id`` (or ``$in``),
        the independent ones issued together (about fifteen small reads in the time of a few).

        A person who keeps themselves off the leaderboards has ranks only for themselves
        (``viewer``, the caller; default: the person): null for anyone else. Their points and
        badges stay public, like everyone's."""
        if viewer == "self":
            viewer = person_id
        now = self.clock.now()
        keys = {period: period_key(self.calendar, period, now) for period in PERIODS}
        badges = _READS.submit(self.badges_of, person_id)
        person = self.directory.get(person_id)
        ranked = not (person is not None and person.hidden and viewer != person_id)
        rush = (_READS.submit(self.rush_share, person_id)
                if (person is None or person.role in (Role.REP.value, Role.MANAGER.value)) else None)
        totals = self.store.totals_of(person_id, list(keys.values()))

        def period_of(period: str) -> dict[str, Any]:
            key = keys[period]
            points = totals[key]
            start, end = period_bounds(self.calendar, period, now)
            return {"key": key, "points": points, "rank": self._summary_rank(key, person_id, points) if ranked else None,
                    "starts_at": start.isoformat() if start else None, "ends_at": end.isoformat() if end else None}

        periods = dict(zip(PERIODS, _READS.map(period_of, PERIODS)))
        return {
            "person_id": person_id,
            "name": person.name if person else None,
            "role": person.role if person else None,
            "periods": periods,
            "badges": badges.result(),
            "rush_share": rush.result() if rush is not None else None,
        }

    def _summary_rank(self, key: str, person_id: str, points: int) -> int | None:
        if not points:
            return None
        view = self.ranking.view(key, "company", None)
        if view is None:
            return self.rank_of(key, {}, person_id)
        return view.rank(points) if safe_key(person_id) else None

    def badges_of(self, person_id: str) -> list[dict[str, Any]]:
        progress = self.store.progress_of(person_id).get("badges") or {}
        # Award ids are deterministic (person:badge:tier, badges.award_badges): read
        # every tier the rules have by _id instead of searching by person.
        ids = [badge_award_id(person_id, badge.id, tier) for badge in self.rules.badges.values() for tier, _ in badge.tiers]
        awarded = {(d["badge"], d.get("tier")): d for d in find_by_ids(self.store.badge_awards, ids).values()}
        out = []
        for badge in self.rules.badges.values():
            state = progress.get(badge.id, {})
            level = badge_level(badge, state)
            earned = [tier for tier, _ in badge.tiers if (badge.id, tier) in awarded]
            nxt = badge.next_tier(level)
            out.append({
                "badge": badge.id, "name": badge.name, "description": badge.description, "kind": badge.kind,
                "level": level, "earned": bool(earned), "tiers_earned": [t for t in earned if t],
                "tier": earned[-1] if earned else None,
                "awarded_at": _iso(max((awarded[(badge.id, t)]["at"] for t in earned), default=None)),
                "evidence_event_ids": (awarded[(badge.id, earned[-1])]["evidence"] if earned else []),
                "next_tier": nxt[0] if nxt else None, "next_threshold": nxt[1] if nxt else None,
                "progress": round(min(1.0, level / nxt[1]), 4) if nxt else 1.0,
            })
        return out

    def rush_share(self, person_id: str) -> dict[str, Any]:
        now = self.clock.now()
        since = now - timedelta(days=RUSH_SHARE_DAYS)
        # The requester's days (store: submission_days, kept by the scorer), 31 ids in one $in.
        days = [f"{person_id}:{(since + timedelta(days=i)).astimezone(timezone.utc).strftime('%Y-%m-%d')}"
                for i in range(RUSH_SHARE_DAYS + 2)]
        found = [s for doc in find_by_ids(self.store.submission_days, days).values() for s in (doc.get("r") or {}).values()
                 if utc(s["t"]) >= since]
        total, rush = len(found), sum(1 for s in found if s.get("s"))
        return {"days": RUSH_SHARE_DAYS, "requests": total, "rush_short_notice": rush,
                "share": round(rush / total, 4) if total else None}

    def history(self, person_id: str, first: Any = 20, after: str | None = None, include_zero: bool = False) -> dict[str, Any]:
        if not include_zero:
            # The person's ledger list: the pages their points state names (ledger_pages.py),
            # those that can hold this page's entries, by _id.
            state = self.store.table.get(person_id)
            page = self.store.ledger_pages.page(state.ledger if state is not None else None, first=first, after=after)
            docs = in_order(page["ids"], find_by_ids(self.store.ledger, page["ids"]))
            return {"items": [_ledger_item(d) for d in docs], "page_info": page["page_info"],
                    "total_count": page["total_count"]}
        # An audit of every entry, zero-point ones too (not a portal read): a search by person.
        size = page_size(first)
        query: dict[str, Any] = {"person_id": person_id}
        if not include_zero:
            query["$or"] = [{"points": {"$gt": 0}}, {"capped": True}]
        filt = dict(query)
        if after:
            at, eid = decode_cursor(after, 2)
            filt = {"$and": [query, {"$or": [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": eid}}]}]}
        docs = list(self.store.ledger.find(filt).sort([("at", -1), ("_id", -1)]).limit(size + 1))
        has_next = len(docs) > size
        items = [_ledger_item(d) for d in docs[:size]]
        return {"items": items, "page_info": {"has_next_page": has_next, "end_cursor": items[-1]["cursor"] if items else None},
                "total_count": self.store.ledger.count_documents(query)}

    def badge_definitions(self) -> list[dict[str, Any]]:
        return [{"badge": b.id, "name": b.name, "description": b.description, "kind": b.kind,
                 "tiers": [{"tier": t, "threshold": n} for t, n in b.tiers]} for b in self.rules.badges.values()]


def _ledger_item(d: dict) -> dict[str, Any]:
    at = utc(d["at"])
    return {
        "entry_id": d["_id"], "points": d["points"], "rule": d["rule"], "reason": d["reason"], "capped": d.get("capped", False),
        "source_event_id": d["source_event_id"], "source_event_type": d["source_event_type"], "at": at.isoformat(),
        "cursor": encode_cursor([at, d["_id"]]),
    }
