"""Badges: each person's progress folded from their awards, the tiers it reaches, and the
awards of those tiers (``badge.awarded``, through the outbox of ``badge_awards``).

How an award moves progress and what level progress reaches are rules: they are in
:mod:`~services.recognition.points.domain` (``advance_badges``, ``badge_level``)."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from services.recognition.points.domain import RuleSet, advance_badges, badge_level
from services.recognition.points.store import SOURCE, Store, badge_award_id
from shared.bus.outbox import with_outbox
from shared.calendar import BusinessCalendar
from shared.clock import Clock
from shared.db import find_by_ids, insert_many_once
from shared.events import build_event

if TYPE_CHECKING:
    from services.recognition.points.applier import _Item as Item


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
        advance_badges(rules, calendar, badges, item.award, item.at)
        applied[item.partition] = item.offset
    if badges == unchanged:
        # Nothing moved (a distinct badge's members and evidence are full, say): no write.
        # Applying these awards again, after a crash, finds the same state and moves
        # nothing either, so the offsets need not move.
        return badges
    writes[person_id] = {"badges": badges, "applied": applied}
    return badges


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
