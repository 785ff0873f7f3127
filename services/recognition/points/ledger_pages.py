"""A person's ledger list: pages written once, indexed in the person's points state.

What a person's ledger shows (entries with points, and capped ones) newest first, read by
``_id`` only. The applier is the one writer of a person (state.py), so the list needs no
read-modify-write in FerretDB: each batch **inserts** one page per person it gave visible
entries (``ledger_pages``, ``<person>|<partition>-<first offset>``: the entries' sort keys as
one JSON string), and the person's state records the page (its size, newest and oldest key)
with the rest of the batch's change. An insert costs FerretDB a fifteenth of an update; the
day-bucket lists this replaces read, updated and raised a head for every person a batch
touched (half of the points process's FerretDB time in a backlog, docs/performance.md).

A person's newest entries wait in the index itself (``k``, at most ``INLINE_MAX`` keys) and go
into a page of their own only when there are ``INLINE_MAX`` of them: with a company's people
each thanked about once a batch, a page per person per batch was a page (and, eight batches
later, a merge) per entry, as many FerretDB writes as the ledger itself. The keys in the index
travel in the person's changelog record with the rest of their state, so they are as durable.

Pages of one level are merged into one page of the next when there are ``MERGE_AT`` of them
(like an LSM tree's levels), so a person's index stays small: a few pages per level, levels
growing as the log of their entries. A merged page gets a fresh id; the pages it replaces are
deleted after the state naming it is written (a crash in between leaves garbage, never a gap).

Replays: a page's id comes from the batch's first entry for the person, so a batch delivered
again writes the same page; when its insert is refused, the page is read and written as the
union (a replay may be grouped differently), and the offsets it holds count as applied. Keys
still in the index are skipped by the same offsets (``a``), written with them.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson
from pymongo import UpdateOne
from pymongo.collection import Collection

from shared.clock import utc
from shared.db import chunks, find_by_ids, insert_new
from shared.pagination import decode_cursor, encode_cursor, page_size

MERGE_AT = 8  # pages of one level merged into one page of the next
INLINE_MAX = 8  # a person's newest entries kept in their index (``k``) until there are this many: then a page
FOLDED_LEVEL = 3  # the level of a page folded from an older store's ledger (merged after 8 of them)
MARKER = "~pages:v1"  # the store's ledger lists are pages (a new store, or folded from the ledger)
SEP = "|"


def sort_key(at: datetime, entry_id: str) -> str:
    """An entry's place in a person's ledger: time (to the millisecond, as the ledger stores
    it), then id; strings that sort as they do."""
    at = utc(at)
    return (f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}"
            f".{at.microsecond // 1000:03d}{SEP}{entry_id}")


def entry_of(key: str) -> str:
    return key.split(SEP, 1)[1]


def empty_index() -> dict[str, Any]:
    """A person's ledger index as kept in their state: ``n`` entries, ``pages`` as
    ``[page id, entries, newest key, oldest key, level]``, ``k`` the keys not in a page yet
    (newest first; an index from before them has none), ``a`` offsets applied per partition."""
    return {"n": 0, "pages": [], "k": [], "a": {}}


def _count(index: dict[str, Any]) -> int:
    """An index's entries (its ``n``): its pages' and the keys it holds itself."""
    return sum(p[1] for p in index["pages"]) + len(index.get("k") or ())


class LedgerPages:
    def __init__(self, collection: Collection):
        self.collection = collection

    def marked(self) -> bool:
        return self.collection.find_one({"_id": MARKER}, {"_id": 1}) is not None

    def mark(self) -> None:
        self.collection.update_one({"_id": MARKER}, {"$set": {"at": datetime.now(timezone.utc)}}, upsert=True)

    def drop(self) -> None:
        self.collection.drop()

    def folded(self, person_id: str, keys: list[str]) -> dict[str, Any]:
        """A person's whole ledger as one page (an older store's, folded once); their index."""
        keys = sorted(set(keys), reverse=True)
        page_id = f"{person_id}{SEP}folded"
        if insert_new(self.collection, [{"_id": page_id, "e": json.dumps(keys), "o": {}}]):
            self.collection.update_one({"_id": page_id}, {"$set": {"e": json.dumps(keys)}})  # folded before: the same again
        return {"n": len(keys), "pages": [[page_id, len(keys), keys[0], keys[-1], FOLDED_LEVEL]] if keys else [], "a": {}}

    # -- writing (the applier, for the people it owns) --------------------------------------------

    def add(self, batch: dict[str, tuple[dict[str, Any], list[tuple[str, str, int]]]]) -> dict[str, dict[str, Any]]:
        """Add each person's new entries: ``person -> (their index, [(sort key, partition,
        offset)])``; return the people's new indexes (to be written with their state). Entries
        at or before the offsets an index has applied are skipped (a replay). The new keys join
        the index's own (``k``); once there are ``INLINE_MAX``, they are inserted as one page."""
        pages: dict[str, dict[str, Any]] = {}
        listed: dict[str, list[str]] = {}  # page id -> its keys, newest first (what "e" holds)
        indexes: dict[str, dict[str, Any]] = {}
        for person_id, (index, entries) in batch.items():
            applied = index.get("a") or {}
            todo = [(key, partition, offset) for key, partition, offset in entries if applied.get(partition, -1) < offset]
            if not todo:
                continue
            offsets: dict[str, int] = {}
            for _, p, o in todo:
                offsets[p] = max(offsets.get(p, -1), o)
            keys = sorted({*(index.get("k") or ()), *(key for key, _, _ in todo)}, reverse=True)
            new = {"pages": [list(p) for p in index.get("pages") or []], "k": [], "a": dict(applied)}
            for partition, offset in offsets.items():
                new["a"][partition] = max(new["a"].get(partition, -1), offset)
            indexes[person_id] = new
            if len(keys) < INLINE_MAX:
                new["k"] = keys
                new["n"] = _count(new)
                continue
            _, partition, offset = todo[0]
            page_id = f"{person_id}{SEP}{partition}-{offset}"
            pages[page_id] = {"_id": page_id, "e": orjson.dumps(keys).decode(), "o": offsets}
            listed[page_id] = keys
            new["_page"] = page_id
        refused = insert_new(self.collection, list(pages.values()))
        if refused:
            self._union(pages, refused, listed)
        for person_id, index in indexes.items():
            if "_page" not in index:
                continue
            page = pages[index.pop("_page")]
            keys = listed[page["_id"]]
            index["pages"] = [p for p in index["pages"] if p[0] != page["_id"]]  # a replay's page, now larger
            index["pages"].append([page["_id"], len(keys), keys[0], keys[-1], 0])
            index["n"] = _count(index)
            for partition, offset in page["o"].items():
                index["a"][partition] = max(index["a"].get(partition, -1), offset)
        return indexes

    def _union(self, pages: dict[str, dict[str, Any]], refused: set[str], listed: dict[str, list[str]]) -> None:
        """Pages written before (a batch delivered again): each becomes the union of both."""
        stored = find_by_ids(self.collection, sorted(refused))
        writes = []
        for page_id in refused:
            before = stored.get(page_id) or {}
            keys = sorted(set(json.loads(before.get("e") or "[]")) | set(json.loads(pages[page_id]["e"])), reverse=True)
            offsets = dict(before.get("o") or {})
            for partition, offset in pages[page_id]["o"].items():
                offsets[partition] = max(offsets.get(partition, -1), offset)
            pages[page_id] = {"_id": page_id, "e": orjson.dumps(keys).decode(), "o": offsets}
            listed[page_id] = keys
            writes.append(UpdateOne({"_id": page_id}, {"$set": {"e": pages[page_id]["e"], "o": offsets}}, upsert=True))
        for part in chunks(writes):
            self.collection.bulk_write(part, ordered=False)

    def merge(self, indexes: dict[str, dict[str, Any]]) -> list[str]:
        """Merge, in the given indexes, every level that has ``MERGE_AT`` pages into one page
        of the next level (inserted now; a merge that fills the next level goes on up); return
        the ids of the pages replaced, to delete once the indexes are written."""
        replaced: list[str] = []
        written: dict[str, list[str]] = {}  # pages merged in this call: their keys
        later: set[str] = set()  # people with a page not there (a crash's leftovers): merged another time
        while True:
            wanted: dict[str, list[list]] = {}  # person -> the pages of one full level
            for person_id, index in indexes.items():
                if person_id in later:
                    continue
                levels: dict[int, list[list]] = {}
                for page in index["pages"]:
                    levels.setdefault(int(page[4]), []).append(page)
                full = [pages for pages in levels.values() if len(pages) >= MERGE_AT]
                if full:
                    wanted[person_id] = min(full, key=lambda pages: pages[0][4])  # the lowest level first
            if not wanted:
                return replaced
            stored = {i: json.loads(doc.get("e") or "[]") for i, doc in find_by_ids(
                self.collection, [p[0] for pages in wanted.values() for p in pages if p[0] not in written]).items()}
            stored.update(written)
            new = []
            for person_id, pages in wanted.items():
                if any(p[0] not in stored for p in pages):
                    later.add(person_id)
                    continue
                index = indexes[person_id]
                keys = sorted({k for p in pages for k in stored[p[0]]}, reverse=True)
                page_id = f"{person_id}{SEP}m{uuid.uuid4().hex[:12]}"
                new.append({"_id": page_id, "e": json.dumps(keys), "o": {}})
                written[page_id] = keys
                ids = {p[0] for p in pages}
                index["pages"] = [p for p in index["pages"] if p[0] not in ids] + [
                    [page_id, len(keys), keys[0], keys[-1], int(pages[0][4]) + 1]]
                index["n"] = _count(index)
                replaced += sorted(ids)
            for part in chunks(new):
                self.collection.insert_many(part, ordered=False)

    def drop_pages(self, page_ids: Iterable[str]) -> None:
        for part in chunks(list(page_ids)):
            self.collection.delete_many({"_id": {"$in": part}})

    # -- reading ----------------------------------------------------------------------------------

    def page(self, index: dict[str, Any] | None, first: Any = 20, after: str | None = None) -> dict[str, Any]:
        """A page of a person's ledger, newest first: entry ids, ``page_info``, ``total_count``.
        Reads only the pages that can hold entries of this page (by the index's newest and
        oldest keys), by ``_id``."""
        size = page_size(first)
        below = None
        if after:
            at, entry_id = decode_cursor(after, 2)
            if not isinstance(at, datetime) or not isinstance(entry_id, str):
                decode_cursor("", 2)  # refused the same way as any cursor this list did not give out
            below = sort_key(at, entry_id)
        index = index or empty_index()
        pages = sorted((p for p in index.get("pages") or [] if below is None or p[3] < below), key=lambda p: p[2], reverse=True)
        # entry id -> key: the keys in the index itself first (not always the newest: history
        # imported after live thanks), then the pages that can hold entries of this page.
        found: dict[str, str] = {entry_of(key): key for key in index.get("k") or () if below is None or key < below}
        at = 0
        while at < len(pages):
            ranked = sorted(found.values(), reverse=True)
            if len(ranked) > size and pages[at][2] < ranked[size]:
                break  # no page left can hold an entry of this page
            # The next pages whose newest entry is above the page's last so far: read together.
            group = [pages[at]]
            while at + len(group) < len(pages) and len(group) < 4:
                group.append(pages[at + len(group)])
            at += len(group)
            for doc in find_by_ids(self.collection, [p[0] for p in group]).values():
                for key in json.loads(doc.get("e") or "[]"):
                    if below is None or key < below:
                        found[entry_of(key)] = key
        ranked = sorted(found.values(), reverse=True)
        shown = ranked[:size]
        return {
            "ids": [entry_of(key) for key in shown],
            "page_info": {"has_next_page": len(ranked) > size or at < len(pages),
                          "end_cursor": self.cursor(shown[-1]) if shown else None},
            "total_count": int(index.get("n") or 0),
        }

    @staticmethod
    def cursor(key: str) -> str:
        stamp, entry_id = key.split(SEP, 1)
        return encode_cursor([datetime.fromisoformat(stamp + "+00:00"), entry_id])
