"""Lists kept by the write path and read by ``_id``: the read side that does not grow with history.

Our FerretDB answers only ``_id`` lookups (``{_id: x}``, ``{_id: {$in: [...]}}``) from an
index; any other filter, sort or count decodes the whole collection. So every list a person
opens (a feed, a queue, "my requests") is kept as documents addressed by ``_id``:

- a **bucket** per list and time slot (``<list>|<slot>``, the slot from the entry's own time:
  a day or a month): ``{e: {<item id>: <entry>}, n: entries, v: changes}``, the entry its time
  or ``"<time>|<data as JSON>"`` (one value: see ``_item``) (a map,
  not an array: FerretDB 1.24 neither matches ``$ne`` inside arrays of documents nor runs a
  conditional ``$pull``, while ``e.<id>: {$exists: ...}`` with ``$set``/``$unset`` works on both);
- a **head** per list (``<list>``): ``{b: {<slot>: v << 20 | n}}``, which slots hold entries
  and how many (``$max`` of a number that grows with every change of the bucket, so the
  newest state wins whatever order two writers' head updates land in).
- a list in **day** slots (a busy one: the company feed) would get a head that grows by a
  value a day, so its head is split by month: a **month head** (``<list>|<YYYY-MM>|days``)
  holds ``{b: {<day>: v << 20 | n}}`` for that month's days, and the list's head holds
  ``{m: {<month>: Σv << 20 | Σn}}`` (twelve values a year). A writer raises the month head, reads
  it back and raises the month's value (the sums grow with every change, so the last writer's
  ``$max`` wins). A head written before the split (its days in ``b``) is split on first read.

A page reads the head, then just enough buckets (newest or oldest first) with one ``$in``,
sorts those entries in memory and cuts the page: its cost is the page and a bucket or two,
never the history (a split list: its head, the month heads it needs, cached like buckets
under the state the head shows, then the buckets). ``total_count`` is the sum of the head's counts. Adding and removing are
idempotent (a redelivered event, a retried command, a replayed outbox change nothing), so a
writer may apply them again whenever it is unsure they happened. Real MongoDB answers the
same reads the same way.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.clock import utc
from shared.db import WRITE_CHUNK, chunks, find_by_ids, insert_new
from shared.errors import BadInput
from shared.pagination import decode_cursor, encode_cursor, page_size

__all__ = ["DAY", "MONTH", "YEAR", "Entry", "FeedStore", "in_order", "page_of"]

_N_BITS = 20
_N_MASK = (1 << _N_BITS) - 1
# Entries of buckets read before, kept per process (about 350 bytes each): see _BucketCache.
CACHED_ENTRIES = 50_000


def DAY(at: datetime) -> str:  # noqa: N802 - a slot function, named like the constant it is
    return utc(at).strftime("%Y-%m-%d")


def MONTH(at: datetime) -> str:  # noqa: N802
    return utc(at).strftime("%Y-%m")


def YEAR(at: datetime) -> str:  # noqa: N802 - for short lists (a rep's requests: tens a year)
    return utc(at).strftime("%Y")


@dataclass(frozen=True)
class Entry:
    """One item of a list: its id, its sort time and a little data to filter on."""

    id: str
    at: datetime
    data: dict[str, Any] | None = None


def _key(item_id: str) -> str:
    if not item_id or "." in item_id or item_id.startswith("$"):
        raise ValueError(f"{item_id!r} cannot name an entry (no dots, no leading $)")
    return f"e.{item_id}"


def _item(entry: Entry) -> datetime | str:
    """An entry as stored: its time alone, or ``"<time>|<data as JSON>"``, one value either way.

    FerretDB's cost to read a document grows with the values in it: a bucket of 140 request
    entries stored as ``{t, d: {s, p, d, a}}`` took 26.6 ms of its CPU to read, packed 5.9 ms
    (measured on this 2-core machine). Nothing filters on an entry's parts in the database
    (only on ``e.<id>`` existing), so they are packed."""
    at = utc(entry.at)
    if not entry.data:
        return at
    # Milliseconds, as BSON keeps a date: a page's cursor compares the same times either way.
    return f"{at.isoformat(timespec='milliseconds')}|{json.dumps(entry.data, separators=(',', ':'), sort_keys=True)}"


def _unpack(item_id: str, value: Any) -> dict[str, Any]:
    """``{"i", "t", "d"}`` of a stored entry (also the ``{t, d}`` documents written before packing)."""
    if isinstance(value, datetime):
        return {"i": item_id, "t": utc(value), "d": None}
    if isinstance(value, str):
        at, _, data = value.partition("|")
        return {"i": item_id, "t": datetime.fromisoformat(at), "d": json.loads(data) if data else None}
    return {"i": item_id, "t": utc(value["t"]), "d": value.get("d")}


def _slot_of(feed: str, slots: dict[str, Callable[[datetime], str]]) -> Callable[[datetime], str]:
    kind = feed.split(":", 1)[0]
    return slots.get(kind, MONTH)


def _month_head(feed: str, month: str) -> str:
    return f"{feed}|{month}|days"


def _rolled(days: dict[str, Any]) -> int:
    """A month head's days summed into one ``Σv << 20 | Σn``: it grows with every change of any
    of the month's buckets, so ``$max`` keeps the newest."""
    v = sum(int(stamp) >> _N_BITS for stamp in days.values())
    n = sum(int(stamp) & _N_MASK for stamp in days.values())
    return (v << _N_BITS) | n


class FeedStore:
    """Every list of one service, in one collection. ``slots`` maps a list kind (the part of
    the list name before the first ``:``) to its slot function (``DAY`` for busy lists such
    as the company feed, ``MONTH`` for a person's lists, the default)."""

    def __init__(self, collection, slots: dict[str, Callable[[datetime], str]] | None = None,
                 cached_entries: int = CACHED_ENTRIES):
        self.collection = collection
        self.slots = slots or {}
        self._cache = _BucketCache(cached_entries)
        self._months = _BucketCache(cached_entries)  # month heads of split lists: [(day, stamp)]

    def _split(self, feed: str) -> bool:
        """Lists in day slots keep a head per month (module docstring)."""
        return _slot_of(feed, self.slots) is DAY

    def _bucket_id(self, feed: str, at: datetime) -> tuple[str, str]:
        slot = _slot_of(feed, self.slots)(at)
        return slot, f"{feed}|{slot}"

    def _publish(self, feed: str, slot: str, bucket: dict | None) -> None:
        if bucket is None:
            return
        stamp = (int(bucket.get("v", 0)) << _N_BITS) | int(bucket.get("n", 0))
        if not self._split(feed):
            self.collection.update_one({"_id": feed}, {"$max": {f"b.{slot}": stamp}}, upsert=True)
            return
        month = slot[:7]
        head = self.collection.find_one_and_update({"_id": _month_head(feed, month)}, {"$max": {f"b.{slot}": stamp}},
                                                   upsert=True, return_document=ReturnDocument.AFTER)
        self.collection.update_one({"_id": feed}, {"$max": {f"m.{month}": _rolled(head.get("b") or {})}}, upsert=True)

    def _roll_up(self, months: Iterable[tuple[str, str]]) -> None:
        """Raise the heads of split lists to the sums of these ``(list, month)`` month heads, read
        after their own raise (so the last writer's sums hold every change)."""
        months = set(months)
        if not months:
            return
        heads = find_by_ids(self.collection, [_month_head(f, m) for f, m in months], {"b": 1})
        tops: dict[str, dict[str, int]] = {}
        for feed, month in months:
            head = heads.get(_month_head(feed, month))
            if head is not None:
                tops.setdefault(feed, {})[f"m.{month}"] = _rolled(head.get("b") or {})
        ops = [UpdateOne({"_id": feed}, {"$max": sums}, upsert=True) for feed, sums in tops.items()]
        for part in chunks(ops, WRITE_CHUNK):
            self.collection.bulk_write(part, ordered=False)

    # -- writes -------------------------------------------------------------------------------------

    def add(self, feed: str, entry: Entry) -> bool:
        """Put ``entry`` on ``feed`` once; True if it was not there yet."""
        slot, bucket_id = self._bucket_id(feed, entry.at)
        key = _key(entry.id)
        try:
            bucket = self.collection.find_one_and_update(
                {"_id": bucket_id, key: {"$exists": False}},
                {"$set": {key: _item(entry)}, "$inc": {"n": 1, "v": 1}},
                upsert=True, return_document=ReturnDocument.AFTER)  # FerretDB: no projection here
            added = True
        except DuplicateKeyError:  # the bucket exists and has the entry: the filter missed
            bucket, added = self.collection.find_one({"_id": bucket_id}, {"n": 1, "v": 1}), False
        self._publish(feed, slot, bucket)  # again when it was there: mends a head a crash left behind
        return added

    def remove(self, feed: str, item_id: str, at: datetime) -> bool:
        """Take the item off ``feed`` (``at`` is the time it was added with); True if it was there."""
        slot, bucket_id = self._bucket_id(feed, at)
        key = _key(item_id)
        bucket = self.collection.find_one_and_update(
            {"_id": bucket_id, key: {"$exists": True}}, {"$unset": {key: ""}, "$inc": {"n": -1, "v": 1}},
            return_document=ReturnDocument.AFTER)
        removed = bucket is not None
        if bucket is None:
            bucket = self.collection.find_one({"_id": bucket_id}, {"n": 1, "v": 1})
        self._publish(feed, slot, bucket)
        return removed

    def put(self, feed: str, entry: Entry) -> bool:
        """Put ``entry`` on ``feed`` or, when it is there, replace its time and data in place
        (``entry.at`` must fall in the slot it was added in: use :meth:`move` otherwise).
        Idempotent; True if it was not there yet."""
        slot, bucket_id = self._bucket_id(feed, entry.at)
        key = _key(entry.id)
        bucket = self.collection.find_one_and_update(
            {"_id": bucket_id, key: {"$exists": True}}, {"$set": {key: _item(entry)}, "$inc": {"v": 1}},
            return_document=ReturnDocument.AFTER)
        if bucket is None:
            return self.add(feed, entry)
        self._publish(feed, slot, bucket)  # mends a head a crash left behind
        return False

    def apply(self, adds: Sequence[tuple[str, Entry]] = (), puts: Sequence[tuple[str, Entry]] = (),
              removes: Sequence[tuple[str, str, datetime]] = ()) -> None:
        """Many :meth:`add`, :meth:`put` and :meth:`remove` (``(feed, item id, at)``) of one
        writer in three round trips: one bulk write of the buckets, one read of their counts,
        one bulk write of the heads. Same effects, same idempotence; the changes must touch
        different entries. A put is two conditional updates (replace if there; add if not),
        each a no-op when the other applies."""
        ops: list[UpdateOne] = []
        touched: dict[str, tuple[str, str]] = {}
        created: dict[str, None] = {}  # buckets an entry may be added to: made first if missing

        def adding(feed: str, entry: Entry) -> UpdateOne:
            slot, bucket_id = self._bucket_id(feed, entry.at)
            touched[bucket_id] = (feed, slot)
            created[bucket_id] = None
            # No upsert here: an upsert whose filter misses an existing bucket is a duplicate
            # key error, and FerretDB answers a bulk write with one in a shape pymongo rejects.
            return UpdateOne({"_id": bucket_id, _key(entry.id): {"$exists": False}},
                             {"$set": {_key(entry.id): _item(entry)}, "$inc": {"n": 1, "v": 1}})

        for feed, entry in adds:
            ops.append(adding(feed, entry))
        for feed, entry in puts:
            slot, bucket_id = self._bucket_id(feed, entry.at)
            key = _key(entry.id)
            touched[bucket_id] = (feed, slot)
            ops.append(UpdateOne({"_id": bucket_id, key: {"$exists": True}}, {"$set": {key: _item(entry)}, "$inc": {"v": 1}}))
            ops.append(adding(feed, entry))
        for feed, item_id, at in removes:
            slot, bucket_id = self._bucket_id(feed, at)
            key = _key(item_id)
            touched[bucket_id] = (feed, slot)
            ops.append(UpdateOne({"_id": bucket_id, key: {"$exists": True}}, {"$unset": {key: ""}, "$inc": {"n": -1, "v": 1}}))
        if not ops:
            return
        ops = [UpdateOne({"_id": b}, {"$setOnInsert": {"n": 0, "v": 0}}, upsert=True) for b in created] + ops
        for part in chunks(ops, WRITE_CHUNK):
            self.collection.bulk_write(part, ordered=True)  # the buckets exist before their adds
        heads: dict[str, dict[str, int]] = {}
        months: set[tuple[str, str]] = set()
        for bucket_id, bucket in find_by_ids(self.collection, list(touched), {"n": 1, "v": 1}).items():
            feed, slot = touched[bucket_id]
            head_id = feed
            if self._split(feed):
                head_id = _month_head(feed, slot[:7])
                months.add((feed, slot[:7]))
            heads.setdefault(head_id, {})[f"b.{slot}"] = (int(bucket.get("v", 0)) << _N_BITS) | int(bucket.get("n", 0))
        head_ops = [UpdateOne({"_id": head_id}, {"$max": stamps}, upsert=True) for head_id, stamps in heads.items()]
        for part in chunks(head_ops, WRITE_CHUNK):
            self.collection.bulk_write(part, ordered=False)
        self._roll_up(months)

    def move(self, feed: str, entry: Entry, old_at: datetime | None) -> None:
        """Put ``entry`` on ``feed`` at its (new) time, off its old slot if that changed."""
        if old_at is not None:
            self.remove(feed, entry.id, old_at)
        self.add(feed, entry)

    def add_many(self, entries: Iterable[tuple[str, Entry]]) -> int:
        """Bulk form of :meth:`add` for imports, upgrades and ledgers. Entries already on their
        list are skipped. Returns how many were added (approximate when another writer added
        some of the same entries at the same moment).

        Its cost: a read of the touched buckets (``$in``, 100 a time) and of the touched heads, then
        per bucket one write, an **insert** when the bucket is new (FerretDB: an update costs
        ~15 inserts), else one update; per list one head write, none when its head already
        shows these states (a list touched again in another bucket of the same call still gets
        one). Nothing is read back: each write's outcome is known from what was read.

        Safe beside other writers of the same buckets (a live :meth:`add`, a recovery, another
        process): a bucket's update applies only if the bucket is still at the version it was
        read at (``v``) and none of its new entries is there, so its new state is exactly the
        one read plus these entries; a new bucket someone else created first (its insert
        refused), or an update that missed, is redone entry by entry, each conditional, so no
        entry is counted twice, and only those buckets are read back. Heads are written after
        every bucket, with ``$max`` (the newest state wins whatever order writers land in), also
        for buckets that had nothing new: a head a crash left behind is mended."""
        by_bucket: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for feed, entry in entries:
            slot, bucket_id = self._bucket_id(feed, entry.at)
            _key(entry.id)
            by_bucket.setdefault(bucket_id, (feed, slot, {}))[2][entry.id] = _item(entry)
        added = 0
        stamps: dict[str, dict[str, int]] = {}  # list -> slot -> (v << 20 | n) after this call

        def stamp(bucket_id: str, v: int, n: int) -> None:
            feed, slot, _ = by_bucket[bucket_id]
            slots = stamps.setdefault(feed, {})
            slots[slot] = max(slots.get(slot, 0), (v << _N_BITS) | n)

        # 100 buckets a read: a company-feed day bucket holds a few hundred entries, and a read
        # of 1,000 of them outlasted the client's 30 s timeout on the loaded machine.
        for ids in chunks(list(by_bucket), WRITE_CHUNK):
            stored = find_by_ids(self.collection, ids, {"e": 1, "n": 1, "v": 1})
            inserts: list[dict[str, Any]] = []
            updates: list[tuple[UpdateOne, str, int, int, dict[str, Any]]] = []
            unsure: dict[str, dict[str, Any]] = {}  # bucket -> its new entries, to redo one by one
            for bucket_id in ids:
                feed, slot, items = by_bucket[bucket_id]
                doc = stored.get(bucket_id)
                if doc is None:
                    inserts.append({"_id": bucket_id, "e": dict(items), "n": len(items), "v": 1})
                    added += len(items)
                    continue
                have = doc.get("e") or {}
                v, n = int(doc.get("v", 0)), int(doc.get("n", 0))
                new = {f"e.{i}": item for i, item in items.items() if i not in have}
                if not new:
                    stamp(bucket_id, v, n)  # all there: its head is mended below if it lags
                    continue
                added += len(new)
                updates.append((UpdateOne({"_id": bucket_id, "v": v, **{k: {"$exists": False} for k in new}},
                                          {"$set": new, "$inc": {"n": len(new), "v": 1}}), bucket_id, v + 1, n + len(new), new))
            refused = insert_new(self.collection, inserts)
            for doc in inserts:
                if doc["_id"] in refused:  # created meanwhile by another writer
                    unsure[doc["_id"]] = {f"e.{i}": item for i, item in doc["e"].items()}
                else:
                    stamp(doc["_id"], 1, doc["n"])
            for part in chunks(updates, WRITE_CHUNK):
                if self.collection.bulk_write([op for op, *_ in part], ordered=False).matched_count == len(part):
                    for _, bucket_id, v, n, _ in part:
                        stamp(bucket_id, v, n)
                else:  # another writer changed some of these buckets since the read: entry by entry
                    for _, bucket_id, _, _, new in part:
                        unsure[bucket_id] = new
            if unsure:
                again = [UpdateOne({"_id": b}, {"$setOnInsert": {"n": 0, "v": 0}}, upsert=True) for b in unsure]
                again += [UpdateOne({"_id": b, k: {"$exists": False}}, {"$set": {k: item}, "$inc": {"n": 1, "v": 1}})
                          for b, new in unsure.items() for k, item in new.items()]
                for part in chunks(again, WRITE_CHUNK):
                    self.collection.bulk_write(part, ordered=True)  # the buckets exist before their adds
                for bucket_id, doc in find_by_ids(self.collection, list(unsure), {"n": 1, "v": 1}).items():
                    stamp(bucket_id, int(doc.get("v", 0)), int(doc.get("n", 0)))
        self._publish_many(stamps)
        return added

    def _publish_many(self, stamps: dict[str, dict[str, int]]) -> None:
        """Raise the heads of many lists to these bucket states (``$max``): a missing head is
        inserted, a head that already shows them is left alone (a split list: its month heads,
        then its head to their sums)."""
        flat: dict[str, dict[str, int]] = {}
        months: set[tuple[str, str]] = set()
        for feed, slots in stamps.items():
            if not self._split(feed):
                flat[feed] = slots
                continue
            for slot, stamp in slots.items():
                flat.setdefault(_month_head(feed, slot[:7]), {})[slot] = stamp
                months.add((feed, slot[:7]))
        self._raise_heads(flat)
        self._roll_up(months)

    def _raise_heads(self, stamps: dict[str, dict[str, int]]) -> None:
        heads = find_by_ids(self.collection, list(stamps), {"b": 1})
        inserts, raises = [], []
        for feed, slots in stamps.items():
            head = heads.get(feed)
            if head is None:
                inserts.append({"_id": feed, "b": dict(slots)})
                continue
            shown = head.get("b") or {}
            higher = {f"b.{slot}": s for slot, s in slots.items() if int(shown.get(slot) or 0) < s}
            if higher:
                raises.append(UpdateOne({"_id": feed}, {"$max": higher}, upsert=True))
        refused = insert_new(self.collection, inserts)  # created meanwhile: raised like the others
        raises += [UpdateOne({"_id": d["_id"]}, {"$max": {f"b.{s}": v for s, v in d["b"].items()}}, upsert=True)
                   for d in inserts if d["_id"] in refused]
        for part in chunks(raises, WRITE_CHUNK):
            self.collection.bulk_write(part, ordered=False)

    def fill(self, entries: Iterable[tuple[str, Entry]]) -> int:
        """Write lists into an **empty** collection (a first build, an upgrade): every bucket
        and head inserted, in bulk, without reading anything (inserts cost a fraction of
        updates on FerretDB). The caller makes sure nobody else writes the collection
        meanwhile. Returns how many entries were written."""
        buckets: dict[str, dict[str, Any]] = {}
        for feed, entry in entries:
            slot, bucket_id = self._bucket_id(feed, entry.at)
            bucket = buckets.setdefault(bucket_id, {"_id": bucket_id, "e": {}, "n": 0, "v": 1, "_head": (feed, slot)})
            if entry.id not in bucket["e"]:
                _key(entry.id)
                bucket["e"][entry.id] = _item(entry)
                bucket["n"] += 1
        heads: dict[str, dict[str, Any]] = {}
        months: dict[str, set[str]] = {}  # split lists: their months
        for bucket in buckets.values():
            feed, slot = bucket.pop("_head")
            head_id = _month_head(feed, slot[:7]) if self._split(feed) else feed
            heads.setdefault(head_id, {"_id": head_id, "b": {}})["b"][slot] = (1 << _N_BITS) | bucket["n"]
            if head_id != feed:
                months.setdefault(feed, set()).add(slot[:7])
        for feed, its_months in months.items():
            heads[feed] = {"_id": feed, "m": {m: _rolled(heads[_month_head(feed, m)]["b"]) for m in its_months}}
        for docs in (list(buckets.values()), list(heads.values())):
            for part in chunks(docs, WRITE_CHUNK):
                self.collection.insert_many(part, ordered=False)
        return sum(b["n"] for b in buckets.values())

    # -- reads --------------------------------------------------------------------------------------

    def _top(self, feed: str) -> dict[str, int]:
        """A split list's head: month -> ``Σv << 20 | Σn`` of every month with entries. A head
        written before the split (its days in ``b``) is split first (once; idempotent)."""
        head = self.collection.find_one({"_id": feed}) or {}
        if head.get("b"):
            self._split_head(feed, head["b"])
            head = self.collection.find_one({"_id": feed}) or {}
        return {month: int(stamp) for month, stamp in (head.get("m") or {}).items() if int(stamp) & _N_MASK}

    def _split_head(self, feed: str, days: dict[str, Any]) -> None:
        """Move a head's days into month heads (an upgrade of a list written before the split).
        Every step is a ``$max``, so readers splitting it at once agree; writers since the
        upgrade write the month heads only, so the old days can go."""
        stamps = {slot: int(stamp) for slot, stamp in days.items()}
        self._publish_many({feed: stamps})
        self.collection.update_one({"_id": feed}, {"$unset": {"b": ""}})

    def _days(self, feed: str, months: dict[str, int]) -> dict[str, int]:
        """The day stamps of these months of a split list (``months``: month -> the state its
        head shows), from memory when read before at that state."""
        out: dict[str, int] = {}
        wanted = []
        for month, stamp in months.items():
            cached = self._months.get(_month_head(feed, month), stamp)
            if cached is None:
                wanted.append(month)
            else:
                out.update(cached)
        found = find_by_ids(self.collection, [_month_head(feed, m) for m in wanted], {"b": 1})
        for month in wanted:
            days = {slot: int(stamp) for slot, stamp in ((found.get(_month_head(feed, month)) or {}).get("b") or {}).items()}
            self._months.put(_month_head(feed, month), _rolled(days), list(days.items()))
            out.update(days)
        return {slot: stamp for slot, stamp in out.items() if stamp & _N_MASK}

    def _stamps(self, feed: str) -> dict[str, int]:
        """Slot -> ``v << 20 | n`` of every bucket of ``feed`` with entries."""
        if self._split(feed):
            return self._days(feed, self._top(feed))
        head = self.collection.find_one({"_id": feed}) or {}
        return {slot: int(stamp) for slot, stamp in (head.get("b") or {}).items() if int(stamp) & _N_MASK}

    def _slots(self, feed: str) -> dict[str, int]:
        return {slot: stamp & _N_MASK for slot, stamp in self._stamps(feed).items()}

    def count(self, feed: str) -> int:
        if self._split(feed):
            return sum(stamp & _N_MASK for stamp in self._top(feed).values())
        return sum(self._slots(feed).values())

    def _walk(self, feed: str, descending: bool, edge: str | None) -> tuple[int, Iterator[tuple[str, int]]]:
        """The list's count, and its buckets with entries (slot, state) in page order from the
        ``edge`` slot on (inclusive). A split list reads its month heads as the walk reaches them."""
        def kept(slots: Iterable[str], edge: str | None) -> list[str]:
            order = sorted(slots, reverse=descending)
            return order if edge is None else [s for s in order if (s <= edge if descending else s >= edge)]

        if not self._split(feed):
            stamps = self._stamps(feed)
            return sum(s & _N_MASK for s in stamps.values()), ((s, stamps[s]) for s in kept(stamps, edge))
        months = self._top(feed)

        def days() -> Iterator[tuple[str, int]]:
            for month in kept(months, edge and edge[:7]):
                stamps = self._days(feed, {month: months[month]})
                yield from ((s, stamps[s]) for s in kept(stamps, edge))
        return sum(s & _N_MASK for s in months.values()), days()

    def page(self, feed: str, first: Any = None, after: str | None = None, descending: bool = True,
             where: Callable[[dict], bool] | None = None) -> dict[str, Any]:
        """One page of ``feed`` by time (then id), newest first unless ``descending`` is False.

        Without ``where`` it reads the head and the few buckets the page needs. ``where`` keeps
        only the entries whose data it accepts (a status, a priority) and reads the whole list to
        count them: use it on lists a person or a queue owns, never on a company-wide one.
        Returns ``{"ids", "entries", "cursors", "page_info", "total_count"}``, the shape of
        :func:`shared.pagination.paginate` with ids instead of documents.
        """
        size = page_size(first)
        cursor = _after(after)
        if where is not None:
            stamps = self._stamps(feed)
            matching = [e for e in self._read(feed, sorted(stamps, reverse=descending), stamps) if where(e.get("d") or {})]
            return page_of(matching, size, cursor, descending)
        edge = _slot_of(feed, self.slots)(cursor[0]) if cursor is not None else None
        total, slots = self._walk(feed, descending, edge)
        found: list[dict] = []
        while len(found) <= size:
            # As many buckets as the page needs by their counts (at least one), in one $in.
            batch: list[tuple[str, int]] = []
            want = size + 1 - len(found)
            while not batch or want > 0:
                step = next(slots, None)
                if step is None:
                    break
                batch.append(step)
                want -= step[1] & _N_MASK
            if not batch:
                break
            read = self._read_buckets([(f"{feed}|{slot}", stamp) for slot, stamp in batch])
            found.extend(e for entries in read.values() for e in entries if _beyond(e, cursor, descending))
        return page_of(found, size, None, descending, total)

    def _read(self, feed: str, slots: Sequence[str], stamps: dict[str, int] | None = None) -> list[dict]:
        """The entries of these buckets of ``feed`` (see :meth:`_read_buckets`)."""
        read = self._read_buckets([(f"{feed}|{slot}", (stamps or {}).get(slot)) for slot in slots])
        return [e for entries in read.values() for e in entries]

    def _read_buckets(self, buckets: Sequence[tuple[str, int | None]]) -> dict[str, list[dict]]:
        """The entries of these buckets (``(bucket id, the state its head shows)``), by bucket.
        A bucket read before at the state its head shows comes from memory (past days and
        months rarely change: a page of the company feed then reads the head and at most
        today's bucket)."""
        out: dict[str, list[dict]] = {}
        wanted = []
        for bucket_id, stamp in buckets:
            cached = self._cache.get(bucket_id, stamp) if stamp is not None else None
            if cached is None:
                wanted.append(bucket_id)
            else:
                out[bucket_id] = cached
        for ids in chunks(wanted, 100):
            for bucket_id, bucket in find_by_ids(self.collection, ids, {"e": 1, "n": 1, "v": 1}).items():
                entries = [_unpack(i, value) for i, value in (bucket.get("e") or {}).items()]
                self._cache.put(bucket_id, (int(bucket.get("v", 0)) << _N_BITS) | int(bucket.get("n", 0)), entries)
                out[bucket_id] = entries
        return out

    def entries(self, feed: str) -> list[dict]:
        """Every entry of ``feed`` (a person-sized list; tools and tests)."""
        return self._read(feed, sorted(self._slots(feed)))

    def entries_of(self, feeds: Sequence[str]) -> dict[str, list[dict]]:
        """Every entry of each of these (person-sized) lists: their heads in one ``$in``, their
        buckets in ``$in`` reads of 100, the unchanged ones from memory."""
        feeds = list(dict.fromkeys(feeds))
        wanted: list[tuple[str, int | None]] = []
        owner: dict[str, str] = {}
        heads = find_by_ids(self.collection, [f for f in feeds if not self._split(f)], {"b": 1})
        for feed in feeds:
            stamps = self._stamps(feed) if self._split(feed) else (heads.get(feed) or {}).get("b") or {}
            for slot, stamp in stamps.items():
                if int(stamp) & _N_MASK:
                    wanted.append((f"{feed}|{slot}", int(stamp)))
                    owner[f"{feed}|{slot}"] = feed
        out: dict[str, list[dict]] = {feed: [] for feed in feeds}
        for bucket_id, entries in self._read_buckets(wanted).items():
            out[owner[bucket_id]].extend(entries)
        return out


def _after(after: str | None) -> tuple[datetime, str] | None:
    """The (time, id) a page's ``after`` cursor names."""
    if not after:
        return None
    raw_at, raw_id = decode_cursor(after, 2)
    if not isinstance(raw_at, datetime) or not isinstance(raw_id, str):
        raise BadInput("bad_cursor", "the cursor is not one this list gave out", field="after")
    return utc(raw_at), raw_id


def _beyond(entry: dict, cursor: tuple[datetime, str] | None, descending: bool) -> bool:
    if cursor is None:
        return True
    key = (entry["t"], entry["i"])
    return key < cursor if descending else key > cursor


def page_of(entries: Iterable[dict], first: Any, after: str | tuple[datetime, str] | None = None,
            descending: bool = True, total: int | None = None) -> dict[str, Any]:
    """A page of entries already in memory (``{"i", "t", "d"}``, e.g. from several lists), in
    the shape and with the cursors of :meth:`FeedStore.page`. ``total``: the count to report
    (by default, how many ``entries`` there are)."""
    size = page_size(first)
    entries = list(entries)
    cursor = _after(after) if isinstance(after, str) or after is None else after
    found = [e for e in entries if _beyond(e, cursor, descending)]
    found.sort(key=lambda e: (e["t"], e["i"]), reverse=descending)
    has_next = len(found) > size
    found = found[:size]
    cursors = [encode_cursor([e["t"], e["i"]]) for e in found]
    return {"ids": [e["i"] for e in found], "entries": found, "cursors": cursors,
            "page_info": {"has_next_page": has_next, "end_cursor": cursors[-1] if cursors else None},
            "total_count": len(entries) if total is None else total}


class _BucketCache:
    """Buckets this process read, each under its own state (``v << 20 | n`` read with it).

    A page uses a copy only when the list's head shows exactly that state for the slot. Every
    change of a bucket (add, remove, put) raises its ``v``, and the writer then raises the head,
    so a changed bucket is never served from here; a head a crash left behind its bucket
    matches no copy (the bucket is read) until the next write to that list mends it. Least
    recently used buckets go first beyond ``limit`` entries; entries are shared, never changed."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[str, tuple[int, list[dict]]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # the services answer on several threads

    def get(self, bucket_id: str, stamp: int | None) -> list[dict] | None:
        with self._lock:
            hit = self._items.get(bucket_id)
            if hit is None or hit[0] != stamp:
                return None
            self._items.move_to_end(bucket_id)
            return hit[1]

    def put(self, bucket_id: str, stamp: int, entries: list[dict]) -> None:
        if len(entries) * 4 > self.limit:
            return
        with self._lock:
            old = self._items.pop(bucket_id, None)
            if old is not None:
                self._size -= len(old[1])
            self._items[bucket_id] = (stamp, entries)
            self._size += len(entries)
            while self._size > self.limit:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= len(dropped)


def in_order(ids: Sequence[str], found: dict[str, dict]) -> list[dict]:
    """Documents read by id (``find_by_ids``), in the page's order, skipping any that vanished."""
    return [found[i] for i in ids if i in found]
