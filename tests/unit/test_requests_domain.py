"""Support requests domain: state machine, actors, validation, brief, events and timers.

Pure logic, no I/O and no wall clock. Dates (Europe/Amsterdam, CET = UTC+1 in late November
2026, business hours Mon-Fri 09:00-17:00, 8 h a day):

    Fri 2026-11-20, Mon 2026-11-23 .. Fri 2026-11-27, Mon 2026-11-30 .. Fri 2026-12-04,
    Mon 2026-12-07 .. Fri 2026-12-11.

Each state is built by walking the legal path; after each build the pending ``new_events`` /
``new_entries`` are cleared, as a store-and-reload by the handler would leave them.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from services.requests.domain import (
    KIND_DEPARTMENT,
    OPEN,
    STATUSES,
    Person,
    SupportRequest,
    brief_gaps,
    clean_person_input,
    submit,
    works_queue,
)
from shared.calendar import BusinessCalendar
from shared.config import load_settings
from shared.errors import BadInput, Conflict, Forbidden
from shared.events import build_event

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc
CAL = BusinessCalendar.from_settings(load_settings(env={}))

GAP_COMMITMENT = "commitment: say what was committed to the customer"
GAP_NOTICE = "notice: needed-by is less than 2 business days ahead"
GAP_DETAILS = "details: at least 80 characters help the team start"
DETAILS = "The customer needs a volume discount on 500 seats for a three-year term, renewal in Q1."
assert len(DETAILS) >= 80


def ams(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=AMS)


MON = ams(23, 10)  # Monday 2026-11-23 10:00 Amsterdam = 09:00 UTC
assert MON == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def person(id: str, role: str, department: str, active: bool = True) -> Person:
    return Person(id=id, email=f"{id}@example.com", name=id.title(), role=role, department=department, active=active)


REP = person("rep", "rep", "sales")
OTHER_REP = person("rep2", "rep", "sales")
SUP = person("sup", "support", "pricing")
SUP2 = person("sup2", "support", "pricing")
MGR = person("mgr", "manager", "pricing")
PRICING_REP = person("prep", "rep", "pricing")
LEGAL_SUP = person("lsup", "support", "legal")
LEGAL_MGR = person("lmgr", "manager", "legal")
ADMIN = person("adm", "admin", "sales")
INACTIVE_SUP = person("isup", "support", "pricing", active=False)


def raw(**changes: Any) -> dict[str, Any]:
    """A complete pricing brief, submitted at MON, needed Friday 17:00 (39 business hours)."""
    base = {
        "kind": "pricing",
        "title": "Discount for ACME",
        "details": DETAILS,
        "customer": "ACME",
        "deal_name": "ACME renewal",
        "deal_value": 120000,
        "commitment": "Promised a price by Friday",
        "needed_by": ams(27, 17),
        "priority": "normal",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def stored(request: SupportRequest) -> SupportRequest:
    """What the handler would reload after saving: no pending entries or events."""
    request.new_events.clear()
    request.new_entries.clear()
    return request


def new_request(now: datetime = MON, request_id: str | None = None, **changes: Any) -> SupportRequest:
    return submit(REP, raw(**changes), number=1, now=now, cal=CAL, request_id=request_id)


# -- walking the legal path to each status ------------------------------------------------------

def build(status: str) -> SupportRequest:
    r = stored(new_request())
    r.assign(MGR, [SUP], ams(23, 10, 30))  # an assignee in every status, so deliver reaches the status check
    if status == "submitted":
        return stored(r)
    if status == "cancelled":
        r.cancel(REP, "no longer needed", ams(23, 11))
        return stored(r)
    r.acknowledge(SUP, ams(23, 11), CAL)
    if status == "acknowledged":
        return stored(r)
    r.start(SUP, ams(23, 12))
    if status == "in_progress":
        return stored(r)
    if status == "waiting_on_rep":
        r.request_info(SUP, "Which term length?", ams(23, 13), CAL)
        return stored(r)
    r.deliver(SUP, "Price attached", ams(24, 10))
    if status == "delivered":
        return stored(r)
    r.close(REP, "won", "Thanks!", ams(24, 11), CAL)
    assert status == "closed"
    return stored(r)


def test_build_reaches_every_status():
    for status in STATUSES:
        assert build(status).status == status


LATER = ams(25, 10)  # after every step of build()

COMMANDS: dict[str, Callable[[SupportRequest], None]] = {
    "acknowledge": lambda r: r.acknowledge(SUP, LATER, CAL),
    "assign": lambda r: r.assign(MGR, [SUP, SUP2], LATER),
    "start": lambda r: r.start(SUP, LATER),
    "request_info": lambda r: r.request_info(SUP, "Which currency?", LATER, CAL),
    "provide_info": lambda r: r.provide_info(REP, "Euros", LATER, CAL),
    "post_deal_update": lambda r: r.post_deal_update(REP, "Customer is comparing vendors", LATER, CAL),
    "comment": lambda r: r.comment(REP, "Any news?", LATER),
    "deliver": lambda r: r.deliver(SUP, "Done", LATER),
    "close": lambda r: r.close(REP, "won", None, LATER, CAL),
    "cancel": lambda r: r.cancel(REP, "deal lost", LATER),
}

SAME = object()  # legal, status unchanged

# command -> {status it is legal in: resulting status}
LEGAL: dict[str, dict[str, Any]] = {
    "acknowledge": {"submitted": "acknowledged"},
    "assign": {s: SAME for s in OPEN},
    "start": {"acknowledged": "in_progress"},
    "request_info": {"acknowledged": "waiting_on_rep", "in_progress": "waiting_on_rep"},
    "provide_info": {"waiting_on_rep": "in_progress"},
    "post_deal_update": {s: SAME for s in (*OPEN, "delivered")},
    # Comments have no status rule in the domain: allowed on every request, even closed ones.
    "comment": {s: SAME for s in STATUSES},
    "deliver": {"in_progress": "delivered"},
    "close": {"delivered": "closed"},
    "cancel": {s: "cancelled" for s in OPEN},
}

EVENT_TYPE = {
    "acknowledge": "request.acknowledged",
    "assign": "request.assigned",
    "start": "request.started",
    "request_info": "request.info_requested",
    "provide_info": "request.info_provided",
    "post_deal_update": "request.deal_updated",
    "comment": "request.commented",
    "deliver": "request.delivered",
    "close": "request.closed",
    "cancel": "request.cancelled",
}
ACTOR = {
    "acknowledge": SUP, "assign": MGR, "start": SUP, "request_info": SUP, "provide_info": REP,
    "post_deal_update": REP, "comment": REP, "deliver": SUP, "close": REP, "cancel": REP,
}

CASES = [(cmd, status) for cmd in COMMANDS for status in STATUSES]


def test_the_table_covers_the_documented_states():
    assert STATUSES == ("submitted", "acknowledged", "in_progress", "waiting_on_rep", "delivered", "closed", "cancelled")
    assert OPEN == ("submitted", "acknowledged", "in_progress", "waiting_on_rep")
    assert len(CASES) == 70


def assert_schema_valid(request: SupportRequest) -> None:
    for rec in request.new_events:
        envelope = build_event(rec.type, request.id, rec.data, source="requests")
        assert envelope.type == rec.type and envelope.subject == request.id


@pytest.mark.parametrize("command, status", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_state_machine(command, status):
    request = build(status)
    before = copy.deepcopy(request)
    expected = LEGAL[command].get(status)
    if expected is None:
        with pytest.raises(Conflict) as exc:
            COMMANDS[command](request)
        assert exc.value.code == "illegal_transition"
        assert exc.value.status == 409
        assert exc.value.field == "status"
        assert request.status == status
        assert len(request.timeline) == len(before.timeline)
        assert request.new_events == [] and request.new_entries == []
        assert request == before  # nothing at all changed
        return
    COMMANDS[command](request)
    assert request.status == (status if expected is SAME else expected)
    assert len(request.timeline) == len(before.timeline) + 1
    assert [e.type for e in request.new_events] == [EVENT_TYPE[command]]
    assert request.new_events[0].data["status"] == request.status
    assert request.new_events[0].data["actor_id"] == ACTOR[command].id
    assert_schema_valid(request)


# -- actors -----------------------------------------------------------------------------------

def refused(exc_type, code, fn, request):
    before = copy.deepcopy(request)
    with pytest.raises(exc_type) as exc:
        fn(request)
    assert exc.value.code == code
    assert request == before, "a refused command must change nothing"
    return exc.value


@pytest.mark.parametrize("status, fn, code", [
    ("submitted", lambda r: r.acknowledge(REP, LATER, CAL), "not_in_queue"),
    ("submitted", lambda r: r.acknowledge(PRICING_REP, LATER, CAL), "not_in_queue"),
    ("acknowledged", lambda r: r.start(REP, LATER), "not_in_queue"),
    ("acknowledged", lambda r: r.start(PRICING_REP, LATER), "not_in_queue"),
    ("in_progress", lambda r: r.deliver(REP, None, LATER), "not_assignee"),
    ("in_progress", lambda r: r.request_info(REP, "?", LATER, CAL), "not_in_queue"),
    ("submitted", lambda r: r.assign(REP, [SUP], LATER), "not_in_queue"),
])
def test_a_rep_cannot_work_the_queue(status, fn, code):
    error = refused(Forbidden, code, fn, build(status))
    assert error.status == 403


@pytest.mark.parametrize("status, fn, code", [
    ("submitted", lambda r: r.acknowledge(LEGAL_SUP, LATER, CAL), "not_in_queue"),
    ("submitted", lambda r: r.acknowledge(LEGAL_MGR, LATER, CAL), "not_in_queue"),
    ("submitted", lambda r: r.assign(LEGAL_MGR, [SUP], LATER), "not_in_queue"),
    ("acknowledged", lambda r: r.start(LEGAL_SUP, LATER), "not_in_queue"),
    ("in_progress", lambda r: r.request_info(LEGAL_SUP, "?", LATER, CAL), "not_in_queue"),
    ("in_progress", lambda r: r.comment(LEGAL_SUP, "hi", LATER), "not_participant"),
    ("in_progress", lambda r: r.deliver(LEGAL_SUP, None, LATER), "not_assignee"),
])
def test_support_of_another_department_cannot_act_on_the_queue(status, fn, code):
    refused(Forbidden, code, fn, build(status))


def test_works_queue():
    assert works_queue(SUP, "pricing") and works_queue(MGR, "pricing") and works_queue(ADMIN, "pricing")
    assert not works_queue(LEGAL_SUP, "pricing")
    assert not works_queue(PRICING_REP, "pricing")
    assert not works_queue(REP, "sales")


@pytest.mark.parametrize("actor", [SUP2, MGR, ADMIN, REP], ids=lambda p: p.id)
def test_only_an_assignee_delivers(actor):
    request = build("in_progress")
    assert request.assignee_ids == ["sup"]
    error = refused(Forbidden, "not_assignee", lambda r: r.deliver(actor, None, LATER), request)
    assert error.status == 403
    request.deliver(SUP, None, LATER)
    assert request.status == "delivered"


@pytest.mark.parametrize("actor", [SUP, MGR, OTHER_REP, ADMIN], ids=lambda p: p.id)
@pytest.mark.parametrize("status, action", [
    ("waiting_on_rep", lambda r, a: r.provide_info(a, "answer", LATER, CAL)),
    ("in_progress", lambda r, a: r.post_deal_update(a, "update", LATER, CAL)),
    ("delivered", lambda r, a: r.close(a, "won", None, LATER, CAL)),
], ids=["provide_info", "post_deal_update", "close"])
def test_only_the_requester_answers_updates_and_closes(status, action, actor):
    refused(Forbidden, "not_requester", lambda r: action(r, actor), build(status))


@pytest.mark.parametrize("actor", [REP, MGR, LEGAL_MGR, ADMIN], ids=lambda p: p.id)
def test_cancel_by_requester_any_manager_or_admin(actor):
    request = build("in_progress")
    request.cancel(actor, "not needed", LATER)
    assert request.status == "cancelled"
    assert request.cancelled_at == LATER
    assert request.new_events[0].data["actor_id"] == actor.id
    assert request.new_events[0].data["reason"] == "not needed"


@pytest.mark.parametrize("actor", [SUP, LEGAL_SUP, OTHER_REP, PRICING_REP], ids=lambda p: p.id)
def test_cancel_refused_to_support_and_other_reps(actor):
    refused(Forbidden, "not_allowed_to_cancel", lambda r: r.cancel(actor, "nope", LATER), build("in_progress"))


def test_support_cannot_submit():
    with pytest.raises(Forbidden) as exc:
        submit(SUP, raw(), 1, MON, CAL)
    assert exc.value.code == "not_a_rep"
    assert exc.value.status == 403


@pytest.mark.parametrize("actor", [REP, MGR, ADMIN], ids=lambda p: p.id)
def test_reps_managers_and_admins_submit(actor):
    request = submit(actor, raw(), 7, MON, CAL)
    assert request.requester_id == actor.id and request.number == 7 and request.status == "submitted"


def test_acknowledging_an_unassigned_request_by_support_assigns_them():
    request = stored(new_request())
    assert request.assignee_ids == []
    request.acknowledge(SUP, ams(23, 11), CAL)
    assert request.assignee_ids == ["sup"]
    assert request.acknowledged_at == ams(23, 11)


def test_acknowledging_an_assigned_request_keeps_the_assignees():
    request = build("submitted")  # assigned to sup
    request.acknowledge(SUP2, LATER, CAL)
    assert request.assignee_ids == ["sup"]


def test_acknowledging_by_a_manager_does_not_assign_them():
    request = stored(new_request())
    request.acknowledge(MGR, ams(23, 11), CAL)
    assert request.status == "acknowledged"
    assert request.assignee_ids == []


def test_starting_by_unassigned_support_adds_them():
    request = build("acknowledged")
    request.start(SUP2, LATER)
    assert request.assignee_ids == ["sup", "sup2"]


@pytest.mark.parametrize("assignee", [PRICING_REP, LEGAL_SUP, LEGAL_MGR, INACTIVE_SUP, ADMIN, REP], ids=lambda p: p.id)
def test_assign_refuses_people_outside_the_department(assignee):
    error = refused(BadInput, "assignee_not_in_department",
                    lambda r: r.assign(MGR, [SUP, assignee], LATER), build("submitted"))
    assert error.field == "assignee_ids"
    assert error.status == 400


def test_assign_refuses_an_empty_list():
    error = refused(BadInput, "no_assignees", lambda r: r.assign(MGR, [], LATER), build("submitted"))
    assert error.field == "assignee_ids"


def test_assign_replaces_and_deduplicates():
    request = build("in_progress")
    request.assign(MGR, [SUP2, MGR, SUP2], LATER)
    assert request.assignee_ids == ["sup2", "mgr"]
    assert request.new_events[0].data["assignee_ids"] == ["sup2", "mgr"]
    assert request.new_entries[0].data == {"assignee_ids": ["sup2", "mgr"]}


# -- submit validation ----------------------------------------------------------------------

@pytest.mark.parametrize("field, value, code", [
    ("kind", _DROP, "invalid_kind"),
    ("kind", "", "invalid_kind"),
    ("title", _DROP, "missing_title"),
    ("title", "   ", "missing_title"),
    ("details", _DROP, "missing_details"),
    ("details", "", "missing_details"),
    ("customer", _DROP, "missing_customer"),
    ("customer", " \t", "missing_customer"),
    ("needed_by", _DROP, "invalid_needed_by"),
])
def test_submit_requires_each_field(field, value, code):
    with pytest.raises(BadInput) as exc:
        new_request(**{field: value})
    assert exc.value.code == code
    assert exc.value.field == field
    assert exc.value.status == 400


@pytest.mark.parametrize("needed_by", [MON, ams(23, 9, 59), ams(20, 12)], ids=["now", "a minute ago", "last week"])
def test_needed_by_must_be_in_the_future(needed_by):
    with pytest.raises(BadInput) as exc:
        new_request(needed_by=needed_by)
    assert (exc.value.code, exc.value.field) == ("needed_by_in_past", "needed_by")


@pytest.mark.parametrize("needed_by", [datetime(2026, 11, 27, 17, 0), "2026-11-27T17:00:00+01:00"], ids=["naive", "string"])
def test_needed_by_must_be_an_aware_datetime(needed_by):
    with pytest.raises(BadInput) as exc:
        new_request(needed_by=needed_by)
    assert (exc.value.code, exc.value.field) == ("invalid_needed_by", "needed_by")


@pytest.mark.parametrize("reason", [_DROP, None, "", "   "], ids=["absent", "none", "empty", "blank"])
def test_rush_needs_a_reason(reason):
    with pytest.raises(BadInput) as exc:
        new_request(priority="rush", rush_reason=reason)
    assert exc.value.code == "rush_needs_reason"
    assert exc.value.field == "rush_reason"


@pytest.mark.parametrize("priority", ["urgent", "RUSH", 3])
def test_bad_priority(priority):
    with pytest.raises(BadInput) as exc:
        new_request(priority=priority)
    assert (exc.value.code, exc.value.field) == ("invalid_priority", "priority")


def test_priority_defaults_to_normal():
    assert new_request(priority=_DROP).priority == "normal"
    assert new_request(priority="").priority == "normal"


@pytest.mark.parametrize("kind", ["support", "Pricing ", 5, None])
def test_bad_or_normalised_kind(kind):
    if kind == "Pricing ":  # _choice strips and lower-cases
        assert new_request(kind=kind).kind == "pricing"
        return
    with pytest.raises(BadInput) as exc:
        new_request(kind=kind)
    assert (exc.value.code, exc.value.field) == ("invalid_kind", "kind")


@pytest.mark.parametrize("value", [-1, -0.01, True, False, "1000", float("nan")], ids=repr)
def test_bad_deal_value(value):
    with pytest.raises(BadInput) as exc:
        new_request(deal_value=value)
    assert (exc.value.code, exc.value.field) == ("invalid_deal_value", "deal_value")


@pytest.mark.parametrize("value", [float("inf"), 1e999], ids=["inf", "1e999"])
def test_infinite_deal_value_is_refused(value):
    with pytest.raises(BadInput) as exc:
        new_request(deal_value=value)
    assert (exc.value.code, exc.value.field) == ("invalid_deal_value", "deal_value")


def test_deal_value_zero_and_ints_become_floats():
    zero = new_request(deal_value=0)
    assert zero.deal_value == 0.0 and isinstance(zero.deal_value, float)
    assert new_request(deal_value=_DROP).deal_value is None
    r = new_request(deal_value=1500)
    assert isinstance(r.deal_value, float) and r.deal_value == 1500.0


@pytest.mark.parametrize("kind, department", [
    ("pricing", "pricing"),
    ("exception", "sales"),
    ("customization", "product"),
    ("post_sale_service", "customer_service"),
    ("order_entry", "order_desk"),
    ("legal_review", "legal"),
    ("presales_technical", "presales"),
    ("marketing", "marketing"),
])
def test_kind_routes_to_department(kind, department):
    request = new_request(kind=kind)
    assert request.department == department
    assert request.new_events[0].data["department"] == department
    assert request.new_events[0].data["kind"] == kind
    assert_schema_valid(request)


def test_every_kind_is_routed():
    assert len(KIND_DEPARTMENT) == 8


def test_submit_builds_the_request():
    request = new_request(request_id="r_fixed", title="  Discount for ACME  ", deal_name="  ", commitment="  ")
    assert request.id == "r_fixed"
    assert request.title == "Discount for ACME"
    assert request.deal_name is None and request.commitment is None
    assert request.status == "submitted"
    assert request.submitted_at == MON
    assert request.overdue_at == ams(27, 17)
    assert request.update_due_at == ams(30, 10)
    assert request.info_due_at is None
    assert request.notice_business_hours == 39.0  # Mon 7 + Tue..Thu 24 + Fri 8
    assert [e.type for e in request.timeline] == ["submitted"]
    assert request.timeline[0].actor_id == "rep" and request.timeline[0].at == MON
    assert request.timeline[0].text == "Discount for ACME"
    assert [e.type for e in request.new_events] == ["request.submitted"]
    assert request.new_events[0].id is None


def test_submit_refuses_overlong_title():
    with pytest.raises(BadInput) as exc:
        new_request(title="x" * 201)
    assert (exc.value.code, exc.value.field) == ("title_too_long", "title")
    assert new_request(title="x" * 200).title == "x" * 200


# -- brief completeness ---------------------------------------------------------------------

def test_complete_brief():
    request = new_request()
    assert request.brief_complete is True
    assert request.brief_gaps == []


def test_missing_commitment_is_a_gap():
    request = new_request(commitment=_DROP)
    assert request.brief_complete is False
    assert request.brief_gaps == [GAP_COMMITMENT]


@pytest.mark.parametrize("details, gaps", [
    ("x" * 79, [GAP_DETAILS]),
    ("x" * 80, []),
    ("   " + "x" * 79 + "   \n", [GAP_DETAILS]),  # strip applies: still 79
    ("  " + "x" * 80 + "  ", []),
])
def test_details_need_80_characters(details, gaps):
    request = new_request(details=details)
    assert request.brief_gaps == gaps
    assert request.brief_complete is (gaps == [])
    assert brief_gaps(details, "committed", 40.0, "normal", None, CAL) == gaps


@pytest.mark.parametrize("needed_by, notice, gaps", [
    (ams(25, 10), 16.0, []),  # exactly 2 business days
    (ams(25, 9, 59), 15.9833, [GAP_NOTICE]),
    (ams(24, 17), 15.0, [GAP_NOTICE]),
    (ams(23, 12), 2.0, [GAP_NOTICE]),
])
def test_notice_needs_two_business_days(needed_by, notice, gaps):
    request = new_request(needed_by=needed_by)
    assert request.notice_business_hours == notice
    assert request.brief_gaps == gaps


def test_rush_with_reason_excuses_short_notice():
    request = new_request(needed_by=ams(23, 12), priority="rush", rush_reason="Board meets at noon")
    assert request.notice_business_hours == 2.0
    assert request.brief_complete is True
    assert request.brief_gaps == []
    assert request.rush_reason == "Board meets at noon"


def test_rush_with_reason_still_needs_the_other_parts():
    request = new_request(needed_by=ams(23, 12), priority="rush", rush_reason="Board", commitment=_DROP, details="short")
    assert request.brief_gaps == [GAP_COMMITMENT, GAP_DETAILS]
    assert request.brief_complete is False


def test_high_priority_does_not_excuse_short_notice():
    assert new_request(needed_by=ams(23, 12), priority="high").brief_gaps == [GAP_NOTICE]


def test_brief_gaps_lists_every_gap_in_order():
    assert brief_gaps("short", None, 3.0, "normal", None, CAL) == [GAP_COMMITMENT, GAP_NOTICE, GAP_DETAILS]
    assert brief_gaps("short", None, 3.0, "rush", None, CAL) == [GAP_COMMITMENT, GAP_NOTICE, GAP_DETAILS]
    assert brief_gaps(DETAILS, "c", 3.0, "rush", "why", CAL) == []


def test_submitted_event_carries_the_brief_facts():
    request = new_request(needed_by=ams(24, 17), details="  " + "y" * 79 + " ", commitment=_DROP)
    (event,) = request.new_events
    assert event.type == "request.submitted"
    data = event.data
    assert data["brief_complete"] is False
    assert data["brief_gaps"] == [GAP_COMMITMENT, GAP_NOTICE, GAP_DETAILS]
    assert data["notice_business_hours"] == 15.0
    assert data["details_length"] == 79
    assert data["request_id"] == request.id and data["requester_id"] == "rep"
    assert data["department"] == "pricing" and data["actor_id"] == "rep"
    assert data["status"] == "submitted" and data["at"] == MON
    assert data["needed_by"] == ams(24, 17) and data["priority"] == "normal"
    assert data["deal_value"] == 120000.0 and data["customer"] == "ACME"
    assert_schema_valid(request)


def test_submitted_event_complete_brief():
    data = new_request().new_events[0].data
    assert data["brief_complete"] is True and data["brief_gaps"] == []
    assert data["details_length"] == len(DETAILS)
    assert data["notice_business_hours"] == 39.0


# -- events and timeline ----------------------------------------------------------------------

@pytest.mark.parametrize("command, status", [
    ("acknowledge", "submitted"),
    ("assign", "in_progress"),
    ("start", "acknowledged"),
    ("request_info", "in_progress"),
    ("provide_info", "waiting_on_rep"),
    ("post_deal_update", "delivered"),
    ("comment", "closed"),
    ("deliver", "in_progress"),
    ("close", "delivered"),
    ("cancel", "waiting_on_rep"),
])
def test_every_command_appends_one_entry_and_one_event(command, status):
    request = build(status)
    before = len(request.timeline)
    COMMANDS[command](request)
    actor = ACTOR[command]
    assert len(request.timeline) == before + 1
    assert request.new_entries == [request.timeline[-1]]
    entry = request.timeline[-1]
    assert entry.actor_id == actor.id
    assert entry.at == LATER
    assert entry.type == EVENT_TYPE[command].removeprefix("request.")
    assert len(request.new_events) == 1
    rec = request.new_events[0]
    assert rec.type == EVENT_TYPE[command]
    assert rec.id is None
    expected_common = {
        "request_id": request.id,
        "requester_id": "rep",
        "department": "pricing",
        "actor_id": actor.id,
        "status": request.status,
        "at": LATER,
    }
    assert {k: rec.data[k] for k in expected_common} == expected_common
    assert_schema_valid(request)


def test_acknowledged_counts_business_hours_since_submitted():
    request = stored(new_request(now=ams(20, 16)))  # Friday 16:00
    request.acknowledge(SUP, ams(23, 10), CAL)  # Monday 10:00
    (event,) = request.new_events
    assert event.data["business_hours_since_submitted"] == 2.0
    assert_schema_valid(request)


def test_info_provided_counts_business_hours_to_answer():
    request = build("in_progress")
    request.request_info(SUP, "Which term?", ams(23, 16), CAL)  # Monday 16:00
    assert request.info_request_count == 1
    assert request.info_due_at == ams(24, 16)
    assert request.new_events[0].data["question"] == "Which term?"
    assert request.timeline[-1].text == "Which term?"
    stored(request)
    request.provide_info(REP, "Three years", ams(24, 9, 30), CAL)  # Tuesday 09:30
    (event,) = request.new_events
    assert event.data["business_hours_to_answer"] == 1.5
    assert request.status == "in_progress"
    assert request.info_due_at is None
    assert request.timeline[-1].text == "Three years"
    assert_schema_valid(request)


@pytest.mark.parametrize("fn, code, field", [
    (lambda r: r.request_info(SUP, "  ", LATER, CAL), "missing_question", "question"),
    (lambda r: r.request_info(SUP, None, LATER, CAL), "missing_question", "question"),
    (lambda r: r.comment(REP, "", LATER), "missing_text", "text"),
    (lambda r: r.post_deal_update(REP, " ", LATER, CAL), "missing_text", "text"),
    (lambda r: r.cancel(REP, "", LATER), "missing_reason", "reason"),
])
def test_empty_text_is_refused_and_changes_nothing(fn, code, field):
    error = refused(BadInput, code, fn, build("in_progress"))
    assert error.field == field


def test_empty_answer_is_refused():
    error = refused(BadInput, "missing_answer", lambda r: r.provide_info(REP, "", LATER, CAL), build("waiting_on_rep"))
    assert error.field == "answer"


def test_deal_updated_counts_business_hours_since_last_update():
    request = stored(new_request())
    request.post_deal_update(REP, "Call went well", ams(23, 11), CAL)
    first = request.new_events[-1]
    assert first.data["business_hours_since_last_update"] is None
    assert first.data["text"] == "Call went well"
    assert_schema_valid(request)
    stored(request)
    request.post_deal_update(REP, "Legal is reviewing", ams(24, 11), CAL)
    (second,) = request.new_events
    assert second.data["business_hours_since_last_update"] == 8.0
    assert request.last_deal_update_at == ams(24, 11)
    assert_schema_valid(request)


def test_deal_update_after_delivery_does_not_rearm_the_update_timer():
    request = build("delivered")
    assert request.update_due_at is None
    request.post_deal_update(REP, "Signed", LATER, CAL)
    assert request.update_due_at is None
    assert request.status == "delivered"


@pytest.mark.parametrize("delivered_at, on_time", [
    (ams(27, 16, 59), True),
    (ams(27, 17), True),  # exactly at needed-by
    (ams(27, 17, 1), False),
    (ams(30, 9), False),
])
def test_delivered_carries_on_time(delivered_at, on_time):
    request = build("in_progress")
    request.deliver(SUP, "  Here it is  ", delivered_at)
    (event,) = request.new_events
    assert event.data["on_time"] is on_time
    assert event.data["rush"] is False
    assert event.data["priority"] == "normal"
    assert event.data["notice_business_hours"] == 39.0
    assert event.data["needed_by"] == ams(27, 17)
    assert event.data["assignee_ids"] == ["sup"]
    assert request.timeline[-1].text == "Here it is"
    assert request.delivered_at == delivered_at
    assert (request.overdue_at, request.update_due_at, request.info_due_at) == (None, None, None)
    assert_schema_valid(request)


def test_delivered_carries_rush():
    request = stored(new_request(needed_by=ams(23, 15), priority="rush", rush_reason="Board meeting"))
    request.acknowledge(SUP, ams(23, 11), CAL)
    request.start(SUP, ams(23, 12))
    stored(request)
    request.deliver(SUP, None, ams(23, 14))
    (event,) = request.new_events
    assert event.data["rush"] is True
    assert event.data["priority"] == "rush"
    assert event.data["notice_business_hours"] == 5.0
    assert event.data["on_time"] is True
    assert request.timeline[-1].text is None
    assert_schema_valid(request)


@pytest.mark.parametrize("outcome", ["won", "lost", "no_decision", "not_applicable"])
def test_closed_carries_outcome_and_hours_since_delivered(outcome):
    request = build("in_progress")
    request.deliver(SUP, None, ams(25, 15))  # Wednesday 15:00
    stored(request)
    request.close(REP, outcome, "Thanks team", ams(26, 10), CAL)  # Thursday 10:00
    (event,) = request.new_events
    assert event.data["outcome"] == outcome
    assert event.data["business_hours_since_delivered"] == 3.0
    assert request.outcome == outcome
    assert request.closed_at == ams(26, 10)
    assert request.timeline[-1].data == {"outcome": outcome}
    assert request.timeline[-1].text == "Thanks team"
    assert_schema_valid(request)


@pytest.mark.parametrize("outcome", ["maybe", "", None, "WON"])
def test_invalid_outcome_is_refused(outcome):
    error = refused(BadInput, "invalid_outcome", lambda r: r.close(REP, outcome, None, LATER, CAL), build("delivered"))
    assert error.field == "outcome"


def test_full_lifecycle_events_all_match_their_schemas():
    request = new_request(now=ams(20, 16))
    events = list(request.new_events)
    stored(request)
    steps = [
        lambda r: r.acknowledge(SUP, ams(23, 10), CAL),
        lambda r: r.assign(MGR, [SUP, SUP2], ams(23, 10, 30)),
        lambda r: r.start(SUP2, ams(23, 11)),
        lambda r: r.post_deal_update(REP, "Update 1", ams(23, 12), CAL),
        lambda r: r.request_info(SUP, "Term?", ams(23, 13), CAL),
        lambda r: r.fire_due_timers(ams(24, 13), CAL),  # info_unanswered
        lambda r: r.provide_info(REP, "3 years", ams(24, 14), CAL),
        lambda r: r.comment(SUP, "Working on it", ams(24, 15)),
        lambda r: r.fire_due_timers(ams(27, 17), CAL),  # overdue
        lambda r: r.fire_due_timers(ams(30, 16), CAL),  # update_due (Mon 23 12:00 + 5 bd = Mon 30 12:00)
        lambda r: r.deliver(SUP2, "Done", ams(30, 16, 30)),
        lambda r: r.post_deal_update(REP, "Update 2", ams(30, 16, 45), CAL),
        lambda r: r.close(REP, "lost", None, ams(1, 10, month=12), CAL),
    ]
    for step in steps:
        step(request)
        events.extend(request.new_events)
        assert_schema_valid(request)
        stored(request)
    assert [e.type for e in events] == [
        "request.submitted", "request.acknowledged", "request.assigned", "request.started",
        "request.deal_updated", "request.info_requested", "request.info_unanswered", "request.info_provided",
        "request.commented", "request.overdue", "request.update_due", "request.delivered",
        "request.deal_updated", "request.closed",
    ]
    assert len(request.timeline) == len(events)
    assert request.status == "closed"
    by_type = {e.type: e for e in events}
    assert by_type["request.delivered"].data["assignee_ids"] == ["sup", "sup2"]
    assert by_type["request.delivered"].data["on_time"] is False
    assert by_type["request.closed"].data["business_hours_since_delivered"] == 1.5
    assert by_type["request.acknowledged"].data["business_hours_since_submitted"] == 2.0


# -- timers -----------------------------------------------------------------------------------

def timer_request(**changes: Any) -> SupportRequest:
    """Submitted Mon 23 Nov 10:00; needed Fri 27 17:00 unless changed; update due Mon 30 10:00."""
    return stored(new_request(request_id="r_timer", **changes))


def test_overdue_fires_once_at_needed_by():
    request = timer_request()
    assert request.fire_due_timers(ams(27, 16, 59), CAL) == []
    assert request.new_events == [] and len(request.timeline) == 1
    assert request.fire_due_timers(ams(27, 17), CAL) == ["overdue"]
    (event,) = request.new_events
    assert event.type == "request.overdue"
    assert event.data["occurrence"] == 1
    assert event.data["due_at"] == ams(27, 17)
    assert event.data["actor_id"] == "system"
    assert event.data["status"] == "submitted"
    assert event.data["at"] == ams(27, 17)
    assert request.timeline[-1].actor_id == "system"
    assert request.timeline[-1].type == "overdue"
    assert request.timeline[-1].data == {"occurrence": 1, "due_at": ams(27, 17).isoformat()}
    assert request.overdue_at is None
    assert_schema_valid(request)
    stored(request)
    assert request.fire_due_timers(ams(27, 18), CAL) == []
    assert request.fire_due_timers(ams(28, 12), CAL) == []
    assert request.new_events == []


@pytest.mark.parametrize("status", ["acknowledged", "in_progress", "waiting_on_rep"])
def test_overdue_fires_on_every_open_status(status):
    request = build(status)
    assert "overdue" in request.fire_due_timers(ams(27, 17, 30), CAL)
    overdue = [e for e in request.new_events if e.type == "request.overdue"]
    assert len(overdue) == 1 and overdue[0].data["status"] == status


@pytest.mark.parametrize("status", ["delivered", "closed", "cancelled"])
def test_no_timers_fire_once_the_request_is_no_longer_open(status):
    request = build(status)
    assert request.fire_due_timers(ams(11, 17, month=12), CAL) == []
    assert request.new_events == []


@pytest.mark.parametrize("status", ["delivered", "cancelled"])
def test_no_timers_fire_on_a_closed_request_even_if_a_timer_was_left_set(status):
    request = build(status)
    request.overdue_at = ams(27, 17)
    request.update_due_at = ams(30, 10)
    request.info_due_at = ams(24, 10)
    assert request.fire_due_timers(ams(11, 17, month=12), CAL) == []
    assert request.new_events == []


def test_update_due_fires_after_five_business_days_then_again():
    request = timer_request(needed_by=ams(31, 17, month=12))
    assert request.update_due_at == ams(30, 10)
    assert CAL.business_hours_between(MON, request.update_due_at) == 40.0
    assert request.fire_due_timers(ams(30, 9, 59), CAL) == []
    assert request.fire_due_timers(ams(30, 10), CAL) == ["update_due"]
    (first,) = request.new_events
    assert first.type == "request.update_due"
    assert first.data["occurrence"] == 1
    assert first.data["due_at"] == ams(30, 10)
    assert first.data["actor_id"] == "system"
    assert_schema_valid(request)
    stored(request)
    assert request.update_due_at == ams(7, 10, month=12)
    assert request.fire_due_timers(ams(4, 17, month=12), CAL) == []
    assert request.fire_due_timers(ams(7, 10, month=12), CAL) == ["update_due"]
    (second,) = request.new_events
    assert second.data["occurrence"] == 2
    assert second.data["due_at"] == ams(7, 10, month=12)
    assert second.id != first.id
    assert_schema_valid(request)
    stored(request)
    assert request.fire_due_timers(ams(7, 10, month=12), CAL) == []


def test_a_deal_update_pushes_the_update_timer_back():
    request = timer_request(needed_by=ams(31, 17, month=12))
    request.post_deal_update(REP, "Still talking", ams(25, 10), CAL)  # Wednesday
    assert request.update_due_at == ams(2, 10, month=12)  # next Wednesday
    stored(request)
    assert request.fire_due_timers(ams(30, 10), CAL) == []
    assert request.fire_due_timers(ams(2, 9, 59, month=12), CAL) == []
    assert request.fire_due_timers(ams(2, 10, month=12), CAL) == ["update_due"]
    assert request.new_events[0].data["occurrence"] == 1
    assert request.new_events[0].data["due_at"] == ams(2, 10, month=12)


def test_update_due_and_overdue_fire_together():
    request = timer_request()
    assert request.fire_due_timers(ams(30, 10), CAL) == ["overdue", "update_due"]
    assert [e.type for e in request.new_events] == ["request.overdue", "request.update_due"]
    assert len(request.new_entries) == 2
    assert_schema_valid(request)


def test_info_unanswered_fires_once_per_info_request():
    request = stored(new_request(request_id="r_info", needed_by=ams(31, 17, month=12)))
    request.acknowledge(SUP, ams(23, 10, 30), CAL)
    request.request_info(SUP, "Term?", ams(23, 11), CAL)
    assert request.info_due_at == ams(24, 11)
    stored(request)
    assert request.fire_due_timers(ams(24, 10, 59), CAL) == []
    assert request.fire_due_timers(ams(24, 11), CAL) == ["info_unanswered"]
    (first,) = request.new_events
    assert first.type == "request.info_unanswered"
    assert first.data["occurrence"] == 1
    assert first.data["due_at"] == ams(24, 11)
    assert first.data["status"] == "waiting_on_rep"
    assert first.data["actor_id"] == "system"
    assert_schema_valid(request)
    stored(request)
    assert request.fire_due_timers(ams(25, 11), CAL) == []
    request.provide_info(REP, "3 years", ams(25, 12), CAL)
    request.request_info(SUP, "Currency?", ams(25, 13), CAL)
    assert request.info_request_count == 2
    stored(request)
    assert request.fire_due_timers(ams(26, 12, 59), CAL) == []
    assert request.fire_due_timers(ams(26, 13), CAL) == ["info_unanswered"]
    (second,) = request.new_events
    assert second.data["occurrence"] == 2
    assert second.id != first.id


def test_info_unanswered_does_not_fire_once_answered():
    request = build("waiting_on_rep")  # info requested Mon 13:00, due Tue 13:00
    request.provide_info(REP, "answer", ams(24, 12), CAL)
    stored(request)
    assert request.fire_due_timers(ams(24, 14), CAL) == []


def test_timer_ids_are_deterministic():
    def fire(request_id: str) -> list:
        request = timer_request() if request_id == "r_timer" else stored(new_request(request_id=request_id))
        request.fire_due_timers(ams(30, 10), CAL)
        request.fire_due_timers(ams(7, 10, month=12), CAL)
        return request.new_events

    a, b, c = fire("r_timer"), fire("r_timer"), fire("r_other")
    assert [e.type for e in a] == ["request.overdue", "request.update_due", "request.update_due"]
    assert [e.id for e in a] == [e.id for e in b]  # same request, type, occurrence: same id
    assert all(e.id is not None for e in a)
    assert len({e.id for e in a}) == 3  # type and occurrence both matter
    assert not {e.id for e in a} & {e.id for e in c}  # another request: other ids
    for e in a:
        assert str(uuid.UUID(e.id)) == e.id
    assert a[0].id == str(uuid.uuid5(uuid.NAMESPACE_URL, "insidetrack:r_timer:overdue:1"))


# -- people -----------------------------------------------------------------------------------

PERSON_RAW = {"email": "  Ana.Lopez@Example.COM ", "name": " Ana López ", "role": "Support", "department": "LEGAL"}


def test_clean_person_input_normalises():
    cleaned = clean_person_input(PERSON_RAW)
    assert cleaned == {
        "email": "ana.lopez@example.com",
        "name": "Ana López",
        "role": "support",
        "department": "legal",
        "title": None,
        "manager_id": None,
        "active": True,
    }


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@example.com", "@example.com"])
def test_clean_person_input_refuses_a_bad_email(email):
    with pytest.raises(BadInput) as exc:
        clean_person_input({**PERSON_RAW, "email": email})
    assert (exc.value.code, exc.value.field) == ("invalid_email", "email")


def test_clean_person_input_requires_an_email():
    with pytest.raises(BadInput) as exc:
        clean_person_input({**PERSON_RAW, "email": ""})
    assert (exc.value.code, exc.value.field) == ("missing_email", "email")


@pytest.mark.parametrize("field, value, code", [
    ("role", "wizard", "invalid_role"),
    ("role", None, "invalid_role"),
    ("department", "finance", "invalid_department"),
    ("department", "", "invalid_department"),
])
def test_clean_person_input_refuses_unknown_role_or_department(field, value, code):
    with pytest.raises(BadInput) as exc:
        clean_person_input({**PERSON_RAW, field: value})
    assert (exc.value.code, exc.value.field) == (code, field)


@pytest.mark.parametrize("active, expected", [
    ("true", True), ("false", False), ("", True), (" FALSE ", False), ("True", True),
    ("yes", True), ("no", False), ("1", True), ("0", False), (True, True), (False, False),
])
def test_clean_person_input_parses_active(active, expected):
    assert clean_person_input({**PERSON_RAW, "active": active})["active"] is expected


def test_clean_person_input_active_defaults_to_true():
    assert clean_person_input(PERSON_RAW)["active"] is True


@pytest.mark.parametrize("active", ["maybe", 1, None, "t"])
def test_clean_person_input_refuses_bad_active(active):
    with pytest.raises(BadInput) as exc:
        clean_person_input({**PERSON_RAW, "active": active})
    assert (exc.value.code, exc.value.field) == ("invalid_active", "active")


def test_person_upserted_schema_accepts_a_cleaned_person():
    cleaned = clean_person_input({**PERSON_RAW, "title": "Counsel", "manager_id": "p_boss"})
    event = build_event("person.upserted", "p1", {"person_id": "p1", **cleaned}, source="requests")
    assert event.data["email"] == "ana.lopez@example.com" and event.data["title"] == "Counsel"


def test_names_and_titles_lose_invisible_and_direction_changing_characters():
    cleaned = clean_person_input({**PERSON_RAW, "name": "\u202eAna\u202c\u200b L\x00ópez\n", "title": "Lead\u2066 \u200fCounsel\x07"})
    assert (cleaned["name"], cleaned["title"]) == ("Ana López", "Lead Counsel")


@pytest.mark.parametrize("name", ["\u202e\u200b", "\x00\x07", "\ufeff \u2066"])
def test_a_name_of_only_invisible_characters_is_refused(name):
    with pytest.raises(BadInput) as exc:
        clean_person_input({**PERSON_RAW, "name": name})
    assert (exc.value.code, exc.value.field) == ("missing_name", "name")
