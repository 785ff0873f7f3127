"""What one GraphQL request knows: who is asking, the service clients, and its caches.

People are looked up in batches: a list resolver primes the ids it will show (one
``/people/lookup`` call for a feed of 50 kudos), and every ``Person`` field then reads the
cache. Summaries (points, badges) and requests are cached for the request too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from services.gateway.clients import Services, segment


@dataclass
class RequestContext:
    actor_id: str
    services: Services
    base_url: str
    people: dict[str, dict | None] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    support_requests: dict[str, dict | None] = field(default_factory=dict)
    calls: int = 0  # service calls made for this request (shown outside production)

    def __post_init__(self) -> None:
        self.services = Services(**{name: _Counted(getattr(self.services, name), self)
                                    for name in ("requests", "kudos", "points")})

    def prime_people(self, ids: Iterable[str | None]) -> None:
        missing = [i for i in dict.fromkeys(i for i in ids if i) if i not in self.people]
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
            self.prime_people([person_id])
        return self.people[person_id]

    def people_list(self, ids: Iterable[str]) -> list[dict]:
        """The people behind ``ids`` (one batched lookup), in order, skipping unknown ones."""
        ids = list(ids)
        self.prime_people(ids)
        return [p for p in (self.people.get(i) for i in ids) if p]

    def summary(self, person_id: str) -> dict[str, Any]:
        if person_id not in self.summaries:
            self.summaries[person_id] = self.services.points.get(f"/people/{segment(person_id)}/summary", self.actor_id)
        return self.summaries[person_id]

    def card_url(self, path: str) -> str:
        return f"{self.base_url}{path}"


class _Counted:
    """A service client that counts the calls one GraphQL request makes."""

    def __init__(self, client, context: RequestContext):
        self._client, self._context = client, context

    def get(self, *args, **kwargs):
        self._context.calls += 1
        return self._client.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        self._context.calls += 1
        return self._client.post(*args, **kwargs)
