"""Badges: each person's progress folded from their awards, the tiers it reaches, and the
awards of those tiers (``badge.awarded``, through the outbox of ``badge_awards``)."""

from __future__ import annotations

import copy
import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from services.recognition.points.rules import Badge, RuleSet
from services.recognition.points.store import SOURCE, Store, badge_award_id
from shared.bus.outbox import with_outbox
from shared.calendar import BusinessCalendar, period_key
from shared.clock import Clock
from shared.db import find_by_ids, insert_many_once
from shared.events import build_event

if TYPE_CHECKING:
    from services.recognition.points.applier import _Item as Item

WEEKS_KEPT = 12


def advance_progress(rules: RuleSet, calendar: BusinessCalendar, person_id: str, doc: dict, items: list[Item],
                     writes: dict) -> dict[str, Any]:
    """Fold a person's awards into their badge progress (``doc``, as stored: ``badges`` and the
    ``applied`` offsets); put the new state in ``writes`` when it moved."""
    applied = dict(doc.get("applied") or {})
    badges = doc.get("badges") or {}
    todo = [i for i in items if applied.get(i.partition, -1) < i.offset]
    if not todo:
        return badges  # applied before the crash that replays them
    unchanged = copy.deepcopy(badges)
    for item in todo:
        _advance(rules, calendar, badges, item)
        applied[item.partition] = item.offset
    if badges == unchanged:
        # Nothing moved (a distinct badge's members and evidence are full, say): no write.
        # Applying these awards again, after a crash, finds the same state and moves
        # nothing either, so the offsets need not move.
        return badges
    writes[person_id] = {"badges": badges, "applied": applied}
    return badges


def _advance(rules: RuleSet, calendar: BusinessCalendar, badges: dict[str, Any], item: Item) -> None:
    award, at = item.award, item.at
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


def award_badges(store: Store, rules: RuleSet, clock: Clock, progress: dict[str, tuple[dict[str, Any], datetime]],
                 publish: bool, notify: Callable[..., None], notify_inserted: Callable[..., None] | None) -> None:
    """Award every tier the people's badge progress (person -> (badges, time)) has reached."""
    reached = [(person_id, bid, rules.badges[bid], state, tier, at)
               for person_id, (badges, at) in progress.items()
               for bid, state in badges.items() if bid in rules.badges
               for tier in rules.badges[bid].reached(badge_level(rules.badges[bid], state))]
    ids = [badge_award_id(person_id, bid, tier) for person_id, bid, _, _, tier, _ in reached]
    awarded = find_by_ids(store.badge_awards, ids, {"_id": 1})  # a read: cheaper than a refused insert
    new = []
    for award_id, (person_id, bid, badge, state, tier, at) in zip(ids, reached):
        if award_id not in awarded:
            evidence = list(state.get("evidence") or [])
            event = build_event("badge.awarded", person_id, {
                "person_id": person_id, "badge": bid, "name": badge.name, "tier": tier,
                "evidence_event_ids": evidence, "at": at,
            }, source=SOURCE, clock=clock, id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:badge:{award_id}")))
            doc = {"_id": award_id, "person_id": person_id, "badge": bid, "tier": tier, "evidence": evidence, "at": at}
            new.append(with_outbox(doc, [event] if publish else []))
    # In bulk; the relay is handed the documents it publishes (insert-only: nothing to read back).
    if publish:
        store.badge_journal.mark(*(d["_id"] for d in new))
    stored = insert_many_once(store.badge_awards, new)
    if stored and publish:
        if notify_inserted is not None:
            notify_inserted(store.badge_awards, stored)
        else:
            notify(store.badge_awards, *[d["_id"] for d in stored])


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
