"""Lists kept by the write path (shared/feeds.py) on the real wire server: pages, cursors,
counts, idempotent adds and removes, bulk adds, and a head left behind by a crash mended."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from pymongo import monitoring

from shared.db import mongo_client
from shared.feeds import DAY, Entry, FeedStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(settings):
    client = mongo_client(settings)
    try:
        yield FeedStore(client[settings.database("feeds")]["lists"], slots={"all": DAY})
    finally:
        client.close()


def _walk(store, feed, first, descending=True, where=None):
    ids, after = [], None
    while True:
        page = store.page(feed, first, after, descending=descending, where=where)
        ids += page["ids"]
        if not page["page_info"]["has_next_page"]:
            return ids, page["total_count"]
        after = page["page_info"]["end_cursor"]


def test_pages_walk_every_entry_once_in_time_order_across_buckets(store):
    entries = [Entry(f"k{i:03d}", T0 + timedelta(hours=7 * i), {"s": "open" if i % 3 else "closed"}) for i in range(60)]
    for e in reversed(entries):  # arriving out of order, as imported history does
        assert store.add("all", e) is True
    assert store.add("all", entries[5]) is False  # again: nothing changes
    newest_first, total = _walk(store, "all", 7)
    assert newest_first == [e.id for e in reversed(entries)] and total == 60
    oldest_first, _ = _walk(store, "all", 9, descending=False)
    assert oldest_first == [e.id for e in entries]
    closed, total = _walk(store, "all", 4, where=lambda d: d.get("s") == "closed")
    assert closed == [e.id for e in reversed(entries) if e.data["s"] == "closed"] and total == 20


def test_remove_and_move_keep_the_counts(store):
    for i in range(5):
        store.add("to:p1", Entry(f"k{i}", T0 + timedelta(days=40 * i)))
    assert store.remove("to:p1", "k2", T0 + timedelta(days=80)) is True
    assert store.remove("to:p1", "k2", T0 + timedelta(days=80)) is False
    store.move("to:p1", Entry("k4", T0 - timedelta(days=400)), old_at=T0 + timedelta(days=160))
    page = store.page("to:p1", 10)
    assert page["ids"] == ["k3", "k1", "k0", "k4"] and page["total_count"] == 4
    assert store.count("to:p1") == 4 and store.count("to:nobody") == 0


def test_bulk_adds_skip_what_is_there(store):
    store.add("from:p2", Entry("a", T0))
    added = store.add_many([("from:p2", Entry("a", T0)), ("from:p2", Entry("b", T0 + timedelta(minutes=1))),
                            ("from:p3", Entry("c", T0 + timedelta(days=90)))])
    assert added == 2
    assert store.page("from:p2", 5)["ids"] == ["b", "a"] and store.count("from:p3") == 1
    assert store.add_many([("from:p2", Entry("b", T0 + timedelta(minutes=1)))]) == 0


def test_a_head_a_crash_left_behind_is_mended_by_adding_again(store):
    store.add("to:p9", Entry("x", T0))
    store.collection.delete_one({"_id": "to:p9"})  # the head write never happened
    assert store.page("to:p9", 5)["ids"] == []
    assert store.add("to:p9", Entry("x", T0)) is False  # the replay finds the entry there ...
    assert store.page("to:p9", 5)["ids"] == ["x"]  # ... and mends the head


def test_a_cursor_from_elsewhere_is_refused(store):
    from shared.errors import BadInput
    from shared.pagination import encode_cursor
    with pytest.raises(BadInput):
        store.page("all", 5, after=encode_cursor(["x", 1]))


def test_put_and_apply_change_many_entries_in_a_few_round_trips(store):
    store.add("to:p5", Entry("a", T0, {"s": "open"}))
    assert store.put("to:p5", Entry("a", T0, {"s": "closed"})) is False  # replaced in place
    assert store.put("to:p5", Entry("b", T0 + timedelta(minutes=1), {"s": "open"})) is True
    assert [e["d"]["s"] for e in store.entries("to:p5")] == ["closed", "open"] and store.count("to:p5") == 2
    for _ in range(2):  # idempotent: the second time changes nothing
        store.apply(adds=[("to:p6", Entry("c", T0))],
                    puts=[("to:p5", Entry("a", T0, {"s": "again"})), ("to:p7", Entry("d", T0 + timedelta(days=40)))],
                    removes=[("to:p5", "b", T0 + timedelta(minutes=1)), ("to:p8", "zz", T0)])
        assert store.page("to:p5", 5)["ids"] == ["a"] and store.entries("to:p5")[0]["d"] == {"s": "again"}
        assert store.count("to:p5") == 1 and store.count("to:p6") == 1 and store.count("to:p7") == 1
        assert store.count("to:p8") == 0


def test_bulk_adds_beside_another_writer_of_the_same_entries_count_each_once(store, monkeypatch):
    import shared.feeds as feeds

    store.add("to:p5", Entry("a", T0))
    real = feeds.find_by_ids
    calls = []

    def racing(collection, ids, projection=None):
        found = real(collection, ids, projection)
        if not calls:  # between add_many's read and its write, a live writer adds one of its entries
            calls.append(1)
            store.add("to:p5", Entry("b", T0 + timedelta(minutes=1)))
        return found

    monkeypatch.setattr(feeds, "find_by_ids", racing)
    store.add_many([("to:p5", Entry("b", T0 + timedelta(minutes=1))), ("to:p5", Entry("c", T0 + timedelta(minutes=2)))])
    monkeypatch.undo()
    page = store.page("to:p5", 10)
    assert page["ids"] == ["c", "b", "a"] and page["total_count"] == 3


def test_fill_writes_an_empty_collection_as_adds_would(store):
    entries = [("to:q1", Entry(f"k{i}", T0 + timedelta(days=20 * i), {"s": i % 2})) for i in range(6)]
    assert store.fill(entries + [("to:q2", Entry("z", T0))] + entries[:1]) == 7  # a repeat is written once
    assert store.page("to:q1", 10)["ids"] == [f"k{i}" for i in reversed(range(6))] and store.count("to:q1") == 6
    store.add("to:q1", Entry("k9", T0 + timedelta(days=1)))  # and the lists go on as usual
    store.remove("to:q1", "k0", T0)
    assert store.count("to:q1") == 6 and store.page("to:q2", 5)["ids"] == ["z"]


def test_entries_stored_before_packing_read_and_change_like_packed_ones(store):
    # A bucket as written before entries were packed into one value ({t, d} documents): a
    # var/ from then pages, filters, and takes puts and removes without an upgrade step.
    old_at, new_at = T0, T0 + timedelta(hours=1)
    store.collection.insert_many([
        {"_id": f"to:p9|{T0:%Y-%m}", "e": {"a": {"t": old_at, "d": {"s": "open"}}, "b": {"t": old_at + timedelta(minutes=1)}},
         "n": 2, "v": 2},
        {"_id": "to:p9", "b": {f"{T0:%Y-%m}": (2 << 20) | 2}},
    ])
    store.add("to:p9", Entry("c", new_at, {"s": "closed"}))
    stored = store.collection.find_one({"_id": f"to:p9|{T0:%Y-%m}"})["e"]
    assert isinstance(stored["c"], str) and stored["c"].endswith('|{"s":"closed"}')  # one value
    assert store.page("to:p9", 10)["ids"] == ["c", "b", "a"]
    assert store.page("to:p9", 10, where=lambda d: d.get("s") == "open")["ids"] == ["a"]
    store.put("to:p9", Entry("a", old_at, {"s": "closed"}))
    store.remove("to:p9", "b", old_at + timedelta(minutes=1))
    page = store.page("to:p9", 10, where=lambda d: d.get("s") == "closed")
    assert page["ids"] == ["c", "a"] and page["total_count"] == 2 and store.count("to:p9") == 2
    first = store.page("to:p9", 1)
    assert store.page("to:p9", 1, first["page_info"]["end_cursor"])["ids"] == ["a"]


class _Writes(monitoring.CommandListener):
    """Counts the statements a client sends (pymongo command monitoring), by command."""

    def __init__(self):
        self.statements, self.commands = Counter(), Counter()

    def started(self, event):
        body = event.command
        n = {"insert": "documents", "update": "updates"}.get(event.command_name)
        self.commands[event.command_name] += 1
        self.statements[event.command_name] += len(body.get(n, [])) if n else 0

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def counted(settings):
    import pymongo

    writes = _Writes()
    client = pymongo.MongoClient(settings.mongo_uri, event_listeners=[writes], tz_aware=True)
    try:
        yield FeedStore(client[settings.database("feeds")]["lists"], slots={"all": DAY}), writes
    finally:
        client.close()


def test_bulk_adds_insert_new_buckets_and_heads_and_read_nothing_back(counted):
    store, writes = counted
    entries = [(f"to:p{i % 4}", Entry(f"k{i}", T0 + timedelta(days=20 * i))) for i in range(12)]
    assert store.add_many(entries) == 12
    # New buckets and heads are inserted (an update costs FerretDB ~15 inserts): two reads
    # before (buckets, heads), two inserts, no update, nothing read back.
    assert writes.statements["update"] == 0 and writes.commands["insert"] == 2 and writes.commands["find"] == 2
    for i in range(4):
        assert store.page(f"to:p{i}", 10)["ids"] == [f"k{j}" for j in reversed(range(12)) if j % 4 == i]
    writes.statements.clear(), writes.commands.clear()
    # Into existing buckets: one update per bucket, one per head (its slots at once).
    more = [("to:p0", Entry("m0", T0 + timedelta(minutes=1))), ("to:p0", Entry("m1", T0 + timedelta(days=80, minutes=1))),
            ("to:p0", Entry("m2", T0 + timedelta(days=80, minutes=2)))]
    assert store.add_many(more + entries) == 3
    assert writes.statements["update"] == 3 and writes.commands["insert"] == 0 and writes.commands["find"] == 2
    page = store.page("to:p0", 20)
    assert page["ids"][:3] == ["k8", "m2", "m1"] and page["total_count"] == 6
    writes.statements.clear(), writes.commands.clear()
    assert store.add_many(more) == 0 and writes.statements["update"] == 0  # all there: nothing written


def test_bulk_adds_into_a_bucket_another_writer_creates_meanwhile_count_each_once(store, monkeypatch):
    import shared.feeds as feeds

    real = feeds.find_by_ids
    calls = []

    def racing(collection, ids, projection=None):
        found = real(collection, ids, projection)
        if not calls:  # after add_many found the bucket missing, a live writer creates it
            calls.append(1)
            store.add("to:r1", Entry("b", T0 + timedelta(minutes=1)))
        return found

    monkeypatch.setattr(feeds, "find_by_ids", racing)
    added = store.add_many([("to:r1", Entry("b", T0 + timedelta(minutes=1))), ("to:r1", Entry("c", T0 + timedelta(minutes=2))),
                            ("to:r2", Entry("d", T0))])
    monkeypatch.undo()
    assert added >= 2
    page = store.page("to:r1", 10)
    assert page["ids"] == ["c", "b"] and page["total_count"] == 2 and store.count("to:r2") == 1


def test_bulk_adds_mend_a_head_a_crash_left_behind(store):
    store.add_many([("to:s1", Entry("x", T0)), ("to:s1", Entry("y", T0 + timedelta(days=40)))])
    store.collection.delete_one({"_id": "to:s1"})  # the head write never happened
    assert store.add_many([("to:s1", Entry("x", T0)), ("to:s1", Entry("y", T0 + timedelta(days=40)))]) == 0
    assert store.page("to:s1", 5)["ids"] == ["y", "x"] and store.count("to:s1") == 2


def test_pages_come_from_remembered_buckets_only_while_the_head_shows_their_state(store, monkeypatch):
    days = [T0 + timedelta(days=d) for d in range(4)]
    for d, at in enumerate(days):
        store.add_many([("all", Entry(f"k{d}{i}", at + timedelta(minutes=i))) for i in range(3)])
    reads: list[list[str]] = []
    real = store.collection.find

    def counting(query, *args, **kwargs):
        ids = query.get("_id", {})
        if isinstance(ids, dict) and "$in" in ids:
            reads.append(sorted(ids["$in"]))
        return real(query, *args, **kwargs)

    monkeypatch.setattr(store.collection, "find", counting)
    first = store.page("all", 5)
    assert first["ids"] == ["k32", "k31", "k30", "k22", "k21"] and reads  # read from the database once
    reads.clear()
    assert store.page("all", 5) == first and reads == []  # again: from memory
    # A put changes an entry in place (same slot): its bucket is read again, the others not.
    store.put("all", Entry("k31", days[3] + timedelta(minutes=1), {"s": "changed"}))
    store.add("all", Entry("k33", days[3] + timedelta(minutes=9)))
    again = store.page("all", 5)
    assert again["ids"] == ["k33", "k32", "k31", "k30", "k22"] and again["entries"][2]["d"] == {"s": "changed"}
    # The month's head changed too (a day list keeps a head per month): it is read, then the day.
    assert reads == [["all|2026-03|days"], [f"all|{days[3]:%Y-%m-%d}"]]
    reads.clear()
    store.remove("all", "k22", days[2] + timedelta(minutes=2))
    assert store.page("all", 5)["ids"] == ["k33", "k32", "k31", "k30", "k21"]
    assert reads == [["all|2026-03|days"], [f"all|{days[2]:%Y-%m-%d}"]]
    # Another process's store (no memory of its own) sees the same list.
    other = FeedStore(store.collection, slots={"all": DAY})
    assert other.page("all", 5)["ids"] == ["k33", "k32", "k31", "k30", "k21"] and other.count("all") == 12


def test_a_day_list_keeps_a_head_of_one_value_per_month_and_pages_across_months(store):
    # A year and a month of a busy list: its head holds 14 months, not ~400 days.
    entries = [Entry(f"k{i:03d}", T0 + timedelta(hours=23 * i), {"s": i % 2}) for i in range(440)]
    store.add_many([("all", e) for e in entries[:300]])
    store.apply(adds=[("all", e) for e in entries[300:400]])
    for e in entries[400:]:
        store.add("all", e)
    head = store.collection.find_one({"_id": "all"})
    assert "b" not in head and len(head["m"]) == 14
    assert sum(v & ((1 << 20) - 1) for v in head["m"].values()) == 440 == store.count("all")
    newest_first, total = _walk(store, "all", 25)
    assert newest_first == [e.id for e in reversed(entries)] and total == 440
    oldest_first, _ = _walk(store, "all", 33, descending=False)
    assert oldest_first == [e.id for e in entries]
    odd, total = _walk(store, "all", 50, where=lambda d: d.get("s") == 1)
    assert odd == [e.id for e in reversed(entries) if e.data["s"] == 1] and total == 220
    store.remove("all", "k000", entries[0].at)  # the oldest month loses an entry
    assert store.count("all") == 439 and _walk(store, "all", 100, descending=False)[0][0] == "k001"
    # A fresh process (no memory) reads the same pages.
    other = FeedStore(store.collection, slots={"all": DAY})
    assert _walk(other, "all", 40)[0] == [e.id for e in reversed(entries[1:])]


def test_a_day_list_head_written_before_the_split_is_split_on_first_read(store, monkeypatch):
    entries = [Entry(f"k{i:02d}", T0 + timedelta(days=3 * i)) for i in range(40)]  # four months
    monkeypatch.setattr(FeedStore, "_split", lambda self, feed: False)  # the code before the split
    store.add_many([("all", e) for e in entries])
    assert len(store.collection.find_one({"_id": "all"})["b"]) == 40
    monkeypatch.undo()
    upgraded = FeedStore(store.collection, slots={"all": DAY})
    assert _walk(upgraded, "all", 7)[0] == [e.id for e in reversed(entries)] and upgraded.count("all") == 40
    head = store.collection.find_one({"_id": "all"})
    assert "b" not in head and sorted(head["m"]) == ["2026-03", "2026-04", "2026-05", "2026-06"]
    upgraded.add("all", Entry("new", T0 + timedelta(days=200)))  # and it goes on as usual
    upgraded.remove("all", "k00", entries[0].at)
    assert upgraded.count("all") == 40 and upgraded.page("all", 1)["ids"] == ["new"]


def test_two_writers_of_one_month_leave_its_count_right(store, monkeypatch):
    import shared.feeds as feeds

    other = FeedStore(store.collection, slots={"all": DAY})
    real = feeds.find_by_ids
    calls = []

    def racing(collection, ids, projection=None):
        found = real(collection, ids, projection)
        if any(str(i).endswith("|days") for i in ids) and not calls:
            calls.append(1)  # between this writer's month-head raise and its roll-up, another day changes
            other.add("all", Entry("late", T0 + timedelta(days=2)))
        return found

    monkeypatch.setattr(feeds, "find_by_ids", racing)
    store.apply(adds=[("all", Entry("a", T0)), ("all", Entry("b", T0 + timedelta(days=1)))])
    monkeypatch.undo()
    assert calls and store.count("all") == 3 and other.count("all") == 3
    assert store.page("all", 5)["ids"] == ["late", "b", "a"]
