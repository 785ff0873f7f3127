"""Badges: each person's progress folded from their awards, the tiers it reaches, and the
awards of those tiers (``badge.awarded``, through the outbox of ``badge_awards``).

How an award moves progress and what level progress reaches are rules: they are in
:mod:`~services.recognition.points.domain` (``advance_progress``, ``badge_level``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Callable

from services.recognition.points.domain import RuleSet, badge_level
from services.recognition.points.store import SOURCE, Store, badge_award_id
from shared.bus.outbox import with_outbox
from shared.clock import Clock
from shared.db import find_by_ids, insert_many_once
from shared.events import build_event

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
