"""A person's ledger list as pages written once (services/recognition/points/ledger_pages.py),
on the real FerretDB: the newest entries kept in the index until they fill a page, pages merged
level by level, a page of the list read across pages that arrived out of time order, a batch
delivered again (grouped otherwise) counted once."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.recognition.points.ledger_pages import INLINE_MAX, MERGE_AT, LedgerPages, empty_index, sort_key
from shared.db import connect, disconnect

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def pages(settings):
    db = connect(settings, "points")
    yield LedgerPages(db["ledger_pages"])
    disconnect()


def write(pages: LedgerPages, index: dict, entries: list[tuple[str, str, int]], person: str = "pia") -> dict:
    """One applier batch for one person: the page, the merges, the index written, the merged pages dropped."""
    indexes = pages.add({person: (index, entries)})
    if person not in indexes:
        return index
    replaced = pages.merge(indexes)
    pages.drop_pages(replaced)
    return indexes[person]


def read_all(pages: LedgerPages, index: dict, first: int) -> list[str]:
    out, after = [], None
    while True:
        page = pages.page(index, first=first, after=after)
        assert page["total_count"] == index["n"]
        out += page["ids"]
        if not page["page_info"]["has_next_page"]:
            return out
        after = page["page_info"]["end_cursor"]


def test_pages_merge_by_level_and_any_page_of_the_list_is_newest_first(pages):
    rng = random.Random(7)
    index, offset, expected = empty_index(), 0, {}
    # 600 batches of 1-3 entries, some dated before entries already written (an import of
    # history after live thanks): the list is still newest first by time, then id, whether an
    # entry is in a page or still in the index.
    for batch in range(600):
        entries = []
        for _ in range(rng.randint(1, 3)):
            at = T0 + timedelta(minutes=rng.randint(0, 5000))
            entry_id = f"e{offset:04d}"
            expected[entry_id] = sort_key(at, entry_id)
            entries.append((expected[entry_id], "0", offset))
            offset += 1
        index = write(pages, index, entries)
        # Merged level by level: never MERGE_AT pages left on one level.
        levels = [page[4] for page in index["pages"]]
        assert all(levels.count(level) < MERGE_AT for level in set(levels)), levels
        # The newest entries wait in the index until there are INLINE_MAX: then one page.
        assert len(index["k"]) < INLINE_MAX and index["n"] == sum(p[1] for p in index["pages"]) + len(index["k"])
        if batch in (0, 1, 299):
            wanted = sorted(expected, key=lambda e: expected[e], reverse=True)
            assert read_all(pages, index, 3) == wanted, batch
    assert index["n"] == len(expected) and max(levels) >= 2 and len(index["pages"]) < 3 * MERGE_AT
    # Level-0 pages hold INLINE_MAX entries or more: a page per person per batch no more.
    assert all(page[1] >= INLINE_MAX for page in index["pages"] if page[4] == 0)
    wanted = sorted(expected, key=lambda e: expected[e], reverse=True)
    for first in (3, 20, 100):
        assert read_all(pages, index, first) == wanted, first
    # Nothing is left of the pages merged away.
    stored = {doc["_id"] for doc in pages.collection.find({}, {"_id": 1})}
    assert stored == {page[0] for page in index["pages"]}


def test_a_batch_delivered_again_grouped_otherwise_is_counted_once(pages):
    index = write(pages, empty_index(), [(sort_key(T0, "a0"), "1", 10)])
    batch = [(sort_key(T0 + timedelta(minutes=i), f"a{i}"), "1", 10 + i) for i in range(1, 4)]
    # The first delivery's page is written, then the process dies before its state is.
    pages.add({"pia": (index, batch[:2])})
    # Delivered again with one more entry: the same page, now the union, counted once.
    index = write(pages, index, batch)
    assert index["n"] == 4 and index["a"] == {"1": 13}
    assert read_all(pages, index, 3) == ["a3", "a2", "a1", "a0"]
    # Delivered again after the state was written: nothing new.
    assert write(pages, index, batch) == index


def test_a_page_written_before_a_crash_and_delivered_again_grouped_otherwise_is_counted_once(pages):
    # INLINE_MAX - 1 entries wait in the index; the next batch of two fills a page.
    index = write(pages, empty_index(), [(sort_key(T0 + timedelta(minutes=i), f"a{i}"), "1", i) for i in range(INLINE_MAX - 1)])
    assert index["pages"] == [] and len(index["k"]) == INLINE_MAX - 1
    batch = [(sort_key(T0 + timedelta(hours=1, minutes=i), f"b{i}"), "1", 100 + i) for i in range(3)]
    pages.add({"pia": (index, batch[:2])})  # the page is inserted, then the process dies before its state is written
    index = write(pages, index, batch)  # delivered again with one more: the same page, the union
    assert index["k"] == [] and [p[1] for p in index["pages"]] == [INLINE_MAX + 2] and index["n"] == INLINE_MAX + 2
    assert read_all(pages, index, 4) == ["b2", "b1", "b0", *[f"a{i}" for i in reversed(range(INLINE_MAX - 1))]]
    assert write(pages, index, batch) == index


def test_a_cursor_from_another_list_is_refused(pages):
    from shared.errors import BadInput

    index = write(pages, empty_index(), [(sort_key(T0, "a0"), "0", 0)])
    with pytest.raises(BadInput):
        pages.page(index, first=5, after="bm90IGEgY3Vyc29y")
