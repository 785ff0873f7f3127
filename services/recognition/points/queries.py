"""Reads: leaderboards with competition ranking and movement, a person's summary, the ledger.

A period's board is one document (``boards``, ``_id`` ``board:<key>``) holding everyone's points
in that period with their department and role, kept by the applier with ``$inc``. FerretDB
1.24 uses an index only for ``_id`` equality (any other filter scans the collection: 0.6 s at
12k totals documents, measured), so a leaderboard, "my rank" and movement are two reads by
``_id`` (this period and the previous one) and a sort in memory, whatever the company size.
Ranks are competition ranks: 1 + the number of people with strictly more points (1, 2, 2, 4).
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

    def board(self, key: str | None, scope_filter: dict) -> list[tuple[str, int, dict]]:
        """Everyone with points in a period (and scope), best first: (person, points, entry)."""
        if key is None:
            return []
        doc = self.store.boards.find_one({"_id": f"board:{key}"}) or {}
        department, role = scope_filter.get("department"), scope_filter.get("role")
        rows = [(pid, int(e.get("p") or 0), e) for pid, e in (doc.get("entries") or {}).items()
                if (e.get("p") or 0) > 0 and (department is None or e.get("d") == department)
                and (role is None or e.get("r") == role)]
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

    def rank_of(self, key: str, scope_filter: dict, person_id: str) -> int | None:
        return self.ranks(self.board(key, scope_filter)).get(person_id)

    def leaderboard(self, period: str, scope: str = "company", department: str | None = None, role: str | None = None,
                    first: Any = 10, after: str | None = None, me: str | None = None, at: datetime | None = None) -> dict[str, Any]:
        period = self._period(period)
        scope_filter = self._scope_filter(scope, department, role)
        now = at or self.clock.now()
        key = period_key(self.calendar, period, now)
        previous = previous_period_key(self.calendar, period, now)
        size = page_size(first)
        rows = self.board(key, scope_filter)
        ranks = self.ranks(rows)
        previous_ranks = self.ranks(self.board(previous, scope_filter))
        start = 0
        if after:
            points, person = decode_cursor(after, 2)
            start = next((i for i, (pid, pts, _) in enumerate(rows) if (pts, pid) != (points, person)
                          and (pts < points or (pts == points and pid > person))), len(rows))
        page = rows[start:start + size]
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
        result = {
            "period": period, "key": key, "previous_key": previous, "scope": scope,
            "department": department, "role": role, "entries": entries,
            "page_info": {"has_next_page": start + size < len(rows), "end_cursor": entries[-1]["cursor"] if entries else None},
            "total_count": len(rows),
            "me": None,
        }
        if me:
            mine = next((pts for pid, pts, _ in rows if pid == me), 0)
            result["me"] = {"person_id": me, "points": mine, "rank": ranks.get(me)}
        return result

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
                "key": key, "points": points, "rank": self.rank_of(key, {}, person_id) if points else None,
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
