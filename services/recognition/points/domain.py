"""The points service's rules as plain code: no database, broker or web here.

What the rules file says (which rules match an event, whom they award, the badges and their
tiers) is data in ``rules.yaml``, read and checked by :mod:`~services.recognition.points.rules`
into the model below. What is decided from it without any state is here too: when an event
happened, when a rush request came at short notice, the ids of the guards the scorer counts
against, how an award moves a person's badge progress and what level that progress reaches,
and who a leaderboard counts and in what order. The stages that hold state call in here: the
scorer (``scorer.py``: guards, request facts), the applier (``applier.py`` and ``badges.py``:
badge progress, badge awards), the ranking read model (``ranking.py``) and the reads
(``queries.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, timedelta
from typing import Any

import orjson

from shared.calendar import BusinessCalendar, period_key
from shared.events.envelope import Envelope, parse_time
from shared.events.schemas import PointsAwarded
from shared.vocabulary import Priority

OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in")
BADGE_KINDS = ("count", "distinct", "streak", "weekly_streak")
TIER_ORDER = ("bronze", "silver", "gold")
GUARDS = ("linked_request_delivered",)

# A rush request submitted with less notice than this (business hours) counts in the
# requester's rush share.
RUSH_SHORT_NOTICE_HOURS = 24
RUSH_SHARE_DAYS = 30  # a person's rush share looks back this many days
WEEKS_KEPT = 12  # weeks a weekly-streak badge remembers


# -- the rules file's model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any

    def holds(self, data: dict[str, Any]) -> bool:
        if self.field not in data:
            return False
        actual = data[self.field]
        if self.op == "eq":
            return _same(actual, self.value)
        if self.op == "ne":
            return not _same(actual, self.value)
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        if actual is None or isinstance(actual, bool) != isinstance(self.value, bool):
            return False
        try:
            return {"lt": actual < self.value, "lte": actual <= self.value,
                    "gt": actual > self.value, "gte": actual >= self.value}[self.op]
        except TypeError:
            return False


def _same(a: Any, b: Any) -> bool:
    """Equality where true is not 1 and false is not 0 (Python says they are)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@dataclass(frozen=True)
class Rule:
    id: str
    on: str
    to: str
    points: int
    reason: str
    when: tuple[Condition, ...] = ()
    badges: tuple[str, ...] = ()
    resets: tuple[str, ...] = ()
    counterpart: str | None = None
    counterpart_role: str | None = None
    giver: str | None = None
    limit_per_month: int | None = None
    once_per_key: str | None = None
    once_per_business_days: float | None = None
    requires: str | None = None
    line: int = 0

    def matches(self, event_type: str, data: dict[str, Any]) -> bool:
        return event_type == self.on and all(c.holds(data) for c in self.when)

    def awardees(self, data: dict[str, Any]) -> list[str]:
        return _ids(data.get(self.to))

    def counterparts(self, data: dict[str, Any]) -> list[str]:
        return _ids(data.get(self.counterpart)) if self.counterpart else []


@dataclass(frozen=True)
class Badge:
    id: str
    name: str
    description: str
    kind: str
    tiers: tuple[tuple[str | None, int], ...]  # ((tier, threshold), ...) ascending; tier None: single

    def reached(self, level: int) -> list[str | None]:
        return [tier for tier, threshold in self.tiers if level >= threshold]

    def next_tier(self, level: int) -> tuple[str | None, int] | None:
        for tier, threshold in self.tiers:
            if level < threshold:
                return tier, threshold
        return None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    badges: dict[str, Badge]
    giver_to_receiver_monthly_points: int | None
    source: str = ""
    event_types: frozenset[str] = field(default_factory=frozenset)

    def for_event(self, event_type: str, data: dict[str, Any]) -> list[Rule]:
        return [r for r in self._by_type.get(event_type, ()) if r.matches(event_type, data)]

    @cached_property
    def _by_type(self) -> dict[str, list[Rule]]:
        """The rules of each event type, in the file's order (scoring asks once per event)."""
        by_type: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_type.setdefault(rule.on, []).append(rule)
        return by_type


def _ids(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list):
        return [v for v in dict.fromkeys(value) if isinstance(v, str) and v]
    return []


# -- scoring ------------------------------------------------------------------------------------

def event_time(envelope: Envelope) -> datetime:
    """When it happened: the data's ``at`` if it has one, else the envelope time."""
    at = envelope.data.get("at")
    return parse_time(at) if isinstance(at, str) else envelope.time


def rush_short_notice(submitted: dict[str, Any]) -> bool:
    """A submitted request (``request.submitted`` data) is a rush at short notice."""
    return (submitted.get("priority") == Priority.RUSH.value
            and float(submitted.get("notice_business_hours") or 0) < RUSH_SHORT_NOTICE_HOURS)


def once_guard_id(rule: Rule, key: str, person: str) -> str:
    """The guard of "once per key per N business days" for one person."""
    return f"once:{rule.id}:{key}:{person}"


def limit_guard_id(rule: Rule, person: str, month: str) -> str:
    """The guard of a rule's monthly limit for one person."""
    return f"limit:{rule.id}:{person}:{month}"


def giver_guard_id(giver: str, person: str, month: str) -> str:
    """The guard of the points one colleague may give another in a month."""
    return f"giver:{giver}:{person}:{month}"


def guard_ids(rules: RuleSet, rule: Rule, person: str, data: dict[str, Any], month: str) -> list[str]:
    """The guards an award of ``rule`` to ``person`` for an event (its ``data``) counts against."""
    ids = []
    if rule.once_per_key:
        ids.append(once_guard_id(rule, str(data.get(rule.once_per_key)), person))
    if rule.limit_per_month:
        ids.append(limit_guard_id(rule, person, month))
    giver = data.get(rule.giver) if rule.giver else None
    if rules.giver_to_receiver_monthly_points is not None and isinstance(giver, str):
        ids.append(giver_guard_id(giver, person, month))
    return ids


# -- badges -------------------------------------------------------------------------------------

def advance_badges(rules: RuleSet, calendar: BusinessCalendar, badges: dict[str, Any], award: PointsAwarded,
                   at: datetime) -> None:
    """Fold one award (applied at ``at``) into a person's badge progress, in place."""
    week = period_key(calendar, "week", at)
    stamp = at.isoformat()
    for bid in award.resets:
        # A streak counts the hits after the latest reset *in time*, so awards that arrive
        # out of order (from different partitions) give the same streak.
        state = badges.setdefault(bid, {})
        state["reset_at"] = max(filter(None, [state.get("reset_at"), stamp]))
        kept = [(h, e) for h, e in zip(state.get("hits", []), state.get("evidence", [])) if h > state["reset_at"]]
        state["hits"], state["evidence"] = [h for h, _ in kept], [e for _, e in kept]
    for bid in award.badges:
        badge = rules.badges[bid]
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


def advance_progress(rules: RuleSet, calendar: BusinessCalendar, person_id: str, doc: dict, items: list[Any],
                     writes: dict) -> dict[str, Any]:
    """Fold a person's awards (items with ``award``, ``at``, ``partition``, ``offset``) into their
    badge progress (``doc``, as stored: ``badges`` and the ``applied`` offsets); put the new
    state in ``writes`` when it moved."""
    applied = dict(doc.get("applied") or {})
    badges = doc.get("badges") or {}
    todo = [i for i in items if applied.get(i.partition, -1) < i.offset]
    if not todo:
        return badges  # applied before the crash that replays them
    unchanged = orjson.loads(orjson.dumps(badges, default=str))  # a copy (badge progress is JSON): a tenth of deepcopy's time
    for item in todo:
        advance_badges(rules, calendar, badges, item.award, item.at)
        applied[item.partition] = item.offset
    if badges == unchanged:
        # Nothing moved (a distinct badge's members and evidence are full, say): no write.
        # Applying these awards again, after a crash, finds the same state and moves
        # nothing either, so the offsets need not move.
        return badges
    writes[person_id] = {"badges": badges, "applied": applied}
    return badges


def badge_level(badge: Badge, state: dict[str, Any]) -> int:
    """How far a person's progress (``state``) is on a badge, in the unit of its thresholds."""
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


# -- leaderboards -------------------------------------------------------------------------------

def scope_id(scope: str, value: str | None) -> str:
    return "company" if scope == "company" else f"{scope}:{value}"


def scopes_of(department: str | None, role: str | None) -> list[str]:
    """The scopes a person with this department and role is counted in."""
    out = ["company"]
    if department:
        out.append(f"department:{department}")
    if role:
        out.append(f"role:{role}")
    return out


def standing(entry: tuple[str, int, Any, Any]) -> tuple[int, str]:
    """A leaderboard's order (a sort key on person, points, ...): most points first, ties by
    person id."""
    return -entry[1], entry[0]
