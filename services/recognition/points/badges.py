"""Badges: each person's progress folded from their awards, the tiers it reaches, and the
awards of those tiers (``badge.awarded``, through the outbox of ``badge_awards``).

How an award moves progress and what level progress reaches are rules: they are in
:mod:`~services.recognition.points.domain` (``advance_progress``, ``badge_level``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Callable

import orjson

from services.recognition.points.domain import RuleSet, badge_level
from services.recognition.points.store import SOURCE, Store, badge_award_id
from shared.bus.outbox import with_outbox
from shared.clock import Clock
from shared.db import find_by_ids, insert_many_once
from shared.events import build_event

KNOWN_AWARDS = 100_000  # award ids a process remembers as stored (~100 bytes each), then forgets them all
BADGE_PEOPLE_AT_ONCE = 250  # people whose progress award_badges decodes and checks at a time


def award_badges(store: Store, rules: RuleSet, clock: Clock, progress: dict[str, tuple[dict[str, Any] | str | None, datetime]],
                 publish: bool, notify: Callable[..., None], notify_inserted: Callable[..., None] | None,
                 known: set[str] | None = None) -> None:
    """Award every tier the people's badge progress (person -> (progress, time)) has reached.

    A person's progress is their badges (a dict), or their state's progress as JSON text
    (``PersonState.progress_json``), decoded here a few people at a time: in a backlog a batch
    moves ~2,000 people's progress, 10-26 KB of JSON each at a company-year (the evidence), and
    all of it decoded at once was held until their awards were stored.

    ``known``: award ids this process has seen stored (it keeps the set; awards are never
    removed, a rebuild runs with the process stopped), so a batch reads only the tiers it has
    not seen: every tier a person has reached comes up again with each of their awards, and a
    backlog's batches read thousands of stored awards each (a third of a second per batch at a
    company-year, FerretDB decoding each whole award, evidence and all)."""
    known = set() if known is None else known
    if len(known) > KNOWN_AWARDS:
        known.clear()
    new = []
    people = list(progress.items())
    for start in range(0, len(people), BADGE_PEOPLE_AT_ONCE):
        reached = [(person_id, bid, rules.badges[bid], state, tier, at)
                   for person_id, (held, at) in people[start:start + BADGE_PEOPLE_AT_ONCE]
                   for bid, state in _badges(held).items() if bid in rules.badges
                   for tier in rules.badges[bid].reached(badge_level(rules.badges[bid], state))]
        ids = [badge_award_id(person_id, bid, tier) for person_id, bid, _, _, tier, _ in reached]
        # A read: cheaper than a refused insert.
        known.update(find_by_ids(store.badge_awards, [i for i in ids if i not in known], {"_id": 1}))
        for award_id, (person_id, bid, badge, state, tier, at) in zip(ids, reached):
            if award_id not in known:
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
    known.update(d["_id"] for d in new)  # stored now, by this call or by another writer first
    if stored and publish:
        if notify_inserted is not None:
            notify_inserted(store.badge_awards, stored)
        else:
            notify(store.badge_awards, *[d["_id"] for d in stored])


def _badges(progress: dict[str, Any] | str | None) -> dict[str, Any]:
    """A person's badges: given as they are, or from their progress's JSON text."""
    if progress is None or isinstance(progress, dict):
        return progress or {}
    return orjson.loads(progress).get("badges") or {}
