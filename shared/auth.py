"""Who is calling an internal service API.

The gateway authenticates people (JWT) and calls a service with the internal token and the
actor's id (``X-Internal-Token``, ``X-Actor-Id``). Services check the token, then load the
actor from their own knowledge of the directory and decide, themselves, what the actor may do.
"""

from __future__ import annotations

import hmac

from flask import Flask, g, request

from shared.errors import Unauthorized

TOKEN_HEADER = "X-Internal-Token"
ACTOR_HEADER = "X-Actor-Id"
PUBLIC_PATHS = ("/healthz", "/readyz")


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
