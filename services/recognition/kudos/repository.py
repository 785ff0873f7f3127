"""Load and store kudos: the one place the kudos process touches its collections.

:class:`KudosRepository` owns the ``kudos`` collection and its outbox journal, the imports'
event documents (``kudos_imports``) and theirs, the allowance and weekly-cap counters, and the
feeds (``feeds.py``, the read models it keeps). The use cases (``handlers.py``) call its named
reads and writes and never see a query.

Every write that gives a document events marks it in its collection's outbox journal first
(``shared.bus.outbox``). Every read is by ``_id``: one kudos, a counter, a feed page (the list's
head, a bucket or two, then the page's kudos by id; FerretDB answers nothing else from an
index). The exception is :meth:`KudosRepository.page_before_feeds`, the old way of a database
whose feeds are still being built (``feeds.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, Sequence

from pymongo.errors import DuplicateKeyError

from services.recognition.kudos.documents import AllowanceDoc, ImportBatchDoc, KudosDoc, WeeklyCapDoc
from services.recognition.kudos.domain import AddOn, Kudos
from services.recognition.kudos.feeds import KudosFeeds, person_feed
from shared.bus.outbox import OutboxJournal, merge_update, with_outbox, with_packed_outbox
from shared.clock import utc
from shared.db import WRITE_CHUNK, chunks, find_by_ids, insert_new
from shared.events import Envelope
from shared.feeds import in_order
from shared.pagination import paginate

# Imported kudos whose events share one outbox document, packed as one JSON string
# (``with_packed_outbox``). As a list of subdocuments FerretDB's cost was per event (~2 ms):
# the relay's clean-up of 100 documents of 100 events took over the client's 30 s timeout on
# the loaded machine; packed, a document costs about what a small one does.
IMPORT_BATCH = 50


def kudos_from_doc(doc: dict) -> Kudos:
    return Kudos(
        id=doc["_id"], giver_id=doc["giver_id"], recipient_ids=list(doc["recipient_ids"]), message=doc["message"],
        values=list(doc.get("values") or []), gesture=doc["gesture"], request_id=doc.get("request_id"),
        created_at=utc(doc["created_at"]), giver_name=doc["giver_name"], recipient_names=list(doc.get("recipient_names") or []),
        add_ons=[AddOn(a["actor_id"], a.get("message"), utc(a["at"]), a.get("key")) for a in doc.get("add_ons") or []],
        private=bool(doc.get("private")),
    )


def new_kudos_doc(kudos: Kudos) -> dict[str, Any]:
    """A new kudos's document (no add-ons yet), without its events."""
    return {
        "_id": kudos.id, "giver_id": kudos.giver_id, "giver_name": kudos.giver_name,
        "recipient_ids": kudos.recipient_ids, "recipient_names": kudos.recipient_names,
        "message": kudos.message, "values": kudos.values, "gesture": kudos.gesture,
        "request_id": kudos.request_id, "created_at": kudos.created_at, "add_ons": [],
        **({"private": True} if kudos.private else {}),
    }


class KudosRepository:
    def __init__(self) -> None:
        self.kudos = KudosDoc._get_collection()
        self.imports = ImportBatchDoc._get_collection()
        # Marked before every write that gives a document events (shared.bus.outbox): the
        # relay's safety net reads these, not the collections.
        self.kudos_journal = OutboxJournal(self.kudos)
        self.imports_journal = OutboxJournal(self.imports)
        self.allowances = AllowanceDoc._get_collection()
        self.caps = WeeklyCapDoc._get_collection()
        self.feeds = KudosFeeds(self.kudos.database["feeds"], self.kudos.database["meta"])

    # -- kudos ----------------------------------------------------------------------------------

    def get(self, kudos_id: str) -> Kudos | None:
        doc = self.kudos.find_one({"_id": kudos_id}, {"outbox": 0})
        return kudos_from_doc(doc) if doc is not None else None

    def insert(self, kudos: Kudos, events: Sequence[Envelope]) -> None:
        """Store a new kudos with its events (one insert); raises ``DuplicateKeyError`` when
        its id is taken."""
        self.kudos_journal.mark(kudos.id)
        self.kudos.insert_one(with_outbox(new_kudos_doc(kudos), events))

    def add_on(self, kudos_id: str, add_on: AddOn, events: Sequence[Envelope]) -> bool:
        """Add ``add_on`` with its events unless its person added on already: False then."""
        update = merge_update({"$push": {"add_ons": {"actor_id": add_on.actor_id, "message": add_on.message, "at": add_on.at,
                                                     **({"key": add_on.key} if add_on.key else {})}}}, events)
        # Once each, even when the same person clicks twice at the same moment.
        self.kudos_journal.mark(kudos_id)
        result = self.kudos.update_one({"_id": kudos_id, "add_ons.actor_id": {"$ne": add_on.actor_id}}, update)
        return result.modified_count == 1

    def existing_ids(self, kudos_ids: Iterable[str]) -> set[str]:
        """The ids among ``kudos_ids`` that are stored (``$in``s by ``_id``)."""
        return set(find_by_ids(self.kudos, kudos_ids, {"_id": 1}))

    # -- imported kudos -------------------------------------------------------------------------

    def record_import_events(self, events: Sequence[Envelope], now) -> tuple[list[dict[str, Any]], set[str]]:
        """Record imported kudos' ``kudos.given`` events, :data:`IMPORT_BATCH` to a document of
        ``kudos_imports`` (``_id``: a hash of its kudos ids), inserted in bulk. Returns the
        documents this call stored (for the relay, which reads nothing back) and the ids of
        those an earlier import of the same rows had stored."""
        batches = []
        for part in chunks(list(events), IMPORT_BATCH):
            ids = "\x1f".join(event.data["kudos_id"] for event in part)
            batches.append(with_packed_outbox({"_id": "imp:" + hashlib.sha256(ids.encode()).hexdigest()[:24], "at": now}, part))
        recorded_before = set()
        for part in chunks(batches, WRITE_CHUNK):
            self.imports_journal.mark(*(b["_id"] for b in part))
            recorded_before |= insert_new(self.imports, part)
        return [b for b in batches if b["_id"] not in recorded_before], recorded_before

    def insert_imported(self, kudos: Sequence[Kudos]) -> list[str]:
        """Store imported kudos (no outbox: their events are in ``kudos_imports``), in bulk;
        the ids stored by this call (another import of the same rows may get there first)."""
        docs = [{**new_kudos_doc(k), "imported": True} for k in kudos]
        clashed = insert_new(self.kudos, docs)
        return [d["_id"] for d in docs if d["_id"] not in clashed]

    def holds_imports(self, collection) -> bool:
        """Whether the relay's ``collection`` is ``kudos_imports`` (its ``on_scan`` hook)."""
        return collection.full_name == self.imports.full_name

    # -- feeds (feeds.py) -----------------------------------------------------------------------

    def put_on_feeds(self, kudos: Kudos) -> None:
        self.feeds.add(kudos.id, kudos.giver_id, kudos.recipient_ids, kudos.created_at, kudos.private)

    def put_many_on_feeds(self, kudos: Iterable[Kudos]) -> int:
        return self.feeds.add_many({"_id": k.id, "giver_id": k.giver_id, "recipient_ids": k.recipient_ids,
                                    "created_at": k.created_at, "private": k.private} for k in kudos)

    def recover_feeds(self, collection, docs: list[dict[str, Any]]) -> None:
        """Put the kudos whose ``kudos.given`` is still pending in ``docs`` on their feeds."""
        self.feeds.recover(collection, docs)

    def feeds_built(self) -> bool:
        return self.feeds.built.is_set()

    def company_page(self, first: Any = None, after: str | None = None) -> tuple[list[Kudos], dict]:
        return self._kudos_of(self.feeds.page("all", first, after))

    def person_page(self, person_id: str, direction: str, first: Any = None, after: str | None = None,
                    may_see: Callable[[list[str]], bool] | None = None) -> tuple[list[Kudos], dict]:
        """A page of a person's received or given kudos; with ``may_see``, a private kudos only
        if it accepts the people in it (the list is then read whole, to count)."""
        where = None if may_see is None else lambda d: not d.get("w") or may_see(d["w"])
        return self._kudos_of(self.feeds.page(person_feed(person_id, direction), first, after, where=where))

    def _kudos_of(self, page: dict[str, Any]) -> tuple[list[Kudos], dict]:
        docs = find_by_ids(self.kudos, page["ids"], {"outbox": 0})
        return [kudos_from_doc(d) for d in in_order(page["ids"], docs)], page

    def page_before_feeds(self, person_id: str | None, direction: str, first: Any = None,
                          after: str | None = None) -> tuple[list[Kudos], dict]:
        """The old way, while the feeds of an older database are built: a query and sort of
        ``kudos`` (a scan per page); private kudos are in no page until then."""
        query = {} if not person_id else {"recipient_ids": person_id} if direction == "received" else {"giver_id": person_id}
        query["private"] = {"$ne": True}
        page = paginate(self.kudos, query, ["created_at", "_id"], first, after, descending=True)
        return [kudos_from_doc(d) for d in page["items"]], page

    # -- counters that only move while under their limit ----------------------------------------

    def take_allowance(self, giver_id: str, month: str, amount: int, limit: int) -> bool:
        """Spend ``amount`` of the giver's allowance of ``month`` unless that passes ``limit``."""
        return self._take(self.allowances, f"{giver_id}:{month}", "used", amount, limit)

    def give_back_allowance(self, giver_id: str, month: str, amount: int) -> None:
        self.allowances.update_one({"_id": f"{giver_id}:{month}"}, {"$inc": {"used": -amount}})

    def allowance_used(self, person_id: str, month: str) -> int:
        doc = self.allowances.find_one({"_id": f"{person_id}:{month}"})
        return int(doc["used"]) if doc else 0

    def take_weekly(self, giver_id: str, recipient_id: str, week: str, limit: int) -> bool:
        """Count one kudos from the giver to the recipient in ``week`` unless that passes ``limit``."""
        return self._take(self.caps, f"{giver_id}:{recipient_id}:{week}", "count", 1, limit)

    def give_back_weekly(self, giver_id: str, recipient_id: str, week: str) -> None:
        self.caps.update_one({"_id": f"{giver_id}:{recipient_id}:{week}"}, {"$inc": {"count": -1}})

    @staticmethod
    def _take(collection, key: str, field: str, amount: int, limit: int) -> bool:
        """Add ``amount`` to the counter unless that would pass ``limit``; atomic."""
        if amount > limit:
            return False  # never fits (and an upsert would ignore the filter on a new counter)
        try:
            result = collection.update_one(
                {"_id": key, field: {"$lte": limit - amount}}, {"$inc": {field: amount}}, upsert=True
            )
            return result.modified_count == 1 or result.upserted_id is not None
        except DuplicateKeyError:
            return False  # the counter exists and is too high: the filter missed, the upsert clashed
