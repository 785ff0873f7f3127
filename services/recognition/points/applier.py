"""Stage 2 of the points pipeline: awards are applied to totals, boards, badges, the ledger.

Stage 2, :class:`Applier` (consumer group ``points-apply`` on ``points``, keyed by person):
one person's awards arrive in one partition, in order, so stage 2 is sequential per person.
A batch is worked out in memory first: each person's totals per period and badge progress
(the table, state.py), skipping awards at or before the offset the person's state has applied
(a replay); each person's new ledger entries are inserted as one page (ledger_pages.py); the
changed people are written to the changelog, one record each. Then the boards (which remember
the offsets they applied), the badges earned and, last, the ledger entries (their ids are the awards' deterministic ids, so a duplicate publish of the
same award at another offset is recognised and skipped).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from services.recognition.directory import Directory
from services.recognition.points.badges import award_badges
from services.recognition.points.domain import advance_progress
from services.recognition.points.ranking import Ranking, ScoreChange
from services.recognition.points.rules import RuleSet
from services.recognition.points.state import PersonState, PointsTable
from services.recognition.points.ledger_pages import empty_index, sort_key
from services.recognition.points.store import Store, read_board, safe_key, shown_in_ledger, write_board
from shared.calendar import PERIODS, BusinessCalendar, period_bounds, period_key, previous_period_key
from shared.clock import Clock, utc
from shared.db import find_by_ids, insert_many_once
from shared.events.schemas import PointsAwarded

log = logging.getLogger(__name__)
BOARD_CACHE_ENTRIES = 20_000  # people's entries on the boards an applier keeps in memory, in all


@dataclass
class _Item:
    award: PointsAwarded
    partition: str
    offset: int
    at: datetime


class _Sum:
    """What one batch adds to one board: its items, and per person the fields to set."""

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields
        self.items: list[_Item] = []
        self.people: dict[str, dict[str, Any]] = {}

    def add(self, item: _Item, person_id: str, fields: dict[str, Any] | None = None) -> None:
        self.items.append(item)
        if fields is not None:
            self.people[person_id] = fields


def _period_rank(key: str) -> int:
    """Weeks, months, quarters, then all time (the order boards are written in)."""
    return 3 if key == "all" else 2 if "-Q" in key else 0 if "-W" in key else 1


def _period_of(key: str) -> str:
    """The kind of period a key names ("2026-W48": week, "2026-11": month, "2026-Q4": quarter)."""
    return PERIODS[_period_rank(key)]


@dataclass
class Applier:
    store: Store
    rules: RuleSet
    calendar: BusinessCalendar
    directory: Directory
    clock: Clock
    publish: bool = True
    notify: Callable[..., None] = lambda collection=None, *ids: None
    notify_inserted: Callable[..., None] | None = None  # the relay's notify_inserted (insert-only badge awards)

    @property
    def table(self) -> PointsTable:
        """People's totals, badge progress and ledger index (state.py): the store's."""
        return self.store.table

    def __post_init__(self) -> None:
        self.ranking = Ranking(self.store.rankings)
        # The boards this applier wrote last, as it wrote them (board id -> document): the next
        # batch's update is conditional on the version, so a board someone else wrote since is
        # noticed and read again. Not kept beyond BOARD_CACHE_ENTRIES people in all.
        self._boards: OrderedDict[str, dict] = OrderedDict()
        self._awarded: set[str] = set()  # badge award ids seen stored (badges.award_badges)

    def apply_batch(self, items: list[tuple[PointsAwarded, str, int]],
                    on_boards: Callable[[list[PointsAwarded], list[str]], None] | None = None) -> int:
        """Apply awards delivered at (partition, offset), in order; return how many were new.

        The batch's changes to people's totals (each period) and badge progress are worked
        out in memory; each person's new ledger entries go in one new page (an insert,
        ledger_pages.py); then the people changed are written as one changelog record each
        (state.py), which name their pages; then each period's board (one update) and its
        ranking, the badges earned, and the ledger entries (one insert), last: an award is in
        the ledger only once everything it changes is in place, so readers and a restart can
        rely on it. An award already in the ledger is skipped (a redelivery, or a second
        publish of the same award); the people's states, their ledger pages and the boards
        remember the offsets they applied, so a replay adds nothing twice.

        ``on_boards(awards, [period key])`` is called as soon as a period's board and ranking
        have the batch's awards on it (the week first; the people's totals before any board;
        badges and the ledger after): what a live leaderboard of that period shows.
        """
        seen = set(find_by_ids(self.store.ledger, [award.entry_id for award, _, _ in items], {"_id": 1}))
        fresh = []
        for award, partition, offset in items:
            if award.entry_id in seen:
                continue
            seen.add(award.entry_id)
            fresh.append(_Item(award, str(partition), offset, utc(award.at)))
        if not fresh:
            return 0
        entries = [{
            "_id": i.award.entry_id, "person_id": i.award.person_id, "points": i.award.points, "rule": i.award.rule,
            "reason": i.award.reason, "capped": i.award.capped, "source_event_id": i.award.source_event_id,
            "source_event_type": i.award.source_event_type, "at": i.at, "src": f"{i.partition}:{i.offset}",
        } for i in fresh]
        self.table.ensure_current()  # another owner's last records, after the group moved a partition
        people = self.directory.many({item.award.person_id for item in fresh})
        now = self.clock.now()
        states: dict[str, PersonState] = {}
        self._add_to_totals([i for i in fresh if i.award.points > 0], people, states, now)
        by_person: dict[str, list[_Item]] = {}
        for item in fresh:
            if item.award.badges or item.award.resets:
                by_person.setdefault(item.award.person_id, []).append(item)
        progress = self._advance_badges(by_person, states)
        replaced = self._add_to_ledger_lists(fresh, states)
        self.table.write(states.values())  # the people's new states, before anything shows them
        self.store.ledger_pages.drop_pages(replaced)  # merged into pages the states now name
        self._update_boards([i for i in fresh if i.award.points > 0], people, now, on_boards)
        award_badges(self.store, self.rules, self.clock,
                     {pid: (state, by_person[pid][-1].at) for pid, state in progress.items()},
                     publish=self.publish, notify=self.notify, notify_inserted=self.notify_inserted, known=self._awarded)
        insert_many_once(self.store.ledger, entries)
        return len(fresh)

    def _add_to_ledger_lists(self, fresh: list["_Item"], states: dict[str, PersonState]) -> list[str]:
        """Each person's ledger list (what their ledger shows: entries with points, and capped
        ones): one new page each, inserted (ledger_pages.py), its place in ``states``. Returns
        the pages merged away, to delete once the states naming their merge are written."""
        batch: dict[str, tuple[dict[str, Any], list[tuple[str, str, int]]]] = {}
        for item in fresh:
            award = item.award
            if shown_in_ledger(award.points, award.capped):
                pid = award.person_id
                if pid not in batch:
                    state = states.get(pid) or self.table.get(pid)
                    batch[pid] = ((state.ledger if state is not None else None) or empty_index(), [])
                batch[pid][1].append((sort_key(item.at, award.entry_id), item.partition, item.offset))
        indexes = self.store.ledger_pages.add(batch)
        replaced = self.store.ledger_pages.merge(indexes)
        for pid, index in indexes.items():
            self._state(states, pid).ledger = index
        return replaced

    def _state(self, states: dict[str, PersonState], person_id: str) -> PersonState:
        """The person's state to change in this batch (a copy of the table's until written)."""
        if person_id not in states:
            stored = self.table.get(person_id)
            states[person_id] = stored.copy() if stored is not None else PersonState(person_id)
        return states[person_id]

    def _advance_badges(self, by_person: dict[str, list["_Item"]], states: dict[str, PersonState]) -> dict[str, str | None]:
        """Fold each person's awards into their badge progress (the changed ones into ``states``).
        Returns each person's progress as its JSON text, for award_badges to decode a few people
        at a time: one person's is decoded here at a time too (a backlog's batch moves ~2,000
        people's, 10-26 KB of JSON each at a company-year)."""
        progress = {}
        for person_id, person_items in by_person.items():
            stored = self.table.get(person_id)
            before = stored.progress if stored is not None else {}  # a fresh copy, decoded from its JSON
            changes: dict[str, Any] = {}
            advance_progress(self.rules, self.calendar, person_id, before, person_items, changes)
            if person_id in changes:
                state = self._state(states, person_id)
                state.progress = changes[person_id]
                progress[person_id] = state.progress_json
            else:
                progress[person_id] = stored.progress_json if stored is not None else None
        return progress

    def _add_to_totals(self, items: list["_Item"], people: dict, states: dict[str, PersonState], now: datetime) -> None:
        """Add the awards to their people's totals for each period, in ``states``.

        Totals are kept for this and the previous period of each kind (a leaderboard and its
        movement), for later ones (a clock behind the events) and for all time: an award of an
        older period (history: an import, a rebuild) adds to "all" only, and keys older than
        the boards kept (``_oldest_boards``) are dropped from a state it changes, so a person's
        state does not grow with the years."""
        readable = {period: {period_key(self.calendar, period, now), previous_period_key(self.calendar, period, now)}
                    for period in PERIODS}
        oldest = self._oldest_boards(now)
        for item in items:
            pid, person = item.award.person_id, people.get(item.award.person_id)
            # Against the offsets applied before this batch: a record carries several of a
            # person's awards, all at its offset (an award twice in a batch was dropped by id).
            stored = self.table.get(pid)
            if stored is not None and stored.applied.get(item.partition, -1) >= item.offset:
                continue  # applied before the crash that replays it
            state = self._state(states, pid)
            scope = [person.department if person else None, person.role if person else None]
            for period in PERIODS:
                key = period_key(self.calendar, period, item.at)
                if key in readable[period] or item.at > now:
                    before = state.totals.get(key) or [0, None, None]
                    state.totals[key] = [int(before[0]) + item.award.points, *scope]
            state.applied[item.partition] = item.offset
            for key in [k for k in state.totals if k != "all" and k < oldest[_period_of(k)]]:
                del state.totals[key]

    def _update_boards(self, items: list["_Item"], people: dict, now: datetime,
                       on_boards: Callable[[list[PointsAwarded], list[str]], None] | None = None) -> None:
        """The batch's awards on the boards of their periods, and the ranking beside each.

        Boards are kept for this period, the previous one and the one before that (movement
        and ``person_changed``): an award of an older period (history: an import, a rebuild)
        goes on the all-time board only. A year of history wrote every past week's, month's
        and quarter's board and ranking, batch after batch, that nothing reads."""
        if not items:
            return
        boards: dict[str, _Sum] = {}
        oldest_board = self._oldest_boards(now)
        for item in items:
            pid, person = item.award.person_id, people.get(item.award.person_id)
            fields = {"person_id": pid, "department": person.department if person else None, "role": person.role if person else None}
            # On the boards only: whether the person keeps themselves off the leaderboards (``h``).
            on_board = {**fields, "hidden": bool(person.hidden) if person else False}
            for period in PERIODS:
                key = period_key(self.calendar, period, item.at)
                if safe_key(pid) and key >= oldest_board[period]:  # an id that cannot be a field name is on no board (queries)
                    boards.setdefault(f"board:{key}", _Sum({})).add(item, pid, on_board)
        # The board of each period (everyone's points in one document), then the ranking read
        # model beside it, which leaderboards read (ranking.py): weeks first, the live screens'
        # usual period, each announced as soon as it is written.
        for doc_id, board in sorted(boards.items(), key=lambda kv: _period_rank(kv[0].removeprefix("board:"))):
            self._update_board(doc_id, board)
            if on_boards is not None:
                on_boards(list({i.award.entry_id: i.award for i in board.items}.values()), [doc_id.removeprefix("board:")])

    def _update_board(self, doc_id: str, board: "_Sum") -> None:
        """One board write, versioned (``v``), and the same change in the ranking read model.

        The board is read once — or taken as this applier wrote it last — and written whole
        (store.write_board: one JSON string), only if it is still the version read: so the
        state before the write is the one read and the ranking needs no second read. If another
        process wrote the board in between (another partition's owner, a person's move), it is
        read again and the batch's part worked out anew (its offsets may be applied already)."""
        before = self._boards.pop(doc_id, None)
        if before is None:
            before = read_board(self.store.boards, doc_id)
        while True:
            applied = before.get("applied") or {}
            todo = [i for i in board.items if applied.get(i.partition, -1) < i.offset]
            if not todo:
                if before:
                    self._remember_board(doc_id, before)
                return  # applied before the crash that replays it
            gained: dict[str, int] = {}
            for item in todo:
                gained[item.award.person_id] = gained.get(item.award.person_id, 0) + item.award.points
            old_entries = before.get("entries") or {}
            entries = dict(old_entries)
            changes = []
            for pid, points in gained.items():
                old, fields = old_entries.get(pid) or {}, board.people[pid]
                hidden = bool(fields.get("hidden"))  # as the directory has it now
                before_points = int(old.get("p") or 0)
                entries[pid] = {"p": before_points + points, "d": fields["department"], "r": fields["role"],
                                **({"h": True} if hidden else {})}
                changes.append(ScoreChange(pid, before_points, before_points + points, fields["department"], fields["role"],
                                           old_department=old.get("d"), old_role=old.get("r"), hidden=hidden,
                                           old_hidden=bool(old.get("h"))))
            offsets = {i.partition: i.offset for i in sorted(todo, key=lambda i: i.offset)}  # the last per partition
            if write_board(self.store.boards, doc_id, before, entries, {**applied, **offsets}):
                break
            before = read_board(self.store.boards, doc_id)  # someone else wrote it since
        after = {"_id": doc_id, "v": int(before.get("v") or 0) + 1, "applied": {**applied, **offsets}, "entries": entries}
        self._remember_board(doc_id, after)
        self.ranking.apply(doc_id.removeprefix("board:"), after["v"], changes, lambda: after)

    def _remember_board(self, doc_id: str, board: dict) -> None:
        self._boards[doc_id] = board
        while self._boards and sum(len(b.get("entries") or {}) for b in self._boards.values()) > BOARD_CACHE_ENTRIES:
            self._boards.popitem(last=False)

    def _oldest_boards(self, now: datetime) -> dict[str, str]:
        """Per period, the oldest key whose board is still read or fixed: two periods before
        now's (keys of one period sort as their periods do, so a later one, even in the future,
        is kept too)."""
        return {period: self._keys_back(period, now, 2)[-1] for period in PERIODS}

    def _current_keys(self, now: datetime, back: int = 1) -> list[str]:
        """The period keys of now and ``back`` periods before it, for every period."""
        return [key for period in PERIODS for key in self._keys_back(period, now, back)]

    def _keys_back(self, period: str, now: datetime, back: int) -> list[str]:
        """The key of ``period`` containing now, then up to ``back`` keys before it (none for "all")."""
        keys, at = [period_key(self.calendar, period, now)], now
        for _ in range(back):
            previous = previous_period_key(self.calendar, period, at)
            if previous is None:
                break
            keys.append(previous)
            at = period_bounds(self.calendar, period, at)[0] - timedelta(microseconds=1)
        return keys

    def person_changed(self, person, now: datetime, visibility: bool = False) -> list[str]:
        """Keep a person's department, role and visibility (``h``: off everyone else's
        leaderboards) right on the boards of the current periods.

        ``visibility``: the person's setting changed, so the period before the previous one
        is fixed too (the movement a screen shows beside last period's final board). Returns the
        keys of the boards it changed."""
        if not safe_key(person.id):
            return []
        keys = self._current_keys(now)
        # People's totals keep the department and role they were counted in when they were
        # awarded; reads of this and the previous period take the person's current ones
        # (queries.PointsQueries._points), so nothing is written there.
        hidden = bool(getattr(person, "hidden", False))
        changed = []
        for key in (self._current_keys(now, back=2) if visibility else keys):
            doc_id = f"board:{key}"
            while True:
                before = read_board(self.store.boards, doc_id)
                old = (before.get("entries") or {}).get(person.id)
                if old is None or (old.get("d"), old.get("r"), bool(old.get("h"))) == (person.department, person.role, hidden):
                    break  # not on this board, or shown as they are
                # Hidden: ``h`` is true; visible: it is absent (boards of visible people carry nothing more).
                entries = {**before["entries"], person.id: {"p": old.get("p") or 0, "d": person.department, "r": person.role,
                                                           **({"h": True} if hidden else {})}}
                if not write_board(self.store.boards, doc_id, before, entries, before.get("applied") or {}):
                    continue  # an applier wrote it since: read it again
                # Moved, hidden or shown again: the ranking follows.
                changed.append(key)
                after = {**before, "v": int(before.get("v") or 0) + 1, "entries": entries}
                points = int(old.get("p") or 0)
                self.ranking.apply(key, after["v"], [ScoreChange(
                    person.id, points, points, person.department, person.role, old_department=old.get("d"),
                    old_role=old.get("r"), hidden=hidden, old_hidden=bool(old.get("h")))], lambda after=after: after)
                break
        return changed
