"""The people directory in this process's memory, kept fresh by one counter read by ``_id``.

A company is at most a few thousand people, so every instance holds the whole directory
(sorted by name) and answers lists, search, filters and email lookups from memory. Every
person write bumps the counter document ``people_version`` (in ``counters``) *after* the write;
a read first reads the counter (by ``_id``, one small document) and reloads the directory
(one read of the collection) only when the counter moved. Another instance's write therefore
shows on the next read here. Each start bumps the counter too, so a write whose bump a crash
lost is seen after that restart. This process's own writes patch its copy in place when no
other write came between (the bump returns ``seq == mine + 1``), so an import does not reload.

Within one HTTP call (``begin_call`` .. ``end_call``), the counter is read once: the actor's check, the
visibility scope and the page each asked for it again (in a sample of the year-size portal
reads, most of this service's waiting on the database was that one small read, several times
per call). A write of this process or an ``invalidate`` in between is still seen, and another
instance's write shows on the next call, as before.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Callable, Iterable

from pymongo import ReturnDocument

from services.requests.domain import Person
from shared.errors import BadInput
from shared.pagination import decode_cursor, encode_cursor, page_size

PEOPLE_VERSION_ID = "people_version"


def _sort_key(person: Person) -> tuple[str, str]:
    return (person.name.lower(), person.id)


class PeopleDirectory:
    def __init__(self, people, counters, from_doc: Callable[[dict], Person]):
        self.people = people
        self.counters = counters
        self.from_doc = from_doc
        self._lock = threading.Lock()
        self._seq: int | None = None
        self._sorted: list[Person] = []
        self._keys: list[tuple[str, str]] = []
        self._by_id: dict[str, Person] = {}
        self._versions: dict[str, int] = {}
        self._by_email: dict[str, str] = {}
        self._reports: dict[str, list[str]] = {}  # manager id -> their direct reports' ids
        self.reloads = 0
        # Per thread, within a call: the copy's seq once this call has checked the counter.
        self._scope = threading.local()

    # -- freshness ----------------------------------------------------------------------------------

    def _current_seq(self) -> int:
        doc = self.counters.find_one({"_id": PEOPLE_VERSION_ID}) or {}
        return int(doc.get("seq", 0))

    def begin_call(self) -> None:
        """An HTTP call begins on this thread: the counter is read at most once until
        :meth:`end_call` (again only if the copy moved since: a write, an ``invalidate``)."""
        self._scope.checked = None

    def end_call(self) -> None:
        self._scope.__dict__.pop("checked", None)

    def fresh(self) -> "PeopleDirectory":
        in_call = hasattr(self._scope, "checked")
        with self._lock:
            if in_call and self._scope.checked is not None and self._scope.checked == self._seq:
                return self  # checked in this call, and the copy is the one checked
        seq = self._current_seq()
        with self._lock:
            if seq == self._seq:
                if in_call:
                    self._scope.checked = seq
                return self
        docs = list(self.people.find({}, {"outbox": 0}))  # read after the counter: never older than it
        with self._lock:
            self._by_id = {d["_id"]: self.from_doc(d) for d in docs}
            self._versions = {d["_id"]: int(d.get("version", 0)) for d in docs}
            self._reindex()
            self._seq = seq
            self.reloads += 1
            if in_call:
                self._scope.checked = seq
        return self

    def _reindex(self) -> None:
        self._sorted = sorted(self._by_id.values(), key=_sort_key)
        self._keys = [_sort_key(p) for p in self._sorted]
        self._by_email = {p.email: p.id for p in self._sorted}
        reports: dict[str, list[str]] = {}
        for p in self._sorted:
            if p.manager_id:
                reports.setdefault(p.manager_id, []).append(p.id)
        self._reports = reports

    def bump(self, changed: Iterable[tuple[Person, int]] = ()) -> None:
        """After writing people (``(person, stored version)``): move the counter, and patch this
        copy when nobody else wrote meanwhile (otherwise the next read reloads)."""
        doc = self.counters.find_one_and_update({"_id": PEOPLE_VERSION_ID}, {"$inc": {"seq": 1}}, upsert=True,
                                                return_document=ReturnDocument.AFTER)
        seq = int(doc["seq"])
        with self._lock:
            if self._seq is not None and seq == self._seq + 1:
                by_id = dict(self._by_id)  # a new dict: readers of by_id() keep theirs
                for person, version in changed:
                    by_id[person.id] = person
                    self._versions[person.id] = version
                self._by_id = by_id
                self._reindex()
                self._seq = seq
            else:
                self._seq = None  # another write came between: the next read reloads (in a call too)

    def invalidate(self) -> None:
        """Reload on the next read (a write found the directory behind: a duplicate email)."""
        with self._lock:
            self._seq = None

    # -- reads ----------------------------------------------------------------------------------------

    def id_for_email(self, email: str) -> str | None:
        self.fresh()
        return self._by_email.get(email.lower())

    def snapshot(self) -> tuple[dict[str, Person], dict[str, int]]:
        """Every person by email, and their stored versions (fresh)."""
        self.fresh()
        with self._lock:
            return {p.email: p for p in self._sorted}, dict(self._versions)

    def by_id(self) -> dict[str, Person]:
        """Everyone by id (fresh; a copy never changed in place: read it without the lock)."""
        self.fresh()
        with self._lock:
            return self._by_id

    def below(self, manager_id: str) -> set[str]:
        """Everyone under ``manager_id`` in the manager chain (direct reports, theirs, ...)."""
        self.fresh()
        with self._lock:
            reports = self._reports
        found: set[str] = set()
        todo = list(reports.get(manager_id, ()))
        while todo:
            person_id = todo.pop()
            if person_id not in found and person_id != manager_id:
                found.add(person_id)
                todo.extend(reports.get(person_id, ()))
        return found

    def page(self, first: Any = None, after: str | None = None, department: str | None = None, role: str | None = None,
             active: bool | None = None, search: str = "") -> dict[str, Any]:
        """People sorted by name (then id), filtered; the shape of ``shared.pagination.paginate``."""
        size = page_size(first)
        self.fresh()
        with self._lock:
            people, keys = self._sorted, self._keys
        start = 0
        if after:
            name, pid = decode_cursor(after, 2)
            if not isinstance(name, str) or not isinstance(pid, str):
                raise BadInput("bad_cursor", "the cursor is not one this list gave out", field="after")
            start = bisect.bisect_right(keys, (name, pid))
        needle = search.lower()

        def keep(p: Person, name_lower: str) -> bool:
            return ((department is None or p.department == department) and (role is None or p.role == role)
                    and (active is None or p.active == active)
                    and (not needle or needle in name_lower or needle in p.email))

        items: list[Person] = []
        total = 0
        for i, (p, key) in enumerate(zip(people, keys)):
            if keep(p, key[0]):
                total += 1
                if i >= start and len(items) <= size:
                    items.append(p)
        has_next = len(items) > size
        items = items[:size]
        cursors = [encode_cursor(list(_sort_key(p))) for p in items]
        return {"items": items, "cursors": cursors, "total_count": total,
                "page_info": {"has_next_page": has_next, "end_cursor": cursors[-1] if cursors else None}}
