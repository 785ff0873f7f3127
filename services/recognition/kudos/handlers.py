"""Kudos commands and reads: check the rules, spend allowance atomically, store kudos + event.

Giving is three kinds of single-document write: the giver's monthly allowance counter, one
weekly counter per recipient (each moves only while under its limit, so concurrent gives
cannot overspend), then the kudos with its ``kudos.given`` event (outbox). A refusal after
a counter moved gives the spent units back before answering. Then the kudos is put on its
feeds (``feeds.py``: the company feed, the recipients' and the giver's lists) before the
answer, and only then is the outbox relay told (a crash in between: see ``feeds.py``).

Every read is by ``_id``: a feed page reads the list's head, a bucket or two, and the page's
kudos by id (FerretDB answers nothing else from an index).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from pymongo.errors import DuplicateKeyError

from services.recognition.directory import Directory
from services.recognition.kudos import domain, importer
from services.recognition.kudos.cards import CardData
from services.recognition.kudos.config import KudosSettings
from services.recognition.kudos.documents import AllowanceDoc, ImportBatchDoc, KudosDoc, WeeklyCapDoc
from services.recognition.kudos.domain import AddOn, Kudos
from services.recognition.kudos.feeds import KudosFeeds, person_feed
from services.recognition.person import DirectoryPerson
from shared.auth import sees_private
from shared import idempotency
from shared.bus.outbox import OutboxJournal, merge_update, with_outbox
from shared.calendar import BusinessCalendar, period_bounds, period_key
from shared.clock import Clock, as_utc, utc
from shared.db import WRITE_CHUNK, chunks, find_by_ids, insert_new
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation, Unauthorized
from shared.events import Envelope, build_event
from shared.feeds import in_order
from shared.pagination import paginate
from shared.vocabulary import Role

log = logging.getLogger(__name__)
SOURCE = "kudos"
# Imported kudos whose events share one outbox document. The relay clears 100 documents per
# command: at 100 events each, that one command took FerretDB over the client's 30 s timeout
# on the loaded machine (its cost is per event, ~2 ms), and the relay retried it for ever.
IMPORT_BATCH = 10


def imported_event_id(kudos_id: str) -> str:
    """The ``kudos.given`` event id of an imported kudos: the same whichever import stores it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:kudos.given:{kudos_id}"))


def kudos_from_doc(doc: dict) -> Kudos:
    return Kudos(
        id=doc["_id"], giver_id=doc["giver_id"], recipient_ids=list(doc["recipient_ids"]), message=doc["message"],
        values=list(doc.get("values") or []), gesture=doc["gesture"], request_id=doc.get("request_id"),
        created_at=utc(doc["created_at"]), giver_name=doc["giver_name"], recipient_names=list(doc.get("recipient_names") or []),
        add_ons=[AddOn(a["actor_id"], a.get("message"), utc(a["at"]), a.get("key")) for a in doc.get("add_ons") or []],
        private=bool(doc.get("private")),
    )


@dataclass
class KudosService:
    """The kudos use cases, one method each (give, add on, import history, feed and allowance
    reads): the handlers of the kudos process, kept on one object because they share its
    collections, directory copy, clock and relay hooks (wired in ``app.py``)."""

    settings: KudosSettings
    directory: Directory
    clock: Clock
    calendar: BusinessCalendar
    notify: Callable[..., None] = lambda collection=None, *ids: None  # tells the outbox relay which document got events
    # hands the relay documents just inserted with their events (insert-only collections)
    notify_inserted: Callable[..., None] = lambda collection, docs: None

    def __post_init__(self) -> None:
        self.kudos = KudosDoc._get_collection()
        self.imports = ImportBatchDoc._get_collection()
        # Marked before every write that gives a document events (shared.bus.outbox).
        self.kudos_journal = OutboxJournal(self.kudos)
        self.imports_journal = OutboxJournal(self.imports)
        self.allowances = AllowanceDoc._get_collection()
        self.caps = WeeklyCapDoc._get_collection()
        self.feeds = KudosFeeds(self.kudos.database["feeds"], self.kudos.database["meta"])

    # -- counters that only move while under their limit -------------------------------------

    def _take(self, collection, key: str, field: str, amount: int, limit: int) -> bool:
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

    def _give_back(self, collection, key: str, field: str, amount: int) -> None:
        collection.update_one({"_id": key}, {"$inc": {field: -amount}})

    # -- commands ----------------------------------------------------------------------------

    def give(self, actor_id: str | None, raw: dict[str, Any]) -> Kudos:
        spec = domain.parse_give(raw, self.settings.values)
        giver = self.directory.get(actor_id) if actor_id else None
        recipients = self.directory.many(spec.recipient_ids)
        domain.check_people(giver, actor_id or "", recipients, spec.recipient_ids)

        now = self.clock.now()
        key = idempotency.key_of(raw)
        kudos_id = idempotency.derived_id("k", giver.id, key) if key else domain.new_kudos_id()
        if key and (first := self.kudos.find_one({"_id": kudos_id}, {"outbox": 0})) is not None:
            idempotency.first_result(first["created_at"], now)  # a retry: nothing spent again
            return kudos_from_doc(first)
        month = period_key(self.calendar, "month", now)
        week = period_key(self.calendar, "week", now)
        cost = len(spec.recipient_ids)
        allowance_key = f"{giver.id}:{month}"
        if not self._take(self.allowances, allowance_key, "used", cost, self.settings.monthly_allowance):
            left = self.allowance(giver.id)["left"]
            raise RuleViolation(
                "allowance_exhausted",
                f"this kudos needs {cost} of your monthly allowance and you have {left} left; it resets {self._resets(now):%d %B}",
                field="to",
            )
        taken: list[str] = []
        try:
            for rid in spec.recipient_ids:
                key = f"{giver.id}:{rid}:{week}"
                if not self._take(self.caps, key, "count", 1, self.settings.weekly_cap_per_recipient):
                    raise RuleViolation(
                        "weekly_cap_reached",
                        f"you already sent {recipients[rid].name} {self.settings.weekly_cap_per_recipient} kudos this week",
                        field="to",
                    )
                taken.append(key)
            kudos = Kudos(
                id=kudos_id, giver_id=giver.id, recipient_ids=spec.recipient_ids, message=spec.message,
                values=spec.values, gesture=spec.gesture, request_id=spec.request_id, created_at=now,
                giver_name=giver.name, recipient_names=[recipients[r].name for r in spec.recipient_ids],
                private=spec.private,
            )
            event = build_event("kudos.given", kudos.id, {
                "kudos_id": kudos.id, "giver_id": kudos.giver_id, "recipient_ids": kudos.recipient_ids,
                "message": kudos.message, "values": kudos.values, "gesture": kudos.gesture,
                "request_id": kudos.request_id, "at": now, **({"private": True} if kudos.private else {}),
            }, source=SOURCE, clock=self.clock)
            doc = {
                "_id": kudos.id, "giver_id": kudos.giver_id, "giver_name": kudos.giver_name,
                "recipient_ids": kudos.recipient_ids, "recipient_names": kudos.recipient_names,
                "message": kudos.message, "values": kudos.values, "gesture": kudos.gesture,
                "request_id": kudos.request_id, "created_at": now, "add_ons": [],
                **({"private": True} if kudos.private else {}),
            }
            self.kudos_journal.mark(kudos.id)
            self.kudos.insert_one(with_outbox(doc, [event]))
        except BaseException as exc:
            for cap in taken:
                self._give_back(self.caps, cap, "count", 1)
            self._give_back(self.allowances, allowance_key, "used", cost)
            if key and isinstance(exc, DuplicateKeyError):  # a twin of this retry stored it first
                return self.get(kudos_id)
            raise
        try:
            self.feeds.add(kudos.id, kudos.giver_id, kudos.recipient_ids, now, kudos.private)
        except Exception:  # noqa: BLE001 - the kudos is stored: answer so, and let the relay finish
            # Its event stays pending and the relay is asked for a search, whose on_scan hook
            # puts pending kudos on their feeds before publishing (a retry would give twice).
            log.warning("kudos stored but not yet on its feeds; the outbox relay's search will add it",
                        extra={"kudos_id": kudos.id}, exc_info=True)
            self.notify()
            return kudos
        self.notify(self.kudos, kudos.id)
        return kudos

    def add_on(self, actor_id: str | None, kudos_id: str, message: Any = None, key: str | None = None) -> Kudos:
        """+1 once per person; with an idempotency key, a retry returns the kudos (``shared.idempotency``)."""
        actor = self.directory.get(actor_id) if actor_id else None
        kudos = self.get(kudos_id, actor)
        mine = next((a for a in kudos.add_ons if actor is not None and a.actor_id == actor.id), None)
        if key and mine is not None and mine.key == key:
            idempotency.first_result(mine.at, self.clock.now())
            return kudos
        note = domain.check_add_on(kudos, actor, actor_id or "", message)
        now = self.clock.now()
        event = build_event("kudos.added_on", kudos.id, {
            "kudos_id": kudos.id, "actor_id": actor.id, "giver_id": kudos.giver_id,
            "recipient_ids": kudos.recipient_ids, "message": note, "at": now,
        }, source=SOURCE, clock=self.clock)
        update = merge_update({"$push": {"add_ons": {"actor_id": actor.id, "message": note, "at": now,
                                                     **({"key": key} if key else {})}}}, [event])
        # Once each, even when the same person clicks twice at the same moment.
        self.kudos_journal.mark(kudos.id)
        result = self.kudos.update_one({"_id": kudos.id, "add_ons.actor_id": {"$ne": actor.id}}, update)
        if result.modified_count != 1:
            if key:  # a twin of this retry added it first
                return self.add_on(actor_id, kudos_id, message, key)
            raise Conflict("already_added_on", "you already added on to this kudos")
        self.notify(self.kudos, kudos.id)
        kudos.add_ons.append(AddOn(actor.id, note, now, key))
        return kudos

    def import_history(self, actor_id: str | None, text: Any, line_offset: int = 0,
                       actor_email: str | None = None) -> dict[str, Any]:
        """Import kudos history from CSV text (``importer.py``), as an admin.

        Good rows become kudos with their ``kudos.given`` events (``at`` = the kudos' own time,
        so points score them in their periods; the event id derived from the kudos id). Rows
        already imported (same content, same id) are skipped; no allowance or weekly cap is
        spent. Reads the whole directory once (people, not history) and the part's ids once.

        Writes, in this order, each in bulk: the events, ten kudos' to one outbox document of
        ``kudos_imports`` (the relay then clears one outbox per ten kudos instead of one per
        kudos, and reads nothing back); the kudos, with no outbox; their feed entries (``FeedStore.add_many``); then the
        relay is handed the event documents (nothing to read back). A crash anywhere leaves the
        events pending: the relay's safety-net search hands them to :meth:`recover` first, which
        stores any of their kudos that are missing and puts them on the feeds, then publishes.
        A re-import meanwhile stores the missing kudos again with the same event ids, which the
        points service scores once.
        """
        people = self.directory.by_email()
        actor = self.directory.get(actor_id) if actor_id else people.get((actor_email or "").strip().lower())
        if actor is None:
            raise Unauthorized("unknown_actor", "the call does not say who is acting, or they are not in the directory")
        if actor.role != Role.ADMIN.value or not actor.active:
            raise Forbidden("admin_only", "only an admin may import kudos history")
        if not isinstance(line_offset, int) or line_offset < 0:
            line_offset = 0
        good, errors = importer.parse_csv(text, people, self.settings.values, self.clock.now(), line_offset)

        unique: dict[str, importer.ImportedKudos] = {}
        for row in good:
            unique.setdefault(row.id, row)  # a row repeated in the file is one kudos
        existing = set(find_by_ids(self.kudos, list(unique), {"_id": 1}))
        fresh = [row for row in unique.values() if row.id not in existing]
        now = self.clock.now()
        batches = []
        for part in chunks(fresh, IMPORT_BATCH):
            ids = "\x1f".join(row.id for row in part)
            batches.append(with_outbox({"_id": "imp:" + hashlib.sha256(ids.encode()).hexdigest()[:24], "at": now},
                                       [self._imported_event(row) for row in part]))
        recorded_before = set()
        for part in chunks(batches, WRITE_CHUNK):
            self.imports_journal.mark(*(b["_id"] for b in part))
            recorded_before |= insert_new(self.imports, part)
        inserted: list[str] = []
        for part in chunks(fresh, WRITE_CHUNK):
            docs = [self._imported_doc(row) for row in part]
            clashed = insert_new(self.kudos, docs)  # another import of the same rows got there first
            inserted += [d["_id"] for d in docs if d["_id"] not in clashed]
        added = set(inserted)
        self.feeds.add_many({"_id": row.id, "giver_id": row.giver.id, "recipient_ids": [r.id for r in row.recipients],
                             "created_at": row.created_at} for row in fresh if row.id in added)
        ours = [b for b in batches if b["_id"] not in recorded_before]
        if ours:
            self.notify_inserted(self.imports, ours)
        if recorded_before:  # the same rows recorded by an import that stopped: publish them if still pending
            self.notify(self.imports, *recorded_before)
        return {"imported": len(inserted), "already_imported": len(good) - len(inserted),
                "rejected": len(errors), "errors": errors}

    def _imported_event(self, row: importer.ImportedKudos) -> Envelope:
        return build_event("kudos.given", row.id, {
            "kudos_id": row.id, "giver_id": row.giver.id, "recipient_ids": [r.id for r in row.recipients],
            "message": row.message, "values": row.values, "gesture": row.gesture, "request_id": None, "at": row.created_at,
        }, source=SOURCE, clock=self.clock, id=imported_event_id(row.id))

    @staticmethod
    def _imported_doc(row: importer.ImportedKudos) -> dict[str, Any]:
        return {
            "_id": row.id, "giver_id": row.giver.id, "giver_name": row.giver.name, "recipient_ids": [r.id for r in row.recipients],
            "recipient_names": [r.name for r in row.recipients], "message": row.message, "values": row.values,
            "gesture": row.gesture, "request_id": None, "created_at": row.created_at, "add_ons": [], "imported": True,
        }

    def recover(self, collection, docs: list[dict[str, Any]]) -> None:
        """The relay's ``on_scan`` hook, for documents whose events are still pending (a process
        died before finishing): imported kudos missing from ``kudos`` are stored from their
        events (names from the directory copy), then every pending kudos is put on its feeds
        (``KudosFeeds.recover``); the relay publishes after this."""
        if collection.full_name == self.imports.full_name:
            given = [Envelope.from_dict(raw).data for doc in docs for raw in doc.get("outbox") or []
                     if raw.get("type") == "kudos.given"]
            have = set(find_by_ids(self.kudos, [d["kudos_id"] for d in given], {"_id": 1}))
            missing = [d for d in given if d["kudos_id"] not in have]
            if missing:
                names = self.directory.many({p for d in missing for p in [d["giver_id"], *d["recipient_ids"]]})
                name = lambda pid: names[pid].name if pid in names else "?"  # noqa: E731
                restored = [{
                    "_id": d["kudos_id"], "giver_id": d["giver_id"], "giver_name": name(d["giver_id"]),
                    "recipient_ids": list(d["recipient_ids"]), "recipient_names": [name(r) for r in d["recipient_ids"]],
                    "message": d["message"], "values": list(d.get("values") or []), "gesture": d["gesture"],
                    "request_id": d.get("request_id"), "created_at": as_utc(d["at"]), "add_ons": [], "imported": True,
                } for d in missing]
                for part in chunks(restored, WRITE_CHUNK):
                    insert_new(self.kudos, part)
                log.warning("kudos import: stored kudos an interrupted import had recorded the events of",
                            extra={"kudos": len(restored)})
        self.feeds.recover(collection, docs)

    # -- reads -------------------------------------------------------------------------------

    def feed(self, person_id: str | None, direction: str, first: Any = None, after: str | None = None,
             viewer: DirectoryPerson | None = None) -> tuple[list[Kudos], dict]:
        """A page of the company feed (public kudos only), or of one person's received or given
        kudos, newest first; of a person's, the private ones only if ``viewer`` may see them
        (``None``: nobody's private ones, the screen)."""
        if not self.feeds.built.is_set():  # an older database whose feeds are being built: the old way
            query = {} if not person_id else {"recipient_ids": person_id} if direction == "received" else {"giver_id": person_id}
            query["private"] = {"$ne": True}  # until then, private kudos are in no feed
            page = paginate(self.kudos, query, ["created_at", "_id"], first, after, descending=True)
            return [kudos_from_doc(d) for d in page["items"]], page
        if person_id is None:
            page = self.feeds.page("all", first, after)
        elif viewer is not None and (viewer.id == person_id or viewer.role == Role.ADMIN.value):
            page = self.feeds.page(person_feed(person_id, direction), first, after)  # every entry involves them
        else:  # a person's list (read whole to count): their private kudos only for who may see them
            sees = self.private_viewer(viewer)
            page = self.feeds.page(person_feed(person_id, direction), first, after,
                                   where=lambda d: not d.get("w") or sees(d["w"]))
        docs = find_by_ids(self.kudos, page["ids"], {"outbox": 0})
        return [kudos_from_doc(d) for d in in_order(page["ids"], docs)], page

    def get(self, kudos_id: str, viewer: DirectoryPerson | None = None, public: bool = False) -> Kudos:
        """One kudos; a private one only for ``viewer`` if they may see it (``public``: for
        nobody, the screen), else the same answer as for an unknown id."""
        doc = self.kudos.find_one({"_id": kudos_id}, {"outbox": 0})
        kudos = kudos_from_doc(doc) if doc is not None else None
        if kudos is None or (kudos.private and (public or (viewer is not None and not self.private_viewer(viewer)(kudos.involved)))):
            raise NotFound("kudos_not_found", f"no kudos {kudos_id!r}")
        return kudos

    def private_viewer(self, viewer: DirectoryPerson | None) -> Callable[[list[str]], bool]:
        """Whether ``viewer`` may see a private kudos between these people: one of them, a
        manager of one of them up the chain, or an admin (chains read once per call)."""
        chains: dict[str, DirectoryPerson | None] = {}

        def lookup(person_id: str) -> DirectoryPerson | None:
            if person_id not in chains:
                chains[person_id] = self.directory.get(person_id)
            return chains[person_id]

        def sees(involved: list[str]) -> bool:
            return viewer is not None and any(sees_private(viewer, person_id, lookup) for person_id in involved)
        return sees

    def _resets(self, now: datetime) -> datetime:
        return period_bounds(self.calendar, "month", now)[1]

    def allowance(self, person_id: str) -> dict[str, Any]:
        now = self.clock.now()
        doc = self.allowances.find_one({"_id": f"{person_id}:{period_key(self.calendar, 'month', now)}"})
        used = int(doc["used"]) if doc else 0
        limit = self.settings.monthly_allowance
        return {"monthly_allowance": limit, "used": used, "left": max(0, limit - used), "resets_at": self._resets(now)}

    def card_data(self, kudos: Kudos) -> CardData:
        local = self.calendar.local(kudos.created_at)
        return CardData(
            giver_name=kudos.giver_name, recipient_names=tuple(kudos.recipient_names), message=kudos.message,
            values=tuple(kudos.values), gesture=kudos.gesture, date=f"{local.day} {local:%B %Y}",
        )
