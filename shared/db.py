"""MongoDB connections: one database per service, the same way everywhere.

Locally and in CI the server is FerretDB 1.24 on SQLite; production is MongoDB 7+. Code
sticks to what both do (see docs/architecture.md): single-document atomic writes, unique and
compound indexes, ``$inc``/``$set``/``$setOnInsert``/``$push``/``$addToSet``/``$pullAll``,
simple ``$match/$group($sum)/$sort`` pipelines. No transactions, no change streams.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

import mongoengine
import pymongo
from pymongo import monitoring
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.config import Settings

log = logging.getLogger(__name__)

__all__ = ["ID_CHUNK", "WRITE_CHUNK", "DuplicateKeyError", "chunks", "connect", "disconnect", "drop_retired_indexes", "find_by_ids", "insert_many_once",
           "insert_new", "insert_once", "is_transient", "mongo_client", "patient", "ping"]


def _client_options(settings: Settings) -> dict:
    return {
        "serverSelectionTimeoutMS": settings.mongo_timeout_ms,
        "connectTimeoutMS": settings.mongo_timeout_ms,
        "socketTimeoutMS": max(settings.mongo_timeout_ms * 6, 30_000),
        "tz_aware": True,
        "uuidRepresentation": "standard",
    }


def patient(seconds: float = 1800.0):
    """A block of reads allowed past the client's socket timeout: the once-only search of a
    whole collection (an upgrade of an old ``var/``), which on FerretDB answers its first
    batch only after it has decoded every document (a minute at a year's size on a busy
    machine). Every hot read stays bound by the client's timeouts."""
    return pymongo.timeout(seconds)


class DatabaseTimes(monitoring.CommandListener):
    """Where a process's database time goes: commands and seconds by command and collection,
    logged every ``every_s`` seconds (``INSIDETRACK_DB_PROFILE_S``) as one structured line
    (``database time``, the largest first, whatever the log level). For finding which writes cost a batch on FerretDB,
    which serializes writes: the sum over processes is its busy time."""

    def __init__(self, service: str, every_s: float):
        self.service, self.every_s = service, every_s
        self._lock = threading.Lock()
        self._target: dict[int, str] = {}
        self._times: dict[str, list] = {}
        self._since = time.monotonic()

    def started(self, event) -> None:
        target = event.command.get(event.command_name)
        if not isinstance(target, str):  # getMore names its cursor there, its collection beside it
            target = event.command.get("collection", "-")
        with self._lock:
            self._target[event.request_id] = f"{event.command_name} {target}"

    def succeeded(self, event) -> None:
        with self._lock:
            key = self._target.pop(event.request_id, event.command_name)
            figures = self._times.setdefault(key, [0, 0.0])
            figures[0] += 1
            figures[1] += event.duration_micros / 1e6
            if not self.every_s or time.monotonic() - self._since < self.every_s:
                return
        self.log(self.take())

    failed = succeeded

    def take(self) -> tuple[dict[str, list], float]:
        """The times since the last take (``"<command> <collection>" -> [commands, seconds]``)
        and the seconds they cover; starts over. (The benchmarks read it: ``every_s`` 0.)"""
        with self._lock:
            times, seconds = self._times, time.monotonic() - self._since
            self._times, self._since = {}, time.monotonic()
        return times, seconds

    def log(self, taken: tuple[dict[str, list], float]) -> None:
        times, seconds = taken
        top = sorted(times.items(), key=lambda kv: -kv[1][1])[:15]
        # At the level the process logs at, at least INFO: asked for by its own setting.
        log.log(max(logging.INFO, logging.getLogger().getEffectiveLevel()), "database time", extra={"service": self.service, "seconds": round(seconds, 1),
                                          "database_s": round(sum(t for _, t in times.values()), 2),
                                          "top": {k: [n, round(t, 2)] for k, (n, t) in top}})


def connect(settings: Settings, service: str, alias: str = "default") -> Database:
    """Connect mongoengine (under ``alias``) to the service's own database; return it."""
    listeners = [DatabaseTimes(service, settings.db_profile_s)] if settings.db_profile_s else []
    mongoengine.connect(
        db=settings.database(service), host=settings.mongo_uri, alias=alias, event_listeners=listeners,
        **_client_options(settings)
    )
    return mongoengine.get_db(alias)


def disconnect(alias: str = "default") -> None:
    mongoengine.disconnect(alias)


def mongo_client(settings: Settings) -> pymongo.MongoClient:
    """A plain client for tools and tests (rebuilds, checks); services use :func:`connect`."""
    return pymongo.MongoClient(settings.mongo_uri, **_client_options(settings))


def ping(db: Database) -> None:
    """Raise if the server does not answer ``ping``; used by readiness checks."""
    db.command("ping")


def insert_once(collection, document: dict) -> bool:
    """Insert ``document`` (whose ``_id`` is deterministic); False when it was already there.

    The standard idempotent effect for consumers: derive ``_id`` from the source event id, and
    a redelivered event becomes a no-op.
    """
    try:
        collection.insert_one(document)
        return True
    except DuplicateKeyError:
        return False


def _insert_part(collection, part: list[dict]) -> set[int]:
    """Insert one command's documents (unordered); the indexes of those refused because a
    document with their ``_id`` is there already (created meanwhile by another writer)."""
    try:
        collection.insert_many(part, ordered=False)
        return set()
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(err.get("code") != 11000 for err in errors):
            raise
        return {err["index"] for err in errors}
    except KeyError:  # FerretDB's incomplete reply to a bulk with refusals: one by one
        return {i for i, doc in enumerate(part) if not insert_once(collection, doc)}


def insert_new(collection, documents: list[dict]) -> set:
    """Insert documents that were missing when read, in commands of INSERT_CHUNK (unordered);
    the ids refused because another writer created them meanwhile. Every command is sent,
    whatever an earlier one refused."""
    refused: set = set()
    for part in chunks(documents, INSERT_CHUNK):
        refused |= {part[i]["_id"] for i in _insert_part(collection, part)}
    return refused


def insert_many_once(collection, documents: list[dict]) -> list[dict]:
    """Insert the documents (deterministic ids) in commands of INSERT_CHUNK; return those that
    were new."""
    stored = []
    for part in chunks(documents, INSERT_CHUNK):
        lost = _insert_part(collection, part)
        stored.extend(doc for i, doc in enumerate(part) if i not in lost)
    return stored


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "the database is unreachable right now", worth retrying."""
    return isinstance(exc, (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError))


# Bulk writes go in commands of at most this many operations. The local FerretDB lets one
# write command through at a time (it loses concurrent updates otherwise), so a thousand-
# document insert would hold every other writer back for its whole duration.
WRITE_CHUNK = 100
# Inserts go in commands of at most this many documents: our FerretDB build commits an insert
# command's documents 500 at a time (deploy/local/ferretdb/patches.json), and a commit of 100
# wrote about as many index pages to its WAL as a commit of 500 (random ids: a page each). A
# command of 500 ~1 KB documents holds other writers back ~25 ms.
INSERT_CHUNK = 500

# Reads of many documents by id go in `$in`s of at most this many ids: the local FerretDB (our
# patch) answers an `$in` of up to 1,000 ids from the `_id` index and scans beyond that.
ID_CHUNK = 1000


def chunks(items: list, size: int = WRITE_CHUNK):
    """Yield ``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def find_by_ids(collection, ids: Iterable, projection: dict | None = None) -> dict[Any, dict]:
    """The documents among ``ids`` (missing ones left out), by ``_id``, read in ``$in``s of
    ``ID_CHUNK`` ids: the filter the local FerretDB answers from its index."""
    found: dict[Any, dict] = {}
    for part in chunks(list(dict.fromkeys(ids)), ID_CHUNK):
        found.update((d["_id"], d) for d in collection.find({"_id": {"$in": part}}, projection))
    return found


def drop_retired_indexes(collection, first_fields: Iterable[str]) -> list[str]:
    """Drop the indexes of ``collection`` that start with one of ``first_fields``: ones an older
    version made for queries that now go by ``_id`` to read models. An index answers nothing
    then, but is kept up to date on every insert and update (on FerretDB, the requests' six made
    their inserts 40 % slower). Returns the names dropped."""
    retired = set(first_fields)
    dropped = [name for name, info in collection.index_information().items() if info["key"][0][0] in retired]
    for name in dropped:
        collection.drop_index(name)
    return dropped
