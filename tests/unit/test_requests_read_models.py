"""Which list answers which filters, which lists a request is on in each status, and its
timer slot (no I/O; the lists themselves are tested in tests/integration/test_requests_read_models.py)."""

from __future__ import annotations

import pytest

from services.requests import domain
from services.requests.readmodels import DUE, choose_list, leaving, listing, next_due
from tests.unit.test_requests_domain import REP, SUP, build


@pytest.mark.parametrize("filters, feed, descending", [
    ({"requester_id": "p1", "department": "pricing", "status": "closed"}, "by:p1", True),
    ({"assignee_id": "p2", "open_only": True}, "as:p2", False),
    ({"department": "pricing", "status": "closed", "open_only": True}, "st:pricing:closed", False),
    ({"department": "pricing", "open_only": True, "priority": "rush"}, "open:pricing", False),
    ({"department": "pricing"}, "dept:pricing", False),
    ({"status": "delivered"}, "allst:delivered", False),
    ({"open_only": True}, "allopen", False),
    ({}, "all", False),
])
def test_the_smallest_list_that_holds_the_filters(filters, feed, descending):
    chosen, desc, _ = choose_list(**filters)
    assert (chosen, desc) == (feed, descending)


def test_what_a_list_does_not_imply_is_filtered_on_its_entries():
    _, _, where = choose_list(requester_id="p1", department="pricing", open_only=True, priority="high")
    assert where({"s": "submitted", "p": "high", "d": "pricing", "a": []})
    assert not where({"s": "closed", "p": "high", "d": "pricing", "a": []})
    assert not where({"s": "submitted", "p": "normal", "d": "pricing", "a": []})
    assert not where({"s": "submitted", "p": "high", "d": "legal", "a": []})
    _, _, where = choose_list(requester_id="p1", assignee_id="p9")
    assert where({"a": ["p9"]}) and not where({"a": ["p8"]})
    assert choose_list(department="pricing", open_only=True)[2] is None  # the list is the answer


@pytest.mark.parametrize("status", domain.STATUSES)
def test_a_request_is_on_the_lists_of_its_status(status):
    r = build(status)
    feeds = set(listing(r))
    assert {f"by:{REP.id}", "dept:pricing", f"st:pricing:{status}", "all", f"allst:{status}", f"as:{SUP.id}"} <= feeds
    assert ({"open:pricing", "allopen"} <= feeds) == (status in domain.OPEN)
    assert (DUE in feeds) == (status in domain.OPEN)  # no timer can fire once delivered or cancelled
    if DUE in feeds:
        assert listing(r)[DUE][0] == next_due(r)


def test_leaving_names_the_lists_a_change_takes_a_request_off():
    before = listing(build("in_progress"))
    after = listing(build("delivered"))
    assert set(leaving(before, after)) == {"open:pricing", "allopen", "st:pricing:in_progress", "allst:in_progress", DUE}
    assert leaving(after, after) == {}


def test_an_unanswerable_info_timer_does_not_hide_the_others():
    r = build("in_progress")
    r.info_due_at = r.submitted_at  # left over: cannot fire outside waiting_on_rep
    assert next_due(r) == min(t for t in (r.overdue_at, r.update_due_at) if t is not None)
