"""The requests service's read models: lists and timer buckets kept by the write path, read by ``_id``.

Our FerretDB answers only ``_id`` lookups from an index, so no read may filter, sort or count
the ``requests`` collection. Every write of a request (insert, command, timer) is followed by
its **projection** onto:

- **lists** (``shared.feeds``, collection ``request_lists``), each entry carrying the data a
  filter on that list may need (see :func:`listing`):

  ========================= ============== ==========================================
  list                      sorted by      holds
  ========================= ============== ==========================================
  ``by:<person>`` (YEAR)    submitted_at   a rep's requests (newest first)
  ``as:<person>``           needed_by      the requests a person is assigned to
  ``dept:<department>``     needed_by      a department's queue, all statuses
  ``open:<department>``     needed_by      its open requests (off when they leave OPEN)
  ``st:<department>:<s>``   needed_by      its requests in status ``s``
  ``all`` (DAY slots)       needed_by      every request (admin listing)
  ``allopen`` (DAY)         needed_by      every open request
  ``allst:<s>`` (DAY)       needed_by      every request in status ``s``
  ========================= ============== ==========================================

  :func:`choose_list` picks the list for a filter combination (the smallest that holds it)
  and filters the rest (priority, ...) on the entries' data;
- **cards** (collection ``request_cards``): each request as a list shows it (every field but
  its timeline: :func:`request_view`), packed in one JSON value with its version
  (``{_id, v, j}``). A page of a list reads its 20 cards by ``_id``, not the requests: FerretDB
  decodes a whole document to read any part of it, and its cost grows with the values in it (a
  year-old request, its lifecycle in its timeline, is ~40 fields and ~50 timeline values; its
  card is one). A card is written only over an older version's, so projections landing out of
  order never put an old one back;
- **timer buckets** (collection ``request_timers``): ``due|<hour>`` maps request id -> the
  next time one of its timers can fire. The sweeper reads the buckets from its cursor
  (``cursor``, the last swept hour) to now by ``_id``: an idle tick reads two small documents.

Crash safety: the state write sets ``lists_pending: true`` and ``unlist`` (the lists and timer
slot the request leaves), atomically with the state and its outbox events; the projector
clears the flag for that version after projecting (and projects again if a newer version was
written meanwhile, taking off whatever its stale projection put back). At start,
:meth:`RequestReadModels.recover` re-projects the documents still flagged (one search, like
the outbox relay's first); while running, the relay's safety-net search (hourly)
hands over the documents a dead writer left with unpublished events, and those still flagged
are re-projected too (another instance that died and is not restarted). Everything is
idempotent. An import of history writes its requests once, with nothing pending: their
events first, in insert-only documents of ``request_imports`` (journal-marked), then the
requests, then projects them in bulk (:meth:`RequestReadModels.project_imported`, then
:meth:`RequestReadModels.follow_newer` for any a live command changed meanwhile), publishes,
and empties those documents; a crash halfway leaves them marked, and the relay's safety net
hands them to ``RequestsService.recover_imports`` (projects what is stored, then publishes).

Upgrade: the document ``read_models`` (in ``counters``) holds the version of these read
models; a ``var/`` from an older version (before them, before the cards, before the reps' lists
moved to year buckets) is projected again once at start (one scan, bulk writes).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.requests import domain
from services.requests.domain import SupportRequest
from shared.bus.outbox import JOURNAL_GRACE_S
from shared.clock import utc
from shared.db import WRITE_CHUNK, chunks, find_by_ids, patient
from shared.feeds import DAY, YEAR, Entry, FeedStore

log = logging.getLogger(__name__)

READ_MODELS_VERSION = 3  # 2: the cards; 3: a rep's list in year buckets
VERSION_ID = "read_models"
PEOPLE_VERSION_ID = "people_version"
PENDING = "lists_pending"
UNLIST = "unlist"
DUE = "~due"  # the pseudo-list of the timer buckets
JOURNAL_MARGIN_S = 10.0  # of the journal's grace, kept for clocks apart and a slow read (follow_newer)
CURSOR_ID = "cursor"
MAX_SLOTS_PER_SWEEP = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# What the projection needs of a request document (never its timeline or outbox).
LISTING_FIELDS = {"timeline": 0, "outbox": 0}

Listing = dict[str, tuple[datetime, dict | None]]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def request_view(r: SupportRequest) -> dict[str, Any]:
    """A request as the API shows it, without its timeline: what a list shows (its card)."""
    return {
        "id": r.id, "number": r.number, "requester_id": r.requester_id, "department": r.department,
        "kind": r.kind, "title": r.title, "details": r.details, "customer": r.customer,
        "deal_name": r.deal_name, "deal_value": r.deal_value, "commitment": r.commitment,
        "needed_by": _iso(r.needed_by), "priority": r.priority, "rush_reason": r.rush_reason,
        "status": r.status, "outcome": r.outcome, "assignee_ids": list(r.assignee_ids),
        "submitted_at": _iso(r.submitted_at), "acknowledged_at": _iso(r.acknowledged_at),
        "delivered_at": _iso(r.delivered_at), "closed_at": _iso(r.closed_at), "cancelled_at": _iso(r.cancelled_at),
        "last_deal_update_at": _iso(r.last_deal_update_at),
        "notice_business_hours": r.notice_business_hours,
        "brief_complete": r.brief_complete, "brief_gaps": list(r.brief_gaps),
        "timers": {"overdue_at": _iso(r.overdue_at), "update_due_at": _iso(r.update_due_at), "info_due_at": _iso(r.info_due_at)},
        "version": r.version,
    }


def card_doc(r: SupportRequest) -> dict[str, Any]:
    return {"_id": r.id, "v": r.version, "j": json.dumps(request_view(r), separators=(",", ":"))}


def hour_slot(at: datetime) -> int:
    return int((utc(at) - _EPOCH).total_seconds() // 3600)


def next_due(r: SupportRequest) -> datetime | None:
    """The next moment one of the request's timers can fire (as ``fire_due_timers`` decides)."""
    due = []
    if r.is_open:
        due += [t for t in (r.overdue_at, r.update_due_at) if t is not None]
    if r.status == domain.WAITING_ON_REP and r.info_due_at is not None:
        due.append(r.info_due_at)
    return min(due) if due else None


def listing(r: SupportRequest) -> Listing:
    """Every list the request is on, with its time there and its data (and its timer slot).

    An entry carries only what a filter on that list may ask and the list does not imply
    (so a status change rewrites the person lists' entries, not the queues'): a person's lists
    ``{s: status, p: priority, d: department, a: assignees}`` (+ ``n: needed-by`` on the
    requester's, + ``r: requester`` on an assignee's: who may see it, and the order of a view
    merged from several lists, ``visibility.py``), the others ``{p: priority}``. Entries
    written before ``n`` and ``r`` were added are completed from their documents when read."""
    nb = utc(r.needed_by)
    mine = {"s": r.status, "p": r.priority, "d": r.department, "a": list(r.assignee_ids),
            "n": nb.isoformat(timespec="milliseconds")}
    theirs = {"s": r.status, "p": r.priority, "d": r.department, "a": list(r.assignee_ids), "r": r.requester_id}
    queue = {"p": r.priority}
    out: Listing = {f"by:{r.requester_id}": (utc(r.submitted_at), mine), f"dept:{r.department}": (nb, queue),
                    f"st:{r.department}:{r.status}": (nb, queue), "all": (nb, queue), f"allst:{r.status}": (nb, queue)}
    if r.status in domain.OPEN:
        out[f"open:{r.department}"] = (nb, queue)
        out["allopen"] = (nb, queue)
    for person_id in r.assignee_ids:
        out[f"as:{person_id}"] = (nb, theirs)
    due = next_due(r)
    if due is not None:
        out[DUE] = (utc(due), None)
    return out


def leaving(before: Listing | None, after: Listing) -> dict[str, datetime]:
    """The lists (and timer slot) ``before`` had that ``after`` does not, or at another time."""
    return {feed: at for feed, (at, _) in (before or {}).items() if feed not in after or after[feed][0] != at}


def unlist_value(drop: dict[str, datetime]) -> list[dict]:
    return [{"f": feed, "t": at} for feed, at in drop.items()]  # FerretDB stores no nested arrays


def unlist_of(doc: dict) -> dict[str, datetime]:
    return {item["f"]: utc(item["t"]) for item in doc.get(UNLIST) or []}


# -- choosing a list for a query ----------------------------------------------------------------

def choose_list(requester_id: str | None = None, assignee_id: str | None = None, department: str | None = None,
                status: str | None = None, open_only: bool = False, priority: str | None = None
                ) -> tuple[str, bool, Callable[[dict], bool] | None]:
    """(list, newest first?, filter on entry data or None) for a combination of filters.

    requester -> ``by:<r>`` (newest first); else assignee -> ``as:<a>``; else department ->
    ``st:<d>:<s>`` / ``open:<d>`` / ``dept:<d>``; else ``allst:<s>`` / ``allopen`` / ``all``.
    Whatever the list does not imply is filtered on its entries (bounded by that list: a
    person's, a queue's; a priority alone filters the department's or the company's list).
    """
    checks: list[Callable[[dict], bool]] = []
    person_list = bool(requester_id or assignee_id)
    if requester_id:
        feed, descending = f"by:{requester_id}", True
        if assignee_id:
            checks.append(lambda d: assignee_id in (d.get("a") or []))
    elif assignee_id:
        feed, descending = f"as:{assignee_id}", False
    elif department:
        descending = False
        feed = f"st:{department}:{status}" if status else (f"open:{department}" if open_only else f"dept:{department}")
    else:
        descending = False
        feed = f"allst:{status}" if status else ("allopen" if open_only else "all")
    if person_list:
        if department:
            checks.append(lambda d: d.get("d") == department)
        if status:
            checks.append(lambda d: d.get("s") == status)
        elif open_only:
            checks.append(lambda d: d.get("s") in domain.OPEN)
    if priority:
        checks.append(lambda d: d.get("p") == priority)
    where = (lambda d: all(check(d) for check in checks)) if checks else None
    return feed, descending, where


class RequestReadModels:
    """The projection of requests onto their lists and timer buckets, the upgrade and recovery."""

    def __init__(self, requests, lists, timers, counters, cards, journal=None):
        self.requests = requests
        self.journal = journal  # the requests' outbox journal: which ones may be flagged
        # A rep files tens of requests a year: their list in one bucket a year, so a page of it
        # reads one or two documents (in month buckets, a year's page read nine or ten).
        self.feeds = FeedStore(lists, slots={"all": DAY, "allopen": DAY, "allst": DAY, "by": YEAR})
        self.timers = timers
        self.counters = counters
        self.cards = cards

    # -- cards ------------------------------------------------------------------------------------

    def write_card(self, request: SupportRequest) -> None:
        """Write ``request``'s card unless one of its version or newer is there. (Not an
        upsert guarded by the version: FerretDB answers a bulk of those that all clash
        without what pymongo reads.)"""
        card = card_doc(request)
        for _ in range(2):
            if request.version > 1 and self.cards.update_one(
                    {"_id": request.id, "v": {"$lt": request.version}}, {"$set": {"v": card["v"], "j": card["j"]}}).matched_count:
                return
            try:
                self.cards.insert_one(card)
                return
            except DuplicateKeyError:
                if request.version == 1:
                    return  # there is no older version than the first
                # There is one: newer (the update matches nothing again) or older, just inserted.

    def write_cards(self, requests: Sequence[SupportRequest]) -> None:
        """Write many cards (an import, a build): inserted in bulk; the few already there are
        written one by one as :meth:`write_card` does."""
        by_id = {r.id: r for r in requests}
        for part in chunks([card_doc(r) for r in requests], WRITE_CHUNK):
            try:
                self.cards.insert_many(part, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                for error in exc.details["writeErrors"]:
                    self.write_card(by_id[part[error["index"]]["_id"]])

    def _fill_cards(self, requests: list[SupportRequest], fresh: bool) -> None:
        if requests and fresh:  # a build holding the lock, the collection dropped: nothing to clash with
            self.cards.insert_many([card_doc(r) for r in requests], ordered=False)
        elif requests:
            self.write_cards(requests)

    def cards_of(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The cards of ``ids`` in their order, by ``_id``; a request without one yet (its
        projection is still running, or was cut by a crash that recovery will finish) is
        read from its document. Ids of no request are left out."""
        from services.requests.repository import request_from_doc

        found = {i: json.loads(d["j"]) for i, d in find_by_ids(self.cards, ids).items()}
        missing = [i for i in ids if i not in found]
        if missing:
            for i, doc in find_by_ids(self.requests, missing, LISTING_FIELDS).items():
                found[i] = request_view(request_from_doc(doc))
        return [found[i] for i in ids if i in found]

    # -- projection -------------------------------------------------------------------------------

    def apply(self, request_id: str, target: Listing, before: Listing | None, drop: dict[str, datetime]) -> None:
        """Make the read models show ``target``: take the request off ``drop``'s lists, put it on
        (or update it on) every list of ``target`` that ``before`` did not have as it is."""
        adds, puts, removes, timer_ops = [], [], [], []
        for feed, at in drop.items():
            if feed == DUE:
                timer_ops.append(UpdateOne({"_id": f"due|{hour_slot(at)}"}, {"$unset": {f"e.{request_id}": ""}}))
            else:
                removes.append((feed, request_id, at))
        for feed, (at, data) in target.items():
            if before is not None and before.get(feed) == (at, data):
                continue
            if feed == DUE:
                # Never behind the sweeper's cursor (a writer on a clock in the past, an import of
                # history): there it would never be read. A removal that then looks in the slot of
                # its time misses it, and the sweeper drops that stale entry when it reads it.
                slot = max(hour_slot(at), self.cursor() or 0)
                timer_ops.append(UpdateOne({"_id": f"due|{slot}"}, {"$set": {f"e.{request_id}": at}}, upsert=True))
            elif before is not None and feed not in before:
                adds.append((feed, Entry(request_id, at, data)))  # new to this list: no need to look first
            else:
                puts.append((feed, Entry(request_id, at, data)))
        if timer_ops:  # in order: a move within one hour unsets, then sets
            self.timers.bulk_write(timer_ops, ordered=True)
        self.feeds.apply(adds, puts, removes)

    def project(self, request: SupportRequest, before: Listing | None, drop: dict[str, datetime]) -> None:
        """After storing ``request`` (its ``version`` is the stored one), bring the read models up to it."""
        target, version = listing(request), request.version
        self.apply(request.id, target, before, drop)
        self.write_card(request)
        for _ in range(20):
            cleared = self.requests.update_one({"_id": request.id, "version": version, PENDING: True},
                                               {"$set": {PENDING: False}})
            if cleared.modified_count:
                return
            doc = self.requests.find_one({"_id": request.id}, LISTING_FIELDS)
            if doc is None or doc.get("version", 0) == version:
                return  # another projector of this version cleared it
            # A newer version was stored meanwhile, and what this projection wrote may have
            # landed after its projection: project the newer one, and take off what was ours.
            from services.requests.repository import request_from_doc

            fresh = request_from_doc(doc)
            fresh_target = listing(fresh)
            self.apply(fresh.id, fresh_target, None, {**leaving(target, fresh_target), **unlist_of(doc)})
            self.write_card(fresh)
            target, version = fresh_target, fresh.version
        log.warning("request %s kept changing while projecting; recovery will finish it", request.id)

    def project_imported(self, requests: list[SupportRequest]) -> None:
        """Put many requests just inserted (an import of history) on their lists and timer
        buckets and their cards, in bulk: the list entries with ``FeedStore.add_many`` (one write per touched
        bucket, not several per request), the timer entries one write per hour bucket (never
        behind the sweeper's cursor, as :meth:`apply` files them). Idempotent: the recovery of
        an import that stopped runs it again (``RequestsService.recover_imports``)."""
        entries: list[tuple[str, Entry]] = []
        timers: dict[int, dict[str, datetime]] = {}
        cursor = self.cursor() or 0
        for request in requests:
            for feed, (at, data) in listing(request).items():
                if feed == DUE:
                    timers.setdefault(max(hour_slot(at), cursor), {})[request.id] = at
                else:
                    entries.append((feed, Entry(request.id, at, data)))
        self.feeds.add_many(entries)
        ops = [UpdateOne({"_id": f"due|{slot}"}, {"$set": {f"e.{i}": at for i, at in items.items()}}, upsert=True)
               for slot, items in timers.items()]
        for part in chunks(ops, WRITE_CHUNK):
            self.timers.bulk_write(part, ordered=False)
        self.write_cards(requests)

    def follow_newer(self, requests: Sequence[SupportRequest], since: float) -> int:
        """After :meth:`project_imported`: a request a live command changed meanwhile (stored at
        a newer version than the one projected) gets that version projected, and what the
        import's projection put back of the older one taken off (the command's own projection
        may have run before the import's). Returns how many.

        ``since``: the ``time.time()`` before the requests were inserted. A live command marks
        the request in the outbox journal before it writes, and no mark younger than
        ``JOURNAL_GRACE_S`` is taken off: within that time (less a margin for clocks), the
        requests to look at are the marked ones, one read of the journal; later, every version
        is read back (FerretDB decodes each whole document for it)."""
        from services.requests.repository import request_from_doc

        imported = {r.id: r for r in requests}
        candidates = list(imported)
        if self.journal is not None and time.time() - since < JOURNAL_GRACE_S - JOURNAL_MARGIN_S:
            marked = self.journal.marks()
            candidates = [i for i in candidates if i in marked]
        newer = [i for i, d in find_by_ids(self.requests, candidates, {"version": 1}).items()
                 if d.get("version") != imported[i].version]
        for request_id, doc in find_by_ids(self.requests, newer, LISTING_FIELDS).items():
            fresh = request_from_doc(doc)
            target = listing(fresh)
            self.apply(fresh.id, target, None, {**leaving(listing(imported[request_id]), target), **unlist_of(doc)})
            self.write_card(fresh)
        return len(newer)

    def recover(self, ids: list | None = None) -> int:
        """Re-project requests whose projection a crash interrupted: at start, those the outbox
        journal holds (``shared.bus.outbox``: marked before every write; one search for the
        flag instead while the journal is not started, an old ``var/``); later, the ones the
        relay's safety net hands over (``ids``: documents whose writer died before projecting)."""
        from services.requests.repository import request_from_doc

        started, marks = self.journal.read() if ids is None and self.journal is not None else (ids is not None, {})
        if not started:
            with patient():  # once, for an old var/
                docs = list(self.requests.find({PENDING: True}, LISTING_FIELDS))
        else:
            ids = list(marks) if ids is None else ids
            docs = [d for d in find_by_ids(self.requests, ids, LISTING_FIELDS).values() if d.get(PENDING)]
        for doc in docs:
            self.project(request_from_doc(doc), None, unlist_of(doc))
        if docs:
            log.info("re-projected %d requests a crash left pending", len(docs))
        return len(docs)

    # -- timers -------------------------------------------------------------------------------------

    def due(self, now: datetime) -> tuple[list[tuple[str, datetime, int]], int, int | None]:
        """(request id, due time, slot) of every timer entry due at ``now`` from the cursor on,
        the slot the cursor may move to when they are all handled, and the cursor now."""
        cursor_doc = self.timers.find_one({"_id": CURSOR_ID}) or {}
        now_slot = hour_slot(now)
        cursor = cursor_doc.get("h")
        # One hour back (a writer's clock a little behind); from now if the clock went back.
        start = min(now_slot, int(now_slot if cursor is None else cursor)) - 1
        end = min(now_slot, start + MAX_SLOTS_PER_SWEEP)
        ids = [f"due|{h}" for h in range(start, end + 1)]
        found: list[tuple[str, datetime, int]] = []
        for bucket_id, bucket in find_by_ids(self.timers, ids, {"e": 1}).items():
            slot = int(bucket_id.split("|", 1)[1])
            for request_id, at in (bucket.get("e") or {}).items():
                if utc(at) <= now:
                    found.append((request_id, utc(at), slot))
        found.sort(key=lambda f: f[1])
        return found, end, None if cursor is None else int(cursor)

    def advance(self, slot: int) -> None:
        self.timers.update_one({"_id": CURSOR_ID}, {"$max": {"h": slot}}, upsert=True)

    def cursor(self) -> int | None:
        doc = self.timers.find_one({"_id": CURSOR_ID})
        return None if doc is None else int(doc["h"])

    def drop_stale_timer(self, request_id: str, at: datetime, slot: int) -> None:
        """Take off an entry that no longer matches its request (only if it still says ``at``)."""
        self.timers.update_one({"_id": f"due|{slot}", f"e.{request_id}": at}, {"$unset": {f"e.{request_id}": ""}})

    # -- upgrade ------------------------------------------------------------------------------------

    def version(self) -> int:
        doc = self.counters.find_one({"_id": VERSION_ID}) or {}
        return int(doc.get("version", 0))

    def ensure_built(self, now: datetime, wait_s: float = 600.0) -> bool:
        """Build the read models from the documents once (an old ``var/``, or an empty one);
        True if this call built them. Several instances starting together: one builds (a lock
        document), the others wait for it."""
        if self.version() >= READ_MODELS_VERSION:
            return False
        lock_id = f"{VERSION_ID}_lock"
        deadline = time.monotonic() + wait_s
        fresh = True
        while True:
            try:
                self.counters.insert_one({"_id": lock_id, "at": now})
                break
            except Exception:  # noqa: BLE001 - DuplicateKeyError: another instance is building
                if self.version() >= READ_MODELS_VERSION:
                    return False
                if time.monotonic() >= deadline:
                    log.warning("the read-model build lock stayed taken; building anyway (adding to what is there)")
                    fresh = False
                    break
                time.sleep(0.5)
        try:
            self._build(now, fresh)
            self.counters.update_one({"_id": VERSION_ID}, {"$set": {"version": READ_MODELS_VERSION, "built_at": now}},
                                     upsert=True)
        finally:
            self.counters.delete_one({"_id": lock_id})
        return True

    def _build(self, now: datetime, fresh: bool) -> None:
        """One scan of the requests, then the lists, timer buckets and cards. ``fresh`` (this
        process holds the build lock, and nothing reads or writes the read models before the
        version is set): whatever an interrupted build left is dropped and everything is
        inserted; otherwise (the lock timed out) entries are added to what is there,
        idempotently."""
        from services.requests.repository import request_from_doc

        started = time.monotonic()
        entries: list[tuple[str, Entry]] = []
        timers: dict[int, dict[str, datetime]] = {}
        cards: list[SupportRequest] = []  # written a chunk at a time, not held for the whole scan
        count = 0
        if fresh:
            self.cards.drop()
        for doc in self.requests.find({}, LISTING_FIELDS):  # the one scan
            request = request_from_doc(doc)
            cards.append(request)
            if len(cards) == WRITE_CHUNK:
                self._fill_cards(cards, fresh)
                cards = []
            count += 1
            for feed, (at, data) in listing(request).items():
                if feed == DUE:
                    timers.setdefault(hour_slot(at), {})[request.id] = at
                else:
                    entries.append((feed, Entry(request.id, at, data)))
        self._fill_cards(cards, fresh)
        first = min([hour_slot(now), *timers])
        if fresh:
            self.feeds.collection.drop()
            self.timers.drop()
            added = self.feeds.fill(entries)
            docs = [{"_id": f"due|{slot}", "e": items} for slot, items in timers.items()]
            docs.append({"_id": CURSOR_ID, "h": first})
            for part in chunks(docs, WRITE_CHUNK):
                self.timers.insert_many(part, ordered=False)
        else:
            added = self.feeds.add_many(entries)
            ops = [UpdateOne({"_id": f"due|{slot}"}, {"$set": {f"e.{i}": at for i, at in items.items()}}, upsert=True)
                   for slot, items in timers.items()]
            for part in chunks(ops, WRITE_CHUNK):
                self.timers.bulk_write(part, ordered=False)
            if self.cursor() is None:
                self.timers.update_one({"_id": CURSOR_ID}, {"$setOnInsert": {"h": first}}, upsert=True)
            elif first < self.cursor():
                self.timers.update_one({"_id": CURSOR_ID}, {"$set": {"h": first}})
        log.info("read models built: %d requests, %d list entries, %d timer slots in %.1fs",
                 count, added, len(timers), time.monotonic() - started)

