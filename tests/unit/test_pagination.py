"""Cursors are opaque to clients, and a forged one never becomes part of a query."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from shared.errors import BadInput
from shared.pagination import after_filter, decode_cursor, encode_cursor


def forged(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_a_cursor_round_trips_its_sort_values():
    at = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
    assert decode_cursor(encode_cursor([at, "k_1"]), 2) == [at, "k_1"]
    assert decode_cursor(encode_cursor([12, None]), 2) == [12, None]


@pytest.mark.parametrize("values", [
    [{"$ne": None}, "k_1"],
    ["x", {"$gt": ""}],
    [{"$where": "sleep(1000)"}, "k_1"],
    [{"$dt": "2026-11-27T09:30:00+00:00", "$ne": None}, "k_1"],
    [{"$dt": {"$gt": ""}}, "k_1"],
    [["a", "b"], "k_1"],
    [{"a.b": 1}, "k_1"],
], ids=["ne", "gt", "where", "dt-plus-operator", "dt-operator", "list", "dotted"])
def test_a_forged_cursor_with_operators_or_documents_is_refused(values):
    with pytest.raises(BadInput) as refused:
        decode_cursor(forged(values), 2)
    assert refused.value.code == "bad_cursor" and refused.value.field == "after"


@pytest.mark.parametrize("cursor", ["", "not base64!", forged({"a": 1}), forged([1]), forged("[" * 5000)])
def test_a_cursor_of_the_wrong_shape_is_refused(cursor):
    with pytest.raises(BadInput):
        decode_cursor(cursor, 2)


def test_a_deeply_nested_cursor_is_refused_not_a_crash():
    deep = base64.urlsafe_b64encode(("[" * 5000 + "]" * 5000).encode()).decode()
    with pytest.raises(BadInput):
        decode_cursor(deep, 2)


def test_after_filter_compares_values_only():
    assert after_filter(["created_at", "_id"], ["2026", "k_1"], descending=True) == {
        "$or": [{"created_at": {"$lt": "2026"}}, {"created_at": "2026", "_id": {"$lt": "k_1"}}]}
