"""Reads: leaderboards with competition ranking and movement, a person's summary, the ledger.

Ranks come from counting: a person's rank is 1 + the number of people in the same period and
scope with strictly more points (competition ranking: 1, 2, 2, 4), answered by the
``(key, [department|role,] -points)`` indexes, so "my rank" costs one count, not a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.recognition.directory import Directory
from services.recognition.points.engine import PERIODS, Store, badge_level
from services.recognition.points.rules import RuleSet
from shared.calendar import BusinessCalendar, period_bounds, period_key, previous_period_key
from shared.clock import Clock
from shared.errors import BadInput
from shared.pagination import decode_cursor, encode_cursor, page_size

SCOPES = ("company", "department", "role")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
RUSH_SHARE_DAYS = 30


@dataclass
class PointsQueries:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock

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

    def rank_of(self, key: str, scope_filter: dict, points: int) -> int:
        return 1 + self.store.totals.count_documents({"key": key, **scope_filter, "points": {"$gt": points}})

    def leaderboard(self, period: str, scope: str = "company", department: str | None = None, role: str | None = None,
                    first: Any = 10, after: str | None = None, me: str | None = None, at: datetime | None = None) -> dict[str, Any]:
        period = self._period(period)
        scope_filter = self._scope_filter(scope, department, role)
        now = at or self.clock.now()
        key = period_key(self.calendar, period, now)
        previous = previous_period_key(self.calendar, period, now)
        size = page_size(first)
        query: dict[str, Any] = {"key": key, **scope_filter, "points": {"$gt": 0}}
        if after:
            points, person = decode_cursor(after, 2)
            query["$or"] = [{"points": {"$lt": points}}, {"points": points, "person_id": {"$gt": person}}]
        docs = list(self.store.totals.find(query).sort([("points", -1), ("person_id", 1)]).limit(size + 1))
        has_next = len(docs) > size
        docs = docs[:size]
        people = self.directory.many(d["person_id"] for d in docs)
        previous_points = self._points_in(previous, [d["person_id"] for d in docs]) if previous else {}
        entries, rank_cache = [], {}
        for doc in docs:
            pts = doc["points"]
            if pts not in rank_cache:
                rank_cache[pts] = self.rank_of(key, scope_filter, pts)
            rank = rank_cache[pts]
            prev_rank = None
            if doc["person_id"] in previous_points:
                prev_rank = self.rank_of(previous, scope_filter, previous_points[doc["person_id"]])
            person = people.get(doc["person_id"])
            entries.append({
                "rank": rank, "person_id": doc["person_id"], "name": person.name if person else None,
                "department": doc.get("department"), "role": doc.get("role"), "points": pts,
                "previous_rank": prev_rank, "movement": (prev_rank - rank) if prev_rank is not None else None,
                "cursor": encode_cursor([pts, doc["person_id"]]),
            })
        result = {
            "period": period, "key": key, "previous_key": previous, "scope": scope,
            "department": department, "role": role, "entries": entries,
            "page_info": {"has_next_page": has_next, "end_cursor": entries[-1]["cursor"] if entries else None},
            "total_count": self.store.totals.count_documents({"key": key, **scope_filter, "points": {"$gt": 0}}),
            "me": None,
        }
        if me:
            mine = self.store.totals.find_one({"_id": f"{me}:{key}"})
            points = mine["points"] if mine and self._in_scope(mine, scope_filter) else 0
            result["me"] = {"person_id": me, "points": points, "rank": self.rank_of(key, scope_filter, points) if points else None}
        return result

    @staticmethod
    def _in_scope(doc: dict, scope_filter: dict) -> bool:
        return all(doc.get(k) == v for k, v in scope_filter.items())

    def _points_in(self, key: str, person_ids: list[str]) -> dict[str, int]:
        ids = [f"{p}:{key}" for p in person_ids]
        return {d["person_id"]: d["points"] for d in self.store.totals.find({"_id": {"$in": ids}, "points": {"$gt": 0}})}

    # -- a person -------------------------------------------------------------------------------

    def summary(self, person_id: str) -> dict[str, Any]:
        now = self.clock.now()
        person = self.directory.get(person_id)
        periods = {}
        for period in PERIODS:
            key = period_key(self.calendar, period, now)
            doc = self.store.totals.find_one({"_id": f"{person_id}:{key}"})
            points = doc["points"] if doc else 0
            start, end = period_bounds(self.calendar, period, now)
            periods[period] = {
                "key": key, "points": points, "rank": self.rank_of(key, {}, points) if points else None,
                "starts_at": start.isoformat() if start else None, "ends_at": end.isoformat() if end else None,
            }
        return {
            "person_id": person_id,
            "name": person.name if person else None,
            "role": person.role if person else None,
            "periods": periods,
            "badges": self.badges_of(person_id),
            "rush_share": self.rush_share(person_id) if (person is None or person.role in ("rep", "manager")) else None,
        }

    def badges_of(self, person_id: str) -> list[dict[str, Any]]:
        progress = (self.store.badge_progress.find_one({"_id": person_id}) or {}).get("badges") or {}
        awarded = {(d["badge"], d.get("tier")): d for d in self.store.badge_awards.find({"person_id": person_id})}
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
        since = self.clock.now() - timedelta(days=RUSH_SHARE_DAYS)
        total = self.store.submissions.count_documents({"requester_id": person_id, "at": {"$gte": since}})
        rush = self.store.submissions.count_documents({"requester_id": person_id, "at": {"$gte": since}, "rush_short_notice": True})
        return {"days": RUSH_SHARE_DAYS, "requests": total, "rush_short_notice": rush,
                "share": round(rush / total, 4) if total else None}

    def history(self, person_id: str, first: Any = 20, after: str | None = None, include_zero: bool = False) -> dict[str, Any]:
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
        items = [{
            "entry_id": d["_id"], "points": d["points"], "rule": d["rule"], "reason": d["reason"], "capped": d.get("capped", False),
            "source_event_id": d["source_event_id"], "source_event_type": d["source_event_type"], "at": d["at"].isoformat(),
            "cursor": encode_cursor([d["at"], d["_id"]]),
        } for d in docs[:size]]
        return {"items": items, "page_info": {"has_next_page": has_next, "end_cursor": items[-1]["cursor"] if items else None},
                "total_count": self.store.ledger.count_documents(query)}

    def badge_definitions(self) -> list[dict[str, Any]]:
        return [{"badge": b.id, "name": b.name, "description": b.description, "kind": b.kind,
                 "tiers": [{"tier": t, "threshold": n} for t, n in b.tiers]} for b in self.rules.badges.values()]
