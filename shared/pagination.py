"""Cursor pagination for every list: opaque cursors over a stable sort (keyset paging).

A page is sorted by some fields plus ``_id`` as the tie-breaker; the cursor encodes the sort
values of the last item, and the next page asks for items strictly after it. Stable under
inserts, and each page costs one indexed query (no ``skip``).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Sequence

from shared.errors import BadInput

MAX_PAGE = 100
DEFAULT_PAGE = 20


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [{"$dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_value(value: Any) -> Any:
    """A sort value from a cursor: a scalar, or a date. Anything else (``{"$ne": null}``)
    would become a query operator in ``after_filter``: refused."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict) and set(value) == {"$dt"} and isinstance(value["$dt"], str):
        return datetime.fromisoformat(value["$dt"])
    raise ValueError("not a sort value")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != length:
            raise ValueError("wrong shape")
        return [_cursor_value(v) for v in raw]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
        raise BadInput("bad_cursor", "the cursor is not one this list gave out", field="after") from None


def page_size(first: Any) -> int:
    if first in (None, ""):
        return DEFAULT_PAGE
    try:
        size = int(first)
    except (TypeError, ValueError):
        raise BadInput("bad_page_size", "first must be a whole number", field="first") from None
    if not 1 <= size <= MAX_PAGE:
        raise BadInput("bad_page_size", f"first must be between 1 and {MAX_PAGE}", field="first")
    return size


def after_filter(fields: Sequence[str], values: Sequence[Any], descending: bool = False) -> dict:
    """The filter for items strictly after ``values`` in the order of ``fields``.

    For fields (a, b, _id) ascending: a > va, or a == va and b > vb, or ... and _id > vid.
    """
    op = "$lt" if descending else "$gt"
    clauses = []
    for i, field in enumerate(fields):
        clause = {f: values[j] for j, f in enumerate(fields[:i])}
        clause[field] = {op: values[i]}
        clauses.append(clause)
    return {"$or": clauses}


def paginate(collection, query: dict, sort_fields: Sequence[str], first: Any, after: str | None,
             descending: bool = False) -> dict:
    """Run one page of ``query`` sorted by ``sort_fields`` (ending with ``_id``).

    Returns ``{"items": [docs], "page_info": {...}, "total_count": n}``.
    """
    size = page_size(first)
    filt = dict(query)
    if after:
        values = decode_cursor(after, len(sort_fields))
        filt = {"$and": [query, after_filter(sort_fields, values, descending)]} if query else after_filter(sort_fields, values, descending)
    direction = -1 if descending else 1
    docs = list(collection.find(filt).sort([(f, direction) for f in sort_fields]).limit(size + 1))
    has_next = len(docs) > size
    docs = docs[:size]
    cursors = [encode_cursor([_get(d, f) for f in sort_fields]) for d in docs]
    return {
        "items": docs,
        "cursors": cursors,
        "page_info": {"has_next_page": has_next, "end_cursor": cursors[-1] if cursors else None},
        "total_count": collection.count_documents(query),
    }


def _get(doc: dict, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
