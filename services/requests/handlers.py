"""Command handlers: load, let the domain decide, store state + timeline + events in one write.

Every handler takes the acting person's id (from the gateway, or the CLI) and returns the
stored result. Concurrent changes to one request are detected by its version and the command
is re-decided on fresh state (a few times) rather than overwriting someone else's change.
"""

from __future__ import annotations

import csv
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.requests import domain, history
from services.requests.domain import Person, SupportRequest
from services.requests.readmodels import LISTING_FIELDS, PENDING, listing, next_due
from services.requests.repository import Repository, request_from_doc
from services.requests.visibility import may_see
from shared.auth import caller
from shared.bus.outbox import OUTBOX_PACKED, pack_events, pending_events, published_update, with_packed_outbox
from shared.bus.outbox import PENDING as OUTBOX_PENDING
from shared.calendar import BusinessCalendar
from shared.clock import Clock, utc
from shared.csvimport import csv_lines, guarded, unreadable
from shared.db import ID_CHUNK, INSERT_CHUNK, WRITE_CHUNK, chunks, find_by_ids
from shared.errors import AppError, BadInput, Conflict, Forbidden, NotFound, Unauthorized
from shared.events import Envelope, build_event
from shared.memory import release_free_memory
from shared import idempotency

log = logging.getLogger(__name__)

# Every import of history runs on this one thread. A part's peak memory (its parsed rows,
# documents and events: ~25 MB at 2,000 rows) stays in the allocator arena of the thread that
# ran it: on the web server's threads, each kept its own high-water mark and the process grew
# to 160 MB over a 20,000-row import (one thread: ~115 MB, in-process). Imports then also run
# one at a time, which costs nothing: FerretDB takes one write at a time.
_IMPORTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="requests-import")

SOURCE = "requests"
SAVE_ATTEMPTS = 5
CSV_COLUMNS = ("email", "name", "role", "department", "title", "manager_email", "active")
MAX_IMPORT_ROWS = 5000
IMPORT_BATCH = 10  # imported requests whose events share one ``request_imports`` document
# An import document younger than this whose requests are not all stored may be an import still
# writing (another process): its recovery waits (a part of 2,000 rows takes about a minute).
IMPORT_GRACE = timedelta(minutes=10)


@dataclass
class RequestsService:
    repo: Repository
    clock: Clock
    calendar: BusinessCalendar
    notify: Callable[..., None] = lambda collection=None, *ids: None  # tells the outbox relay which document got events
    # Publishes events and waits for the broker (the relay's producer): an import publishes its
    # stored events itself, in bulk (import_history). None: the relay publishes them.
    publish: Callable[[list[Envelope]], None] | None = None
    # The relay's notify_inserted: an import's event documents when Kafka refused them.
    notify_inserted: Callable[..., None] | None = None

    # -- actors ----------------------------------------------------------------------------------

    def actor(self, actor_id: str | None) -> Person:
        # The directory copy (fresh: one small read), not the person's document, every call.
        return caller(actor_id, lambda person_id: self.repo.directory.by_id().get(person_id))

    def team(self, actor: Person) -> set[str]:
        """The actor and everyone below them in the manager chain (whose requests they see)."""
        return {actor.id, *self.repo.directory.below(actor.id)}

    def _admin(self, actor_id: str | None) -> Person:
        actor = self.actor(actor_id)
        if not actor.is_admin:
            raise Forbidden("admin_only", "only an admin can change the directory")
        return actor

    # -- people ----------------------------------------------------------------------------------

    def upsert_person(self, actor_id: str | None, raw: dict[str, Any]) -> tuple[Person, bool]:
        """Create or update a person by email; returns (person, created)."""
        self._admin(actor_id)
        return self._upsert_person(domain.clean_person_input(raw))

    def _upsert_person(self, fields: dict[str, Any]) -> tuple[Person, bool]:
        if fields["manager_id"] and self.repo.person(fields["manager_id"]) is None:
            raise BadInput("unknown_manager", f"manager {fields['manager_id']!r} is not in the directory", field="manager_id")
        for _ in range(SAVE_ATTEMPTS):
            now = self.clock.now()
            existing = self.repo.person_by_email(fields["email"])
            if existing is None:
                person = Person(id=domain.new_id("p"), **fields)
                try:
                    self.repo.insert_person(person, now, [self._person_event(person)])
                except DuplicateKeyError:
                    # Someone created the same email meanwhile (maybe in another instance whose
                    # counter bump is still to come): look again in a reloaded directory.
                    self.repo.directory.invalidate()
                    continue
                self.notify(self.repo.people, person.id)
                return person, True
            if fields["manager_id"] == existing.id:
                raise BadInput("own_manager", "a person cannot be their own manager", field="manager_id")
            person = replace(existing, **fields)
            if person == existing:
                return person, False
            version = self.repo.person_version(existing.id)
            if self.repo.update_person(person, version, now, [self._person_event(person)]):
                self.notify(self.repo.people, person.id)
                return person, False
        raise Conflict("concurrent_change", "the person changed while saving; try again")

    def deactivate_person(self, actor_id: str | None, person_id: str) -> Person:
        actor = self._admin(actor_id)
        person = self.repo.person(person_id)
        if person is None:
            raise NotFound("person_not_found", f"no person {person_id!r}")
        if person.id == actor.id:
            raise BadInput("deactivate_self", "an admin cannot deactivate themselves", field="id")
        return self._upsert_person({**_person_fields(person), "active": False})[0]

    def set_leaderboard_visibility(self, actor_id: str | None, person_id: str, visible: Any) -> Person:
        """A person keeps themselves off (or puts themselves back on) everyone else's leaderboards.

        Only the person themselves: not their manager, not an admin (it is their choice). The
        change goes out as ``person.upserted`` with ``hidden`` in the same write (the outbox)."""
        actor = self.actor(actor_id)
        if person_id != actor.id:
            raise Forbidden("own_setting_only", "only the person themselves can change their leaderboard visibility")
        if not isinstance(visible, bool):
            raise BadInput("invalid_visible", "visible must be true or false", field="visible")
        for _ in range(SAVE_ATTEMPTS):
            existing = self.repo.person(actor.id)
            if existing is None:
                raise NotFound("person_not_found", f"no person {person_id!r}")
            person = replace(existing, hidden=not visible)
            if person == existing:
                return person
            version = self.repo.person_version(existing.id)
            if self.repo.update_person(person, version, self.clock.now(), [self._person_event(person)]):
                self.notify(self.repo.people, person.id)
                return person
        raise Conflict("concurrent_change", "the person changed while saving; try again")

    def _person_event(self, person: Person) -> Envelope:
        data = {"person_id": person.id, **{k: getattr(person, k) for k in ("email", "name", "role", "department", "title", "manager_id", "active", "hidden")}}
        return build_event("person.upserted", person.id, data, source=SOURCE, clock=self.clock)

    def ensure_admin(self, email: str) -> Person:
        """Make sure the configured admin exists (first start of an empty directory)."""
        existing = self.repo.person_by_email(email)
        if existing is not None:
            return existing
        return self._upsert_person(domain.clean_person_input(
            {"email": email, "name": "Admin", "role": domain.Role.ADMIN.value, "department": domain.Department.SALES.value,
             "title": "Inside Track admin"}
        ))[0]

    def import_people(self, actor_id: str | None, text: str) -> dict[str, Any]:
        """Import a CSV (header: email,name,role,department[,title,manager_email,active]).

        Good rows are imported, bad rows reported by line number; managers may be defined
        anywhere in the file (or already be in the directory).
        """
        self._admin(actor_id)
        return import_csv(self, text)

    def bulk_upsert_people(self, people: list[tuple[int, Person, Person | None]], versions: dict[str, int]) -> dict[str, Any]:
        """Write many people at once (an import): inserts and version-checked updates in bulk
        commands, one directory bump, one notice to the relay. A row that loses a race (an
        email created or a person changed meanwhile) goes through the one-by-one path."""
        now = self.clock.now()
        inserts = [(line, p) for line, p, existing in people if existing is None]
        updates = [(line, p) for line, p, existing in people if existing is not None and p != existing]
        created, updated, errors = 0, len(people) - len(inserts) - len(updates), []
        written: list[tuple[Person, int]] = []
        retry: list[tuple[int, Person]] = []
        for part in chunks(inserts, INSERT_CHUNK):
            docs = [self.repo.new_person_doc(p, now, [self._person_event(p)]) for _, p in part]
            self.repo.people_journal.mark(*(p.id for _, p in part))
            failed: set[int] = set()
            try:
                self.repo.people.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            for i, (line, p) in enumerate(part):
                if i in failed:
                    retry.append((line, p))
                else:
                    created += 1
                    written.append((p, 1))
        for part in chunks(updates, WRITE_CHUNK):
            ops = [UpdateOne({"_id": p.id, "version": versions.get(p.id, 0)}, self.repo.person_update(p, now, [self._person_event(p)]))
                   for _, p in part]
            self.repo.people_journal.mark(*(p.id for _, p in part))
            self.repo.people.bulk_write(ops, ordered=False)
            # Which ones took: read back by _id (FerretDB's bulk result does not say which).
            stored = find_by_ids(self.repo.people, [p.id for _, p in part], {"version": 1})
            for line, p in part:
                if int((stored.get(p.id) or {}).get("version", 0)) == versions.get(p.id, 0) + 1:
                    updated += 1
                    written.append((p, versions.get(p.id, 0) + 1))
                else:
                    retry.append((line, p))
        if written:
            self.repo.directory.bump(written)
            for part in chunks([p.id for p, _ in written], 1000):
                self.notify(self.repo.people, *part)
        for line, p in retry:
            try:
                person, was_created = self._upsert_person(_person_fields(p))
            except AppError as exc:
                errors.append({"line": line, "field": exc.field, "code": exc.code, "message": exc.message})
                continue
            created += was_created
            updated += not was_created
        return {"created": created, "updated": updated, "errors": errors}

    # -- requests ---------------------------------------------------------------------------------

    def submit(self, actor_id: str | None, raw: dict[str, Any]) -> SupportRequest:
        """File a request; with an idempotency key, a retry returns the first one (``shared.idempotency``)."""
        actor = self.actor(actor_id)
        now = self.clock.now()
        key = idempotency.key_of(raw)
        request_id = idempotency.derived_id("r", actor.id, key) if key else None
        if request_id is not None and (first := self.repo.get(request_id)) is not None:
            idempotency.first_result(first.submitted_at, now)
            return first
        request = domain.submit(actor, raw, number=0, now=now, cal=self.calendar, request_id=request_id)
        request.number = self.repo.next_number()
        try:
            self.repo.insert(request, self._envelopes(request))
        except DuplicateKeyError:  # a twin of this retry stored it first: its result is the answer
            if request_id is None:
                raise
            return self._load(request_id)
        self.notify(self.repo.requests, request.id)
        return request

    def get(self, actor_id: str | None, request_id: str, public: bool = False) -> SupportRequest:
        """A request the actor may see (``public``: reading as the public, none)."""
        actor = self.actor(actor_id)
        if public:
            raise NotFound("request_not_found", f"no request {request_id!r}")
        return self._load(request_id, actor)

    def _load(self, request_id: str, viewer: Person | None = None) -> SupportRequest:
        """The request; for a ``viewer`` who may not see it (``visibility.may_see``), the same
        refusal as for an unknown id: to them it does not exist."""
        request = self.repo.get(request_id)
        if request is None or (viewer is not None and not may_see(viewer, request, self.repo.directory.by_id())):
            raise NotFound("request_not_found", f"no request {request_id!r}")
        return request

    def _change(self, actor_id: str | None, request_id: str, decide: Callable[[SupportRequest, Person], None]) -> SupportRequest:
        actor = self.actor(actor_id)
        for _ in range(SAVE_ATTEMPTS):
            request = self._load(request_id, actor)
            before = listing(request)
            decide(request, actor)
            if self.repo.save(request, self._envelopes(request), before=before):
                request.version += 1
                self.notify(self.repo.requests, request.id)
                return request
        raise Conflict("concurrent_change", "the request kept changing while saving; try again")

    def acknowledge(self, actor_id, request_id):
        return self._change(actor_id, request_id, lambda r, a: r.acknowledge(a, self.clock.now(), self.calendar))

    def assign(self, actor_id, request_id, assignee_ids: Any):
        if not isinstance(assignee_ids, list) or not all(isinstance(i, str) for i in assignee_ids):
            raise BadInput("invalid_assignee_ids", "assignee_ids must be a list of person ids", field="assignee_ids")
        people = self.repo.people_by_ids(assignee_ids)
        unknown = [i for i in assignee_ids if i not in people]
        if unknown:
            raise BadInput("unknown_person", f"not in the directory: {', '.join(unknown)}", field="assignee_ids")
        assignees = [people[i] for i in assignee_ids]
        return self._change(actor_id, request_id, lambda r, a: r.assign(a, assignees, self.clock.now()))

    def start(self, actor_id, request_id):
        return self._change(actor_id, request_id, lambda r, a: r.start(a, self.clock.now()))

    def request_info(self, actor_id, request_id, question):
        return self._change(actor_id, request_id, lambda r, a: r.request_info(a, question, self.clock.now(), self.calendar))

    def provide_info(self, actor_id, request_id, answer):
        return self._change(actor_id, request_id, lambda r, a: r.provide_info(a, answer, self.clock.now(), self.calendar))

    def post_deal_update(self, actor_id, request_id, text):
        return self._change(actor_id, request_id, lambda r, a: r.post_deal_update(a, text, self.clock.now(), self.calendar))

    def comment(self, actor_id, request_id, text):
        return self._change(actor_id, request_id, lambda r, a: r.comment(a, text, self.clock.now()))

    def deliver(self, actor_id, request_id, note=None):
        return self._change(actor_id, request_id, lambda r, a: r.deliver(a, note, self.clock.now()))

    def close(self, actor_id, request_id, outcome, note=None):
        return self._change(actor_id, request_id, lambda r, a: r.close(a, outcome, note, self.clock.now(), self.calendar))

    def cancel(self, actor_id, request_id, reason):
        return self._change(actor_id, request_id, lambda r, a: r.cancel(a, reason, self.clock.now()))

    def import_history(self, actor_id: str | None, text: Any, line_offset: int = 0,
                       actor_email: str | None = None) -> dict[str, Any]:
        """Import request history from CSV text (``history.py``), as an admin; on the one
        import thread (``_IMPORTS``), so imports run one at a time."""
        try:
            return _IMPORTS.submit(self._import_history, actor_id, text, line_offset, actor_email).result()
        finally:
            _IMPORTS.submit(release_free_memory)  # the part's peak is not kept as the process's size

    def _import_history(self, actor_id: str | None, text: Any, line_offset: int,
                        actor_email: str | None) -> dict[str, Any]:
        """Import request history from CSV text (``history.py``), as an admin.

        Each row is replayed through the domain at its own times (``history.replay_row``); the
        good rows are stored in bulk, not a command at a time, in this order:

        1. their events, ten requests' to an insert-only outbox document of ``request_imports``
           (marked in its journal first);
        2. the requests, numbered as one range (one ``$inc``), inserted 100 a command with
           nothing pending: no outbox, no flag (their events are in step 1's documents);
        3. their lists, timer buckets and cards (``RequestReadModels.project_imported``), then
           the newer version of any a live command changed meanwhile (``follow_newer``);
        4. their events published (the relay's producer), then step 1's documents emptied.

        So no request document is written twice (an update rewrites the whole document on
        FerretDB: clearing each one's flag and outbox was half of an import's time). A crash
        anywhere leaves step 1's documents marked: the relay's safety net hands them to
        :meth:`recover_imports`, which projects the requests that are stored and publishes
        their events (again: a duplicate with the same event ids, never a loss); events of
        rows a crash kept from being stored are dropped with them, and a re-run imports those
        rows. Kafka away at step 4: the relay publishes from step 1's documents. Rows already
        imported (same content, same id) are skipped. Reads the directory copy once (people,
        not history) and the rows' ids by ``$in``.
        """
        people, _ = self.repo.directory.snapshot()
        actor = self.repo.person(actor_id) if actor_id else people.get((actor_email or "").strip().lower())
        if actor is None:
            raise Unauthorized("unknown_actor", "the call does not say who is acting, or they are not in the directory")
        if not actor.is_admin or not actor.active:
            raise Forbidden("admin_only", "only an admin may import request history")
        if not isinstance(line_offset, int) or line_offset < 0:
            line_offset = 0
        good, errors = history.parse_csv(text, people, self.calendar, self.clock.now(), line_offset)

        unique: dict[str, history.ImportedRequest] = {}
        for row in good:
            unique.setdefault(row.request.id, row)  # a row repeated in the file is one request
        existing = find_by_ids(self.repo.requests, list(unique), {PENDING: 1, OUTBOX_PENDING: 1})
        fresh = sorted((row for rid, row in unique.items() if rid not in existing),
                       key=lambda row: (row.request.submitted_at, row.line))
        if fresh:
            first = self.repo.next_numbers(len(fresh))  # numbered in submission order within the call
            for n, row in enumerate(fresh):
                row.request.number = first + n
        batches, marks = self._record_import_events(fresh)
        inserted: list[SupportRequest] = []
        since = time.time()
        for part in chunks(fresh, INSERT_CHUNK):
            # As a live one looks once projected and published: its events are in step 1's documents.
            docs = [self.repo.new_request_doc(row.request, (), lists_pending=False) for row in part]
            clashed: set[str] = set()
            try:
                self.repo.requests.insert_many(docs, ordered=False)
            except BulkWriteError as exc:  # another import of the same rows got there first
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                clashed = {docs[e["index"]]["_id"] for e in exc.details["writeErrors"]}
                lost = clashed - set(find_by_ids(self.repo.requests, clashed, {"_id": 1}))
                if lost:  # a clash on something else than the id (a number): never skip silently
                    raise Conflict("import_clash", f"{len(lost)} requests clashed with stored ones; try again")
            inserted += [row.request for row in part if row.request.id not in clashed]
        self.repo.read_models.project_imported(inserted)
        self.repo.read_models.follow_newer(inserted, since)
        self._publish_imported(batches, marks)
        # Rows found stored but still flagged: a live command's projection, or an import of an
        # older version (which flagged its requests) that stopped; finished here. Found stored
        # at all: an import that stopped may have left their events unpublished: the relay's
        # safety net looks at every journal mark now, young ones too (recover_imports).
        unfinished = [rid for rid, doc in existing.items() if doc.get(PENDING)]
        if unfinished:
            self.repo.read_models.recover(unfinished)
        unpublished = [rid for rid, doc in existing.items() if doc.get(PENDING) or doc.get(OUTBOX_PENDING)]
        for part in chunks(unpublished, ID_CHUNK):
            self.notify(self.repo.requests, *part)
        if existing:
            self.notify()
        stored = {r.id for r in inserted}
        return {"imported": len(inserted), "already_imported": len(good) - len(inserted),
                "rejected": len(errors), "errors": errors,
                "events": sum(len(row.events) for row in fresh if row.request.id in stored)}

    def _record_import_events(self, rows: list[history.ImportedRequest]) -> tuple[list[tuple[dict, list[Envelope]]], dict[str, str]]:
        """Step 1 of an import: the rows' events, :data:`IMPORT_BATCH` requests' to an
        insert-only outbox document of ``request_imports`` (a fresh ``_id`` per import, so a
        re-run never meets a document a crashed import left), each marked in the journal
        first. Returns each document with its events, and their marks."""
        now = self.clock.now()
        batches = []
        for part in chunks(rows, IMPORT_BATCH):
            events = [e for row in part for e in row.events]
            batches.append((with_packed_outbox({"_id": f"imp:{uuid.uuid4().hex}", "at": now}, events), events))
        marks: dict[str, str] = {}
        for part in chunks([doc for doc, _ in batches], WRITE_CHUNK):
            marks.update(dict.fromkeys([b["_id"] for b in part], self.repo.imports_journal.mark(*(b["_id"] for b in part))))
            self.repo.imports.insert_many(part, ordered=False)
        return batches, marks

    def _publish_imported(self, batches: list[tuple[dict, list[Envelope]]], marks: dict[str, str]) -> None:
        """Step 4 of an import: publish the events of ``batches`` in order per request, waiting
        for the broker, then empty the documents as the relay would and take off their marks.
        Kafka refusing (or no producer): the relay publishes them from the documents instead."""
        if not batches:
            return
        docs = [doc for doc, _ in batches]
        try:
            if self.publish is None:
                raise RuntimeError("no producer here")
            for part in chunks(batches, ID_CHUNK // IMPORT_BATCH):
                self.publish([event for _, events in part for event in events])
        except Exception as exc:  # noqa: BLE001 - Kafka away: the events stay in their documents
            log.warning("import: publishing failed, the outbox relay will publish the events", extra={"error": repr(exc)})
            if self.notify_inserted is not None:
                self.notify_inserted(self.repo.imports, docs)
            return
        # Emptied, kept (a small document each; a delete cost as much).
        for part in chunks(docs):
            self.repo.imports.bulk_write([UpdateOne({"_id": d["_id"]}, published_update(d)) for d in part], ordered=False)
        self.repo.imports_journal.unmark(marks)

    def recover_imports(self, docs: list[dict[str, Any]]) -> None:
        """The relay's ``on_scan`` hook for ``request_imports``: documents whose events are
        still pending (an import stopped before publishing them). The requests they name that
        are stored are put on their lists (idempotent), before the relay publishes. Events of
        requests not stored are dropped from the document (a crash kept those rows from being
        stored; a re-run imports them again, with the same event ids) unless the document is
        young: then it may be an import still writing, and it is left for a later pass."""
        events = {id(doc): pending_events(doc) for doc in docs}
        subject = {id(doc): [Envelope.from_dict(raw).subject for raw in events[id(doc)]] for doc in docs}
        stored = find_by_ids(self.repo.requests, {rid for rids in subject.values() for rid in rids}, LISTING_FIELDS)
        written = {d["_id"]: d.get("at") for d in find_by_ids(self.repo.imports, [doc["_id"] for doc in docs], {"at": 1}).values()}
        now = self.clock.now()
        for doc in docs:
            rids = subject[id(doc)]
            if all(rid in stored for rid in rids):
                continue
            at = written.get(doc["_id"])
            if at is not None and now - utc(at) < IMPORT_GRACE:
                doc.pop(OUTBOX_PACKED, None)  # not published, not cleared, still marked
                doc[OUTBOX_PENDING] = False
                subject[id(doc)] = []
                continue
            doc[OUTBOX_PACKED] = pack_events([raw for raw, rid in zip(events[id(doc)], rids) if rid in stored])
            self.repo.imports.update_one({"_id": doc["_id"]}, {"$set": {OUTBOX_PACKED: doc[OUTBOX_PACKED]}})
            subject[id(doc)] = [rid for rid in rids if rid in stored]
        named = {rid for rids in subject.values() for rid in rids}
        requests = [request_from_doc(stored[rid]) for rid in named if rid in stored]
        self.repo.read_models.project_imported(requests)
        if requests:
            log.info("finished the lists of %d imported requests an import left pending", len(requests))

    # -- timers -----------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Fire every due timer once; safe to run in several instances at once. Returns events.

        Reads the timer buckets from the sweep cursor to now by ``_id`` (an idle tick: the
        cursor and two small buckets), never the requests collection."""
        now = self.clock.now()
        models = self.repo.read_models
        due, end_slot, cursor = models.due(now)
        fired, changed, unfinished = 0, [], []
        for request_id, at, slot in due:
            for _ in range(SAVE_ATTEMPTS):
                request = self.repo.get(request_id)
                if request is None:
                    models.drop_stale_timer(request_id, at, slot)
                    break
                before = listing(request)
                if not request.fire_due_timers(now, self.calendar):
                    # Nothing due: another instance fired it (and moved the entry), or the entry
                    # is left from a crash: take it off unless it was moved meanwhile.
                    if next_due(request) != at:
                        models.drop_stale_timer(request_id, at, slot)
                    break
                # The version check makes one instance win; the loser re-reads and finds nothing due.
                if self.repo.save(request, self._envelopes(request), before=before):
                    fired += len(request.new_events)
                    changed.append(request_id)
                    break
            else:
                unfinished.append(slot)
        move_to = min([end_slot, *unfinished])
        if cursor is None or move_to > cursor:
            models.advance(move_to)
        if changed:
            self.notify(self.repo.requests, *changed)
        return fired

    # -- events -----------------------------------------------------------------------------------

    def _envelopes(self, request: SupportRequest) -> list[Envelope]:
        return [
            build_event(e.type, request.id, e.data, source=SOURCE, clock=self.clock, id=e.id)
            for e in request.new_events
        ]


def _person_fields(person: Person) -> dict[str, Any]:
    return {k: getattr(person, k) for k in ("email", "name", "role", "department", "title", "manager_id", "active")}


def import_csv(service: RequestsService, text: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise BadInput("empty_csv", "the CSV is empty", field="csv")
    reader = csv.DictReader(csv_lines(text))
    try:
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise unreadable(reader.reader.line_num, exc) from None
    missing = [c for c in ("email", "name", "role", "department") if c not in header]
    if missing:
        raise BadInput("bad_csv_header", f"the header lacks {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}", field="csv")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise BadInput("bad_csv_header", f"unknown column(s) {', '.join(unknown)}; expected {','.join(CSV_COLUMNS)}", field="csv")
    reader.fieldnames = header

    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row in guarded(reader, lambda: reader.reader.line_num):  # DictReader's own count lags a failed row
        line = reader.line_num
        if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
            raise BadInput("csv_too_large", f"at most {MAX_IMPORT_ROWS} rows per import", field="csv")
        if None in row:  # more cells than columns
            errors.append({"line": line, "field": None, "code": "too_many_cells", "message": "more cells than the header has columns"})
            continue
        raw = {k: (v or "").strip() for k, v in row.items()}
        if not any(raw.values()):
            continue  # a blank line
        try:
            fields = domain.clean_person_input({**raw, "manager_id": None})
        except AppError as exc:
            errors.append({"line": line, "field": exc.field, "code": exc.code, "message": exc.message})
            continue
        if fields["email"] in seen:
            errors.append({"line": line, "field": "email", "code": "duplicate_email",
                           "message": f"{fields['email']} is already on line {seen[fields['email']]}"})
            continue
        seen[fields["email"]] = line
        rows.append((line, {**fields, "manager_email": raw.get("manager_email", "").lower() or None}))

    # Everyone's id first (the known ones from the directory, new ones made here), so managers
    # may be defined anywhere in the file and each person is written once, in bulk.
    known, versions = service.repo.directory.snapshot()
    ids = {fields["email"]: (known[fields["email"]].id if fields["email"] in known else domain.new_id("p"))
           for _, fields in rows}
    people: list[tuple[int, Person, Person | None]] = []
    for line, fields in rows:
        manager_email = fields.pop("manager_email")
        existing = known.get(fields["email"])
        manager_id = existing.manager_id if existing else None
        if manager_email:
            manager_id_found = ids.get(manager_email) or (known[manager_email].id if manager_email in known else None)
            if manager_id_found is None:
                errors.append({"line": line, "field": "manager_email", "code": "unknown_manager",
                               "message": f"manager {manager_email} is neither in the file nor in the directory"})
            elif manager_id_found == ids[fields["email"]]:
                errors.append({"line": line, "field": "manager_email", "code": "own_manager",
                               "message": "a person cannot be their own manager"})
            else:
                manager_id = manager_id_found
        # The import never changes a person's own setting (hidden): it keeps what is stored.
        people.append((line, Person(id=ids[fields["email"]], **{**fields, "manager_id": manager_id},
                                    hidden=existing.hidden if existing else False), existing))
    report = service.bulk_upsert_people(people, versions)
    errors.extend(report.pop("errors"))
    errors.sort(key=lambda e: e["line"])
    return {**report, "errors": errors}
