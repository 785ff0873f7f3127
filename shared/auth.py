"""Who is calling an internal service API.

The gateway authenticates people (JWT) and calls a service with the internal token and the
actor's id (``X-Internal-Token``, ``X-Actor-Id``). Services check the token, then load the
actor from their own knowledge of the directory (:func:`caller`: the same refusals in every
service) and decide, themselves, what the actor may do. :func:`manages` and
:func:`sees_private` are the rules about people every service applies the same way (the table
in docs/security.md).
"""

from __future__ import annotations

import hmac
from typing import Callable, Protocol, TypeVar

from flask import Flask, g, request

from shared.errors import Forbidden, Unauthorized
from shared.vocabulary import Role

TOKEN_HEADER = "X-Internal-Token"
ACTOR_HEADER = "X-Actor-Id"
PUBLIC_PATHS = ("/healthz", "/readyz")
ADMIN_ROLE = Role.ADMIN.value
MAX_CHAIN = 50  # a manager chain longer than this is a loop in the data, not an org chart


class DirectoryEntry(Protocol):
    """What the rules need of a person, in any service's copy of the directory."""

    id: str
    role: str
    active: bool
    manager_id: str | None


P = TypeVar("P", bound=DirectoryEntry)
Lookup = Callable[[str], "DirectoryEntry | None"]


def require_internal_token(app: Flask, token: str, public_prefixes: tuple[str, ...] = ()) -> None:
    """Refuse every request without the internal token (health, readiness and the given
    public prefixes excepted); put the caller's actor id, if any, in ``g.actor_id``."""

    @app.before_request
    def _check_token():
        if request.path in PUBLIC_PATHS or request.path.startswith(public_prefixes):
            return None
        presented = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise Unauthorized("bad_internal_token", f"missing or wrong {TOKEN_HEADER} header")
        g.actor_id = request.headers.get(ACTOR_HEADER) or None
        return None


def internal_headers(token: str, actor_id: str | None) -> dict[str, str]:
    """Headers a trusted caller sends to a service on behalf of ``actor_id``."""
    headers = {TOKEN_HEADER: token}
    if actor_id:
        headers[ACTOR_HEADER] = actor_id
    return headers


def reads_as_public() -> bool:
    """The call reads as the public (``?public=true``): only what everyone in the company may
    see, whoever the actor is. The gateway adds it to every read made with a read-only token
    (an office screen's, which an admin may have signed)."""
    return request.args.get("public") == "true"


def caller(actor_id: str | None, lookup: Callable[[str], P | None]) -> P:
    """The acting person, looked up in the service's own copy of the directory; an unknown or
    deactivated person is refused here, the same way by every service (the gateway's
    refusal comes first, but is never the only one)."""
    if not actor_id:
        raise Unauthorized("no_actor", f"the call does not say who is acting ({ACTOR_HEADER})")
    person = lookup(actor_id)
    if person is None:
        raise Unauthorized("unknown_actor", f"{actor_id!r} is not in the directory")
    if not person.active:
        raise Forbidden("inactive_actor", "this person is deactivated")
    return person


def manages(manager_id: str, person_id: str | None, lookup: Lookup) -> bool:
    """True if ``manager_id`` is ``person_id``'s manager, directly or up the chain."""
    seen: set[str] = set()
    current = lookup(person_id) if person_id else None
    while current is not None and current.manager_id and len(seen) < MAX_CHAIN:
        if current.manager_id == manager_id:
            return True
        if current.manager_id in seen:
            return False  # a loop in the data
        seen.add(current.manager_id)
        current = lookup(current.manager_id)
    return False


def sees_private(viewer: DirectoryEntry, person_id: str, lookup: Lookup) -> bool:
    """May ``viewer`` see a person's private figures (kudos allowance, rush share)? The person
    themselves, their managers up the chain, admins."""
    return viewer.id == person_id or viewer.role == ADMIN_ROLE or manages(viewer.id, person_id, lookup)
