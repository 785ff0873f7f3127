"""The kudos read models: the feeds, kept by the write path and read by ``_id`` (shared/feeds.py).

Lists, in the ``feeds`` collection:

- ``all``: the company feed, in day buckets (a busy list): public kudos only;
- ``to:<person id>``: the kudos a person received, in month buckets;
- ``from:<person id>``: the kudos a person gave, in month buckets.

Each entry is the kudos id at its ``created_at``; a private kudos's entries carry who is in it
(``{w: [giver, *recipients]}``), so a page of someone's list keeps them only for a reader who
may see them (docs/security.md) without reading the kudos. Giving adds the entries right after the kudos
document (with its ``kudos.given`` event in the outbox) is stored, before the answer, so the
giver sees their kudos at once. Add-ons do not change which lists a kudos is on.

Crash safety: a process that dies between the kudos insert and the feed adds leaves the kudos
with its event still pending, and no notice to the relay (that comes after the adds). The
relay's safety-net search for pending documents (at start, then every 10 minutes) hands what
it finds to :meth:`KudosFeeds.recover` before publishing: the ``kudos.given`` event in the
outbox names the kudos, the giver, the recipients and the time, enough to add the entries
again (adds are idempotent). So "outbox cleared" implies "on the feeds".

Upgrade: a database written before the feeds existed has kudos and no lists. ``meta`` holds
``{_id: "read_models", version}``; at start, if the version is older than
:data:`READ_MODELS_VERSION`, the process builds the lists in the background
(:class:`FeedBuilder`) from one scan of the kudos collection (``FeedStore.add_many``, which
counts an entry once even when a live give or the relay's recovery adds it at the same
moment), then stores the version. Until the build is done, feed reads take the old way (a
query on the kudos collection: right, and slow at size). Later starts read one document by
``_id``. Two processes starting on the same old database both build (the result is the same;
the work is done twice).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Iterable, Iterator

from pymongo.collection import Collection

from shared.bus.outbox import pending_events
from shared.clock import Clock, as_utc, utc
from shared.feeds import DAY, Entry, FeedStore
from shared.events import Envelope

log = logging.getLogger(__name__)

READ_MODELS_VERSION = 1
META_ID = "read_models"
UPGRADE_BATCH = 10_000  # kudos per add_many while building from history (bounds memory)


def feeds_of(giver_id: str, recipient_ids: Iterable[str], private: bool = False) -> list[str]:
    """The lists a kudos belongs on (a private one: not the company feed)."""
    people = [f"from:{giver_id}", *(f"to:{r}" for r in dict.fromkeys(recipient_ids))]
    return people if private else ["all", *people]


def entry_of(kudos_id: str, giver_id: str, recipient_ids: Iterable[str], at: datetime, private: bool = False) -> Entry:
    return Entry(kudos_id, utc(at), {"w": [giver_id, *dict.fromkeys(recipient_ids)]} if private else None)


def person_feed(person_id: str, direction: str) -> str:
    return f"to:{person_id}" if direction == "received" else f"from:{person_id}"


class KudosFeeds:
    def __init__(self, collection: Collection, meta: Collection):
        self.store = FeedStore(collection, slots={"all": DAY})
        self.meta = meta
        self.built = threading.Event()  # the lists hold every kudos (set at start, or by the build)

    # -- writes ------------------------------------------------------------------------------

    def add(self, kudos_id: str, giver_id: str, recipient_ids: Iterable[str], at: datetime, private: bool = False) -> None:
        """Put one kudos on its lists (idempotent; the give path)."""
        entry = entry_of(kudos_id, giver_id, recipient_ids, at, private)
        for feed in feeds_of(giver_id, recipient_ids, private):
            self.store.add(feed, entry)

    def add_many(self, kudos: Iterable[dict[str, Any]]) -> int:
        """Bulk form for imports and the upgrade: ``kudos`` are documents (``_id``,
        ``giver_id``, ``recipient_ids``, ``created_at``). Returns the entries added."""
        return self.store.add_many(self._entries(kudos))

    @staticmethod
    def _entries(kudos: Iterable[dict[str, Any]]) -> Iterator[tuple[str, Entry]]:
        for doc in kudos:
            private = bool(doc.get("private"))
            entry = entry_of(doc["_id"], doc["giver_id"], doc["recipient_ids"], doc["created_at"], private)
            for feed in feeds_of(doc["giver_id"], doc["recipient_ids"], private):
                yield feed, entry

    def recover(self, _collection: Collection, docs: list[dict[str, Any]]) -> None:
        """The relay's ``on_scan`` hook: put the kudos whose ``kudos.given`` is still pending on
        their lists (a process may have died between the insert and the feed adds)."""
        found = []
        for doc in docs:
            for raw in pending_events(doc):
                if raw.get("type") != "kudos.given":
                    continue
                data = Envelope.from_dict(raw).data
                found.append({"_id": data["kudos_id"], "giver_id": data["giver_id"], "recipient_ids": data["recipient_ids"],
                              "created_at": as_utc(data["at"]), "private": bool(data.get("private"))})
        if found:
            added = self.add_many(found)
            if added:
                log.warning("kudos feeds: re-projected kudos left pending by an earlier process",
                            extra={"kudos": len(found), "entries": added})

    # -- reads -------------------------------------------------------------------------------

    def page(self, feed: str, first: Any = None, after: str | None = None, where=None) -> dict[str, Any]:
        return self.store.page(feed, first, after, descending=True, where=where)

    # -- upgrade of data written before the feeds ---------------------------------------------

    def version(self) -> int:
        doc = self.meta.find_one({"_id": META_ID}) or {}
        return int(doc.get("version") or 0)

    def prepare(self) -> bool:
        """At start, before serving: True if the lists are built (one read by ``_id``)."""
        if self.version() >= READ_MODELS_VERSION:
            self.built.set()
        return self.built.is_set()

    def upgrade(self, kudos: Collection, clock: Clock, stopping: threading.Event | None = None) -> int | None:
        """Build the lists from the kudos collection (one scan), then store the version; None
        if there was nothing to do (or it was asked to stop). Kudos given meanwhile are added by
        their writers too: ``add_many`` counts an entry two writers add at once only once."""
        if self.prepare():
            return None
        log.info("kudos feeds: building the read models from the kudos collection (once)")
        added, batch, seen = 0, [], 0
        for doc in kudos.find({}, {"giver_id": 1, "recipient_ids": 1, "created_at": 1, "private": 1}):
            batch.append(doc)
            seen += 1
            if len(batch) >= UPGRADE_BATCH:
                if stopping is not None and stopping.is_set():
                    return None  # the next start builds again (adds skip what is there)
                added += self.add_many(batch)
                batch = []
        if batch:
            added += self.add_many(batch)
        self.meta.update_one({"_id": META_ID}, {"$max": {"version": READ_MODELS_VERSION},
                                                "$set": {"built_at": clock.now(), "kudos": seen}}, upsert=True)
        self.built.set()
        log.info("kudos feeds: read models built", extra={"kudos": seen, "entries": added})
        return seen


class FeedBuilder:
    """Builds the feeds of an older database in the background (a worker of the runtime), so a
    process with a year of history to project is up and ready at once; until it is done, feed
    reads take the old way (a query on the kudos collection: right, and slow at size)."""

    def __init__(self, feeds: KudosFeeds, kudos: Collection, clock: Clock):
        self.feeds, self.kudos, self.clock = feeds, kudos, clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stopping.is_set() and not self.feeds.built.is_set():
            try:
                self.feeds.upgrade(self.kudos, self.clock, self._stopping)
            except Exception as exc:  # noqa: BLE001 - the database may be away: try again
                log.warning("kudos feeds: building the read models failed, will retry", extra={"error": repr(exc)})
                self._stopping.wait(5.0)

    def start(self) -> None:
        if self.feeds.built.is_set():
            return
        self._thread = threading.Thread(target=self._run, name="feed-builder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
