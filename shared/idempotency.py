"""Safe retries: a command sent with an idempotency key acts once per person and key.

A portal or a client library that retries after a timeout must not spend two kudos
allowances or file two requests. The id of what the command creates is derived from the
person and the key (:func:`derived_id`), so a retry finds the first result by ``_id`` (the
only lookup our FerretDB answers from an index) and returns it, and two copies of the same
command racing each other collide on the ``_id`` instead of both acting: the loser takes back
whatever it spent and answers with the winner's result. Within :data:`WINDOW` a key returns
the first result, whatever the retry says; afterwards it is refused (``idempotency_key_reused``):
a key names one action.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from shared.clock import utc
from shared.errors import BadInput, Conflict

WINDOW = timedelta(hours=24)
MAX_KEY = 200
FIELD = "idempotency_key"


def key_of(raw: dict[str, Any]) -> str | None:
    """The command's idempotency key, if it has one (1-200 characters)."""
    key = raw.get(FIELD)
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise BadInput("invalid_idempotency_key", f"an idempotency key is 1 to {MAX_KEY} characters", field=FIELD)
    return key


def derived_id(prefix: str, actor_id: str, key: str) -> str:
    """The id of what ``actor_id``'s command with ``key`` creates (the same for every retry)."""
    digest = hashlib.sha256(f"{actor_id}|{len(actor_id)}|{key}".encode()).hexdigest()
    return f"{prefix}_{digest[:16]}"


def first_result(created_at: datetime, now: datetime) -> None:
    """A retry found the first result, created at ``created_at``: it is the answer within the
    window; a key reused after it is refused."""
    if utc(now) - utc(created_at) > WINDOW:
        raise Conflict("idempotency_key_reused", "this idempotency key was used more than 24 hours ago; use a new one",
                       field=FIELD)
