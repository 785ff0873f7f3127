"""Kudos commands and reads: check the rules, spend allowance atomically, store kudos + event.

Giving is three kinds of single-document write: the giver's monthly allowance counter, one
weekly counter per recipient (each moves only while under its limit, so concurrent gives
cannot overspend), then the kudos with its ``kudos.given`` event (outbox). A refusal after
a counter moved gives the spent units back before answering. Then the kudos is put on its
feeds (``feeds.py``: the company feed, the recipients' and the giver's lists) before the
answer, and only then is the outbox relay told (a crash in between: see ``feeds.py``).

The reads and writes themselves are the repository's (``repository.py``): every read by
``_id`` (a feed page reads the list's head, a bucket or two, and the page's kudos by id:
FerretDB answers nothing else from an index).
"""

from __future__ import annotations

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
from services.recognition.kudos.domain import AddOn, Kudos
from services.recognition.kudos.repository import KudosRepository
from services.recognition.person import DirectoryPerson
from shared.auth import sees_private
from shared.bus.outbox import pending_events
from shared import idempotency
from shared.calendar import BusinessCalendar, period_bounds, period_key
from shared.clock import Clock, as_utc
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation, Unauthorized
from shared.events import Envelope, build_event
from shared.vocabulary import Role

log = logging.getLogger(__name__)
SOURCE = "kudos"


def imported_event_id(kudos_id: str) -> str:
    """The ``kudos.given`` event id of an imported kudos: the same whichever import stores it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:kudos.given:{kudos_id}"))


@dataclass
class KudosService:
    """The kudos use cases, one method each (give, add on, import history, feed and allowance
    reads): the handlers of the kudos process, kept on one object because they share its
    repository, directory copy, clock and relay hooks (wired in ``app.py``)."""

    settings: KudosSettings
    repo: KudosRepository
    directory: Directory
    clock: Clock
    calendar: BusinessCalendar
    notify: Callable[..., None] = lambda collection=None, *ids: None  # tells the outbox relay which document got events
    # hands the relay documents just inserted with their events (insert-only collections)
    notify_inserted: Callable[..., None] = lambda collection, docs: None

    # -- commands ----------------------------------------------------------------------------

    def give(self, actor_id: str | None, raw: dict[str, Any]) -> Kudos:
        spec = domain.parse_give(raw, self.settings.values)
        giver = self.directory.get(actor_id) if actor_id else None
        recipients = self.directory.many(spec.recipient_ids)
        domain.check_people(giver, actor_id or "", recipients, spec.recipient_ids)

        now = self.clock.now()
        key = idempotency.key_of(raw)
        kudos_id = idempotency.derived_id("k", giver.id, key) if key else domain.new_kudos_id()
        if key and (first := self.repo.get(kudos_id)) is not None:
            idempotency.first_result(first.created_at, now)  # a retry: nothing spent again
            return first
        month = period_key(self.calendar, "month", now)
        week = period_key(self.calendar, "week", now)
        cost = len(spec.recipient_ids)
        if not self.repo.take_allowance(giver.id, month, cost, self.settings.monthly_allowance):
            left = self.allowance(giver.id)["left"]
            raise RuleViolation(
                "allowance_exhausted",
                f"this kudos needs {cost} of your monthly allowance and you have {left} left; it resets {self._resets(now):%d %B}",
                field="to",
            )
        taken: list[str] = []
        try:
            for rid in spec.recipient_ids:
                if not self.repo.take_weekly(giver.id, rid, week, self.settings.weekly_cap_per_recipient):
                    raise RuleViolation(
                        "weekly_cap_reached",
                        f"you already sent {recipients[rid].name} {self.settings.weekly_cap_per_recipient} kudos this week",
                        field="to",
                    )
                taken.append(rid)
            kudos = Kudos(
                id=kudos_id, giver_id=giver.id, recipient_ids=spec.recipient_ids, message=spec.message,
                values=spec.values, gesture=spec.gesture, request_id=spec.request_id, created_at=now,
                giver_name=giver.name, recipient_names=[recipients[r].name for r in spec.recipient_ids],
                private=spec.private,
            )
            self.repo.insert(kudos, [self._given_event(kudos)])
        except BaseException as exc:
            for rid in taken:
                self.repo.give_back_weekly(giver.id, rid, week)
            self.repo.give_back_allowance(giver.id, month, cost)
            if key and isinstance(exc, DuplicateKeyError):  # a twin of this retry stored it first
                return self.get(kudos_id)
            raise
        try:
            self.repo.put_on_feeds(kudos)
        except Exception:  # noqa: BLE001 - the kudos is stored: answer so, and let the relay finish
            # Its event stays pending and the relay is asked for a search, whose on_scan hook
            # puts pending kudos on their feeds before publishing (a retry would give twice).
            log.warning("kudos stored but not yet on its feeds; the outbox relay's search will add it",
                        extra={"kudos_id": kudos.id}, exc_info=True)
            self.notify()
            return kudos
        self.notify(self.repo.kudos, kudos.id)
        return kudos

    def _given_event(self, kudos: Kudos, event_id: str | None = None) -> Envelope:
        """The ``kudos.given`` event of a kudos (``event_id``: an imported kudos's, derived)."""
        return build_event("kudos.given", kudos.id, {
            "kudos_id": kudos.id, "giver_id": kudos.giver_id, "recipient_ids": kudos.recipient_ids,
            "message": kudos.message, "values": kudos.values, "gesture": kudos.gesture,
            "request_id": kudos.request_id, "at": kudos.created_at, **({"private": True} if kudos.private else {}),
        }, source=SOURCE, clock=self.clock, id=event_id)

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
        added = AddOn(actor.id, note, now, key)
        if not self.repo.add_on(kudos.id, added, [event]):  # once each, even for two clicks at one moment
            if key:  # a twin of this retry added it first
                return self.add_on(actor_id, kudos_id, message, key)
            raise Conflict("already_added_on", "you already added on to this kudos")
        self.notify(self.repo.kudos, kudos.id)
        kudos.add_ons.append(added)
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
        existing = self.repo.existing_ids(list(unique))
        fresh = [self._imported_kudos(row) for row in unique.values() if row.id not in existing]
        now = self.clock.now()
        ours, recorded_before = self.repo.record_import_events(
            [self._given_event(k, imported_event_id(k.id)) for k in fresh], now)
        inserted = self.repo.insert_imported(fresh)  # another import of the same rows may get there first
        added = set(inserted)
        self.repo.put_many_on_feeds(k for k in fresh if k.id in added)
        if ours:
            self.notify_inserted(self.repo.imports, ours)
        if recorded_before:  # the same rows recorded by an import that stopped: publish them if still pending
            self.notify(self.repo.imports, *recorded_before)
        return {"imported": len(inserted), "already_imported": len(good) - len(inserted),
                "rejected": len(errors), "errors": errors}

    @staticmethod
    def _imported_kudos(row: importer.ImportedKudos) -> Kudos:
        return Kudos(
            id=row.id, giver_id=row.giver.id, recipient_ids=[r.id for r in row.recipients], message=row.message,
            values=row.values, gesture=row.gesture, request_id=None, created_at=row.created_at,
            giver_name=row.giver.name, recipient_names=[r.name for r in row.recipients],
        )

    def recover(self, collection, docs: list[dict[str, Any]]) -> None:
        """The relay's ``on_scan`` hook, for documents whose events are still pending (a process
        died before finishing): imported kudos missing from ``kudos`` are stored from their
        events (names from the directory copy), then every pending kudos is put on its feeds
        (``KudosFeeds.recover``); the relay publishes after this."""
        if self.repo.holds_imports(collection):
            given = [Envelope.from_dict(raw).data for doc in docs for raw in pending_events(doc)
                     if raw.get("type") == "kudos.given"]
            have = self.repo.existing_ids([d["kudos_id"] for d in given])
            missing = [d for d in given if d["kudos_id"] not in have]
            if missing:
                names = self.directory.many({p for d in missing for p in [d["giver_id"], *d["recipient_ids"]]})
                name = lambda pid: names[pid].name if pid in names else "?"  # noqa: E731
                restored = [Kudos(
                    id=d["kudos_id"], giver_id=d["giver_id"], recipient_ids=list(d["recipient_ids"]), message=d["message"],
                    values=list(d.get("values") or []), gesture=d["gesture"], request_id=d.get("request_id"),
                    created_at=as_utc(d["at"]), giver_name=name(d["giver_id"]),
                    recipient_names=[name(r) for r in d["recipient_ids"]],
                ) for d in missing]
                self.repo.insert_imported(restored)
                log.warning("kudos import: stored kudos an interrupted import had recorded the events of",
                            extra={"kudos": len(restored)})
        self.repo.recover_feeds(collection, docs)

    # -- reads -------------------------------------------------------------------------------

    def feed(self, person_id: str | None, direction: str, first: Any = None, after: str | None = None,
             viewer: DirectoryPerson | None = None) -> tuple[list[Kudos], dict]:
        """A page of the company feed (public kudos only), or of one person's received or given
        kudos, newest first; of a person's, the private ones only if ``viewer`` may see them
        (``None``: nobody's private ones, the screen)."""
        if not self.repo.feeds_built():  # an older database whose feeds are being built: the old way
            return self.repo.page_before_feeds(person_id, direction, first, after)  # no private kudos until then
        if person_id is None:
            return self.repo.company_page(first, after)
        if viewer is not None and (viewer.id == person_id or viewer.role == Role.ADMIN.value):
            return self.repo.person_page(person_id, direction, first, after)  # every entry involves them
        # a person's list (read whole to count): their private kudos only for who may see them
        return self.repo.person_page(person_id, direction, first, after, may_see=self.private_viewer(viewer))

    def get(self, kudos_id: str, viewer: DirectoryPerson | None = None, public: bool = False) -> Kudos:
        """One kudos; a private one only for ``viewer`` if they may see it (``public``: for
        nobody, the screen), else the same answer as for an unknown id."""
        kudos = self.repo.get(kudos_id)
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
        used = self.repo.allowance_used(person_id, period_key(self.calendar, "month", now))
        limit = self.settings.monthly_allowance
        return {"monthly_allowance": limit, "used": used, "left": max(0, limit - used), "resets_at": self._resets(now)}

    def card_data(self, kudos: Kudos) -> CardData:
        local = self.calendar.local(kudos.created_at)
        return CardData(
            giver_name=kudos.giver_name, recipient_names=tuple(kudos.recipient_names), message=kudos.message,
            values=tuple(kudos.values), gesture=kudos.gesture, date=f"{local.day} {local:%B %Y}",
        )
