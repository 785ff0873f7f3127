"""What one GraphQL request knows: who is asking, the service clients, and its caches.

People are looked up in batches: a list resolver primes the ids it may show, and the first
``Person`` field resolved looks them all up in one ``/people/lookup`` call (a feed of 50
kudos: one call); the others read the cache. A query that selects no person (a rep's list of
numbers and titles) makes no lookup at all. Summaries (points, badges) and requests are cached
for the request too.

A person's points summary (points service) and kudos allowance (kudos service) do not depend
on their directory entry (requests service): ``me`` and ``person(id)`` ask for them at the same
time as the person when the query selects them (:meth:`RequestContext.prefetch`), so ``me``
with points and allowance costs the slowest of three calls, not their sum.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from services.gateway.clients import Services, segment

# Shared by all requests; a prefetch is at most two calls, each bounded by the service timeout.
_PREFETCH = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gateway-prefetch")


@dataclass
class RequestContext:
    actor_id: str
    services: Services
    base_url: str
    read_only: bool = False  # a screen token: sees what the public sees (no private kudos)
    people: dict[str, dict | None] = field(default_factory=dict)
    wanted: dict[str, None] = field(default_factory=dict)  # primed, not looked up yet (in order)
    summaries: dict[str, dict | Future] = field(default_factory=dict)
    allowances: dict[str, dict | Future] = field(default_factory=dict)
    support_requests: dict[str, dict | None] = field(default_factory=dict)
    calls: int = 0  # service calls made for this request (shown outside production)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.services = Services(**{name: _Counted(getattr(self.services, name), self)
                                    for name in ("requests", "kudos", "points", "notifications")
                                    if getattr(self.services, name) is not None})

    def prefetch(self, person_id: str | None, summary: bool = False, allowance: bool = False) -> None:
        """Start the summary and allowance calls for ``person_id`` now, in the background; the
        resolvers that need them wait for the answer (and see its error, if any)."""
        if not person_id:
            return
        if summary and person_id not in self.summaries:
            self.summaries[person_id] = _PREFETCH.submit(self._summary_call, person_id)
        if allowance and person_id not in self.allowances:
            self.allowances[person_id] = _PREFETCH.submit(self._allowance_call, person_id)

    def prime_people(self, ids: Iterable[str | None]) -> None:
        """Ids a list may show: looked up together when the first person is read."""
        for person_id in ids:
            if person_id and person_id not in self.people:
                self.wanted[person_id] = None

    def _look_up(self, ids: Iterable[str]) -> None:
        """``ids`` and everyone primed, in one ``/people/lookup`` call per 500."""
        missing = [i for i in dict.fromkeys([*ids, *self.wanted]) if i and i not in self.people]
        self.wanted.clear()
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            found = self.services.requests.post("/people/lookup", self.actor_id, {"ids": chunk})["people"]
            by_id = {p["id"]: p for p in found}
            for pid in chunk:
                self.people[pid] = by_id.get(pid)

    def remember_people(self, people: Iterable[dict | None]) -> None:
        """People another service already returned in full (same shape as ``/people/lookup``)."""
        for person in people:
            if person and person.get("id"):
                self.people.setdefault(person["id"], person)

    def person(self, person_id: str | None) -> dict | None:
        if not person_id:
            return None
        if person_id not in self.people:
            self._look_up([person_id])
        return self.people[person_id]

    def people_list(self, ids: Iterable[str]) -> list[dict]:
        """The people behind ``ids`` (one batched lookup), in order, skipping unknown ones."""
        ids = list(ids)
        if any(i not in self.people for i in ids):
            self._look_up(ids)
        return [p for p in (self.people.get(i) for i in ids) if p]

    def summary(self, person_id: str) -> dict[str, Any]:
        return _cached(self.summaries, person_id, self._summary_call)

    def allowance(self, person_id: str) -> dict[str, Any]:
        return _cached(self.allowances, person_id, self._allowance_call)

    def _summary_call(self, person_id: str) -> dict[str, Any]:
        return self.services.points.get(f"/people/{segment(person_id)}/summary", self.actor_id)

    def _allowance_call(self, person_id: str) -> dict[str, Any]:
        return self.services.kudos.get(f"/allowance/{segment(person_id)}", self.actor_id)

    def card_url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _cached(cache: dict, key: str, call: Callable[[str], dict]) -> dict:
    value = cache.get(key)
    if value is None:
        value = cache[key] = call(key)
    elif isinstance(value, Future):
        try:
            value = value.result()
        except Exception:
            del cache[key]  # a field asking again calls again (and reports its own error)
            raise
        cache[key] = value
    return value


class _Counted:
    """A service client that counts the calls one GraphQL request makes."""

    def __init__(self, client, context: RequestContext):
        self._client, self._context = client, context

    def _count(self) -> None:
        with self._context._lock:  # prefetches count from their own threads
            self._context.calls += 1

    def get(self, *args, **kwargs):
        self._count()
        if self._context.read_only:  # a screen reads as the public (shared.auth.reads_as_public)
            kwargs["public"] = "true"
        return self._client.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        self._count()
        return self._client.post(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._count()
        return self._client.delete(*args, **kwargs)
