"""The points applier on a burst of historical awards, on the real FerretDB: documents that do
not exist yet are inserted, a board is written whole as one string (conditional on its
version), a board another process wrote meanwhile is read again and written on top, a board of
an older store (a map of entries) is read and rewritten, and a replay changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.recognition.directory import Directory, DirectoryPersonDoc
from services.recognition.points.config import PointsSettings
from services.recognition.points.applier import Applier
from services.recognition.points.store import Store, read_board, write_board
from services.recognition.points.rules import load_rules
from shared.calendar import BusinessCalendar, period_key
from shared.clock import ManualClock
from shared.db import connect, disconnect
from shared.events.schemas import PointsAwarded

pytestmark = pytest.mark.integration
MON = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PEOPLE = [f"p{i:03d}" for i in range(150)]


@pytest.fixture
def applier(settings):
    points = PointsSettings(**settings.model_dump())
    db = connect(points, "points")
    DirectoryPersonDoc._get_collection().insert_many([
        {"_id": pid, "email": f"{pid}@example.com", "name": pid, "role": "support" if i % 2 else "rep",
         "department": "pricing" if i % 2 else "sales", "active": True} for i, pid in enumerate(PEOPLE)])
    store = Store(db)
    store.ensure_indexes()
    handed = []
    applier = Applier(store, load_rules(points.rules_file), BusinessCalendar.from_settings(points), Directory(),
                      ManualClock(MON + timedelta(days=2)), notify_inserted=lambda collection, docs: handed.extend(docs))
    applier.handed = handed
    yield applier
    disconnect()


def awards(round_: int, at: datetime, partition: str = "0", first_offset: int = 0):
    out = []
    for n, pid in enumerate(PEOPLE):
        giver = PEOPLE[(n + 1) % len(PEOPLE)]
        out.append((PointsAwarded(
            entry_id=f"e{round_}-{pid}", person_id=pid, points=10, rule="kudos_received", reason="Kudos received",
            source_event_id=f"k{round_}-{pid}", source_event_type="kudos.given", badges=["team_favorite"],
            counterparts=[giver] if n % 2 else [], at=at + timedelta(minutes=n)), partition, first_offset + n))
    return out


def board(applier, key):
    return read_board(applier.store.boards, f"board:{key}")


def written_elsewhere(boards, key):
    """Partition 1's owner (another process) adds 5 points to p000 on the board, as it writes."""
    before = read_board(boards, f"board:{key}")
    entries = {**before["entries"], "p000": {**before["entries"]["p000"], "p": before["entries"]["p000"]["p"] + 5}}
    assert write_board(boards, f"board:{key}", before, entries, {**before["applied"], "1": 7})


def test_a_burst_inserts_what_is_new_writes_boards_whole_and_a_replay_changes_nothing(applier):
    week = period_key(applier.calendar, "week", MON)
    assert applier.apply_batch(awards(1, MON)) == len(PEOPLE)
    totals = applier.store.key_totals(week)
    assert totals == {pid: 10 for pid in PEOPLE}
    first = board(applier, week)
    assert {pid: e["p"] for pid, e in first["entries"].items()} == {pid: 10 for pid in PEOPLE} and first["v"] == 1
    # The second round changes every entry of existing boards: the whole map, written once.
    assert applier.apply_batch(awards(2, MON + timedelta(hours=5), first_offset=len(PEOPLE))) == len(PEOPLE)
    second = board(applier, week)
    assert {pid: e["p"] for pid, e in second["entries"].items()} == {pid: 20 for pid in PEOPLE} and second["v"] == 2
    assert second["entries"]["p001"] == {"p": 20, "d": "pricing", "r": "support"}
    assert applier.ranking.count(week, "company", None) == len(PEOPLE)
    assert applier.ranking.top(week, "department", "pricing", 3)[0][1] == 20
    assert applier.store.ledger.count_documents({}) == 2 * len(PEOPLE)
    # Everything again (a redelivery after a crash): nothing new, nothing written twice.
    again = awards(1, MON) + awards(2, MON + timedelta(hours=5), first_offset=len(PEOPLE))
    assert applier.apply_batch(again) == 0
    assert board(applier, week)["v"] == 2
    assert {d["_id"] for d in applier.handed} == {d["_id"] for d in applier.store.badge_awards.find({}, {"_id": 1})}


def test_a_board_another_process_wrote_meanwhile_is_read_again_and_written_on_top(applier, monkeypatch):
    week = period_key(applier.calendar, "week", MON)
    applier.apply_batch(awards(1, MON))
    boards = applier.store.boards
    real = boards.find_one

    def racing(filter_, *args, **kwargs):
        found = real(filter_, *args, **kwargs)
        if filter_.get("_id") == f"board:{week}" and not racing.done:
            racing.done = True  # between this read and the write, partition 1's owner adds to the board
            written_elsewhere(boards, week)
        return found

    racing.done = False
    applier._boards.clear()  # read the board (not as this applier wrote it): the race is after that read
    monkeypatch.setattr(boards, "find_one", racing)
    applier.apply_batch(awards(2, MON + timedelta(hours=5), first_offset=len(PEOPLE)))
    monkeypatch.undo()
    after = board(applier, week)
    assert after["v"] == 3 and after["applied"] == {"0": 2 * len(PEOPLE) - 1, "1": 7}
    assert after["entries"]["p000"]["p"] == 25 and {e["p"] for pid, e in after["entries"].items() if pid != "p000"} == {20}


def test_a_board_an_older_store_kept_as_a_map_is_read_and_rewritten_as_a_string(applier):
    week = period_key(applier.calendar, "week", MON)
    # As a store from before kept it: the entries as a map of sub-documents, p001 hidden.
    applier.store.boards.insert_one({"_id": f"board:{week}", "v": 4, "applied": {"0": -1}, "entries": {
        "p000": {"p": 7, "d": "sales", "r": "rep"}, "p001": {"p": 3, "d": "pricing", "r": "support", "h": True}}})
    assert board(applier, week)["entries"]["p001"] == {"p": 3, "d": "pricing", "r": "support", "h": True}
    applier.apply_batch(awards(1, MON))
    stored = applier.store.boards.find_one({"_id": f"board:{week}"})
    assert "entries" not in stored and isinstance(stored["e"], str) and stored["v"] == 5
    after = board(applier, week)
    assert after["entries"]["p000"] == {"p": 17, "d": "sales", "r": "rep"}
    assert after["entries"]["p001"] == {"p": 13, "d": "pricing", "r": "support"}  # visible, as the directory says now
    assert {e["p"] for pid, e in after["entries"].items() if pid not in ("p000", "p001")} == {10}
    assert applier.ranking.top(week, "company", None, 1)[0][:2] == ("p000", 17)


def test_history_older_than_the_previous_period_goes_where_it_is_read(applier):
    # Now is Wednesday 4 March 2026: the week of 9 February is long past (three weeks before
    # the previous one), its month (February) is the previous month, its quarter the current one.
    old = datetime(2026, 2, 9, 10, tzinfo=timezone.utc)
    keys = {period: period_key(applier.calendar, period, old) for period in ("week", "month", "quarter", "all")}
    assert applier.apply_batch(awards(3, old)) == len(PEOPLE)
    # The totals and boards a summary or a leaderboard reads are there: previous month, this
    # quarter, all time.
    for period in ("month", "quarter", "all"):
        assert applier.store.key_totals(keys[period]) == {pid: 10 for pid in PEOPLE}, period
        assert {pid: e["p"] for pid, e in board(applier, keys[period])["entries"].items()} == {pid: 10 for pid in PEOPLE}
        assert applier.ranking.top(keys[period], "company", None, 1)[0][1] == 10
    # The old week is read by nothing (a leaderboard shows this week and the previous one):
    # neither its totals nor its board and ranking are written. The ledger has the awards.
    assert applier.store.key_totals(keys["week"]) == {}
    assert board(applier, keys["week"]) == {}
    assert not applier.ranking.top(keys["week"], "company", None, 1)
    assert applier.store.ledger.count_documents({}) == len(PEOPLE)
    # Two weeks before this one (fixed when someone hides: the movement beside last week's
    # board) is still written.
    two_back = datetime(2026, 2, 18, 10, tzinfo=timezone.utc)
    assert applier.apply_batch(awards(4, two_back, first_offset=len(PEOPLE))) == len(PEOPLE)
    assert {e["p"] for e in board(applier, period_key(applier.calendar, "week", two_back))["entries"].values()} == {10}


def test_a_board_remembered_but_written_since_by_another_process_is_read_again(applier):
    week = period_key(applier.calendar, "week", MON)
    applier.apply_batch(awards(1, MON))
    assert f"board:{week}" in applier._boards  # as written: the next batch does not read it
    # Partition 1's owner adds to the board; and a redelivery of partition 0's first batch
    # (applied already) comes with the next one.
    written_elsewhere(applier.store.boards, week)
    reads = []
    real = applier.store.boards.find_one
    applier.store.boards.find_one = lambda *a, **k: reads.append(a) or real(*a, **k)
    try:
        applier._boards[f"board:{week}"]["applied"]["0"] = -1  # as if remembered from before the first batch
        applier._update_board(f"board:{week}", next(iter(_board_sums(applier, awards(1, MON) + awards(
            2, MON + timedelta(hours=5), first_offset=len(PEOPLE))).values())))
    finally:
        del applier.store.boards.find_one
    after = board(applier, week)
    assert reads  # the version did not match: read again
    # Each first-batch award counted once, each second-batch award once, partition 1's +5 kept.
    assert after["v"] == 3 and after["applied"] == {"0": 2 * len(PEOPLE) - 1, "1": 7}
    assert after["entries"]["p000"]["p"] == 25 and {e["p"] for pid, e in after["entries"].items() if pid != "p000"} == {20}
    assert applier._boards[f"board:{week}"]["entries"] == after["entries"]


def _board_sums(applier, items):
    """The week board's share of a batch, as apply_batch hands it to _update_board."""
    from services.recognition.points.applier import _Item, _Sum
    from shared.clock import utc

    sums = {}
    for award, partition, offset in items:
        item = _Item(award, partition, offset, utc(award.at))
        pid = award.person_id
        key = period_key(applier.calendar, "week", item.at)
        fields = {"person_id": pid, "department": "pricing" if int(pid[1:]) % 2 else "sales",
                  "role": "support" if int(pid[1:]) % 2 else "rep"}
        sums.setdefault(f"board:{key}", _Sum({})).add(item, pid, fields)
    return sums


def test_a_badge_tier_is_awarded_once_and_read_again_only_by_a_process_that_has_not_seen_it(applier, monkeypatch):
    from services.recognition.points import badges

    asked: list[list[str]] = []
    real = badges.find_by_ids
    monkeypatch.setattr(badges, "find_by_ids", lambda coll, ids, *a: asked.append(list(ids)) or real(coll, ids, *a))
    state = {"team_favorite": {"count": 0, "members": [f"g{i}" for i in range(10)], "weeks": [], "evidence": ["ev1"]}}
    progress = {"p001": (state, MON)}
    store, known = applier.store, set()

    def award(known_ids):
        badges.award_badges(store, applier.rules, applier.clock, progress, publish=False, notify=lambda *a: None,
                            notify_inserted=None, known=known_ids)

    award(known)
    [stored] = list(store.badge_awards.find())
    assert (stored["person_id"], stored["badge"], asked) == ("p001", "team_favorite", [[stored["_id"]]])
    assert known == {stored["_id"]}
    # The same tier reached again (every later award of the person brings it up): nothing read, nothing new.
    award(known)
    assert asked[1:] == [[]] and store.badge_awards.count_documents({}) == 1
    # A process that has not seen it (a restart) reads it and awards nothing twice.
    award(set())
    assert asked[2:] == [[stored["_id"]]] and store.badge_awards.count_documents({}) == 1


def test_badge_tiers_are_awarded_from_progress_as_json_text_a_few_people_at_a_time(applier, monkeypatch):
    """The applier hands award_badges each person's progress as the JSON text of their state,
    decoded a few people at a time: every tier reached is awarded once, across those groups."""
    import orjson
    from services.recognition.points import badges

    monkeypatch.setattr(badges, "BADGE_PEOPLE_AT_ONCE", 2)
    full = {"team_favorite": {"count": 0, "members": [f"g{i}" for i in range(10)], "weeks": [], "evidence": ["ev1", "ev2"]}}
    short = {"team_favorite": {"count": 0, "members": ["g1"], "weeks": [], "evidence": ["ev3"]}}
    progress = {pid: (orjson.dumps({"badges": full, "applied": {"0": 4}}).decode(), MON) for pid in PEOPLE[:5]}
    progress["p005"] = (orjson.dumps({"badges": short, "applied": {}}).decode(), MON)  # below the tier
    progress["p006"] = (None, MON)  # no progress at all
    badges.award_badges(applier.store, applier.rules, applier.clock, progress, publish=False, notify=lambda *a: None,
                        notify_inserted=None, known=set())
    stored = list(applier.store.badge_awards.find())
    assert sorted(d["person_id"] for d in stored) == PEOPLE[:5]
    assert {d["badge"] for d in stored} == {"team_favorite"} and all(d["evidence"] == ["ev1", "ev2"] for d in stored)


def test_a_persons_awards_in_one_record_all_count_once(applier):
    """A points.awarded record holds several of a person's awards, all at its one offset: each
    adds to the totals, the board, the ledger and the person's ledger list, and the record
    delivered again (a crash before the commit) adds nothing."""
    week = period_key(applier.calendar, "week", MON)
    record = [(PointsAwarded(entry_id=f"r-{n}", person_id="p001", points=10, rule="kudos_received", reason="Kudos received",
                             source_event_id=f"kr{n}", source_event_type="kudos.given", at=MON + timedelta(minutes=n)), "3", 40)
              for n in range(3)]
    assert applier.apply_batch(record) == 3
    assert applier.store.key_totals(week) == {"p001": 30}
    assert board(applier, week)["entries"]["p001"]["p"] == 30
    assert applier.store.ledger.count_documents({"person_id": "p001"}) == 3
    assert applier.table.get("p001").ledger["n"] == 3  # all three in the ledger list
    assert applier.apply_batch(record) == 0  # delivered again
    applier.store.ledger.delete_many({"person_id": "p001"})  # as if the crash came before the ledger's write
    assert applier.apply_batch(record) == 3
    assert applier.store.key_totals(week) == {"p001": 30}
    assert board(applier, week)["entries"]["p001"]["p"] == 30 and applier.table.get("p001").ledger["n"] == 3
