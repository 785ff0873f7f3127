"""Support requests and the people directory: the rules, with no I/O.

A rep asks an internal team for help with a brief; the team works it through

    submitted -> acknowledged -> in_progress <-> waiting_on_rep -> delivered -> closed(outcome)

(the team may also ask for information right after acknowledging: acknowledged ->
waiting_on_rep) and ``cancelled`` from any open state. Deal updates are allowed on open and
delivered requests; comments at any time. Every change appends a timeline entry and records the
event it produced; the handler stores both in one write. Who may do what is decided here.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.calendar import BusinessCalendar
from shared.errors import BadInput, Conflict, Forbidden
from shared.text import one_line
from shared.vocabulary import BRIEF_MIN_DETAILS, BRIEF_MIN_NOTICE_DAYS, Department, Outcome, Priority, RequestKind, RequestStatus, Role, values

# Which department's queue each kind of request goes to. Exceptions (a rushed call to a
# customer, an exception to policy) are decided by sales management.
KIND_DEPARTMENT: dict[str, str] = {
    RequestKind.PRESALES_TECHNICAL.value: Department.PRESALES.value,
    RequestKind.MARKETING.value: Department.MARKETING.value,
    RequestKind.PRICING.value: Department.PRICING.value,
    RequestKind.LEGAL_REVIEW.value: Department.LEGAL.value,
    RequestKind.ORDER_ENTRY.value: Department.ORDER_DESK.value,
    RequestKind.CUSTOMIZATION.value: Department.PRODUCT.value,
    RequestKind.POST_SALE_SERVICE.value: Department.CUSTOMER_SERVICE.value,
    RequestKind.EXCEPTION.value: Department.SALES.value,
}
KINDS = values(RequestKind)

# The lifecycle's states as the documents and events carry them (plain strings).
SUBMITTED, ACKNOWLEDGED = RequestStatus.SUBMITTED.value, RequestStatus.ACKNOWLEDGED.value
IN_PROGRESS, WAITING_ON_REP = RequestStatus.IN_PROGRESS.value, RequestStatus.WAITING_ON_REP.value
DELIVERED, CLOSED, CANCELLED = RequestStatus.DELIVERED.value, RequestStatus.CLOSED.value, RequestStatus.CANCELLED.value
OPEN = (SUBMITTED, ACKNOWLEDGED, IN_PROGRESS, WAITING_ON_REP)
STATUSES = values(RequestStatus)
PRIORITIES = values(Priority)
OUTCOMES = values(Outcome)
ROLES = values(Role)
DEPARTMENTS = values(Department)

# Brief and timer rules (BRIEF: "Recognition rules"; the points service scores the facts).
UPDATE_DUE_DAYS = 5
INFO_ANSWER_DAYS = 1
SYSTEM_ACTOR = "system"

LIMITS = {"title": 200, "details": 5000, "customer": 200, "deal_name": 200, "commitment": 2000,
          "rush_reason": 1000, "text": 5000, "name": 200, "title_person": 200}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


# -- people ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: str
    email: str
    name: str
    role: str
    department: str
    title: str | None = None
    manager_id: str | None = None
    active: bool = True
    hidden: bool = False  # off everyone else's leaderboards: the person's own setting, not an admin's

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


def clean_person_input(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a person as an admin or the CSV import gives it; raises BadInput naming the field."""
    email = _text(raw, "email", required=True, limit=320).lower()
    if not EMAIL.match(email):
        raise BadInput("invalid_email", f"{email!r} is not an email address", field="email")
    role = _choice(raw, "role", ROLES)
    department = _choice(raw, "department", DEPARTMENTS)
    active = raw.get("active", True)
    if isinstance(active, str):
        if active.strip().lower() not in ("true", "false", "yes", "no", "1", "0", ""):
            raise BadInput("invalid_active", "active must be true or false", field="active")
        active = active.strip().lower() in ("true", "yes", "1", "")
    if not isinstance(active, bool):
        raise BadInput("invalid_active", "active must be true or false", field="active")
    return {
        "email": email,
        # Names and titles are shown on one line everywhere (cards, screens): no line breaks,
        # no invisible or direction-changing characters.
        "name": _name(raw),
        "role": role,
        "department": department,
        "title": one_line(_text(raw, "title", limit=LIMITS["title_person"])) or None,
        "manager_id": _text(raw, "manager_id", limit=64) or None,
        "active": active,
    }


def _name(raw: dict[str, Any]) -> str:
    name = one_line(_text(raw, "name", required=True, limit=LIMITS["name"]))
    if not name:
        raise BadInput("missing_name", "name is required (visible characters)", field="name")
    return name


# -- actors and permissions -----------------------------------------------------------------

def works_queue(actor: Person, department: str) -> bool:
    """Support staff and managers of a department work its queue; admins may act anywhere."""
    return actor.is_admin or (actor.department == department and actor.role in (Role.SUPPORT.value, Role.MANAGER.value))


def can_submit(actor: Person) -> bool:
    return actor.role in (Role.REP.value, Role.MANAGER.value, Role.ADMIN.value)


# -- the request aggregate ------------------------------------------------------------------

@dataclass
class TimelineEntry:
    id: str
    at: datetime
    actor_id: str
    type: str
    text: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recorded:
    """An event the aggregate produced: its type and data (the handler builds the envelope)."""

    type: str
    data: dict[str, Any]
    id: str | None = None  # deterministic for timer events, so a retry produces the same event


@dataclass
class SupportRequest:
    id: str
    number: int
    requester_id: str
    department: str
    kind: str
    title: str
    details: str
    customer: str
    needed_by: datetime
    priority: str
    submitted_at: datetime
    notice_business_hours: float
    brief_complete: bool
    brief_gaps: list[str]
    deal_name: str | None = None
    deal_value: float | None = None
    commitment: str | None = None
    rush_reason: str | None = None
    status: str = SUBMITTED
    outcome: str | None = None
    assignee_ids: list[str] = field(default_factory=list)
    acknowledged_at: datetime | None = None
    delivered_at: datetime | None = None
    closed_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_deal_update_at: datetime | None = None
    info_requested_at: datetime | None = None
    info_request_count: int = 0
    # Timers: the next moment each fires; None when it cannot fire (indexed for the sweeper).
    overdue_at: datetime | None = None
    update_due_at: datetime | None = None
    update_due_count: int = 0
    info_due_at: datetime | None = None
    version: int = 0
    timeline: list[TimelineEntry] = field(default_factory=list)
    # Produced by the current command, not yet stored.
    new_entries: list[TimelineEntry] = field(default_factory=list, repr=False)
    new_events: list[Recorded] = field(default_factory=list, repr=False)

    # -- recording ----------------------------------------------------------------------------

    def _record(self, type: str, actor_id: str, at: datetime, text: str | None = None,
                entry_data: dict | None = None, event_data: dict | None = None, event_id: str | None = None) -> None:
        entry = TimelineEntry(id=uuid.uuid4().hex, at=at, actor_id=actor_id, type=type, text=text, data=entry_data or {})
        self.new_entries.append(entry)
        self.timeline.append(entry)
        data = {
            "request_id": self.id,
            "requester_id": self.requester_id,
            "department": self.department,
            "actor_id": actor_id,
            "status": self.status,
            "at": at,
            **(event_data or {}),
        }
        self.new_events.append(Recorded(type=f"request.{type}", data=data, id=event_id))

    def _require_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise Conflict(
                "illegal_transition",
                f"cannot {action} a request that is {self.status.replace('_', ' ')} "
                f"(allowed when {', '.join(s.replace('_', ' ') for s in allowed)})",
                field="status",
            )

    def _require_worker(self, actor: Person, action: str) -> None:
        if not works_queue(actor, self.department):
            raise Forbidden("not_in_queue", f"only {self.department} support staff or managers can {action} this request")

    def _require_requester(self, actor: Person, action: str) -> None:
        if actor.id != self.requester_id:
            raise Forbidden("not_requester", f"only the rep who filed this request can {action} it")

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    # -- commands -----------------------------------------------------------------------------

    def acknowledge(self, actor: Person, now: datetime, cal: BusinessCalendar) -> None:
        self._require_worker(actor, "acknowledge")
        self._require_status("acknowledge", SUBMITTED)
        self.status = ACKNOWLEDGED
        self.acknowledged_at = now
        if not self.assignee_ids and actor.role == Role.SUPPORT.value:
            self.assignee_ids = [actor.id]  # whoever acknowledges an unassigned request takes it
        self._record("acknowledged", actor.id, now, event_data={
            "business_hours_since_submitted": round(cal.business_hours_between(self.submitted_at, now), 4),
        })

    def assign(self, actor: Person, assignees: list[Person], now: datetime) -> None:
        self._require_worker(actor, "assign")
        self._require_status("assign", *OPEN)
        if not assignees:
            raise BadInput("no_assignees", "name at least one assignee", field="assignee_ids")
        for person in assignees:
            if not person.active or not works_queue(person, self.department) or person.is_admin:
                raise BadInput(
                    "assignee_not_in_department",
                    f"{person.name} does not work the {self.department} queue", field="assignee_ids",
                )
        self.assignee_ids = list(dict.fromkeys(p.id for p in assignees))
        self._record("assigned", actor.id, now, entry_data={"assignee_ids": self.assignee_ids},
                     event_data={"assignee_ids": self.assignee_ids})

    def start(self, actor: Person, now: datetime) -> None:
        self._require_worker(actor, "start")
        self._require_status("start", ACKNOWLEDGED)
        if actor.id not in self.assignee_ids and actor.role == Role.SUPPORT.value:
            self.assignee_ids.append(actor.id)
        self.status = IN_PROGRESS
        self._record("started", actor.id, now)

    def request_info(self, actor: Person, question: str, now: datetime, cal: BusinessCalendar) -> None:
        self._require_worker(actor, "ask about")
        self._require_status("ask for information on", ACKNOWLEDGED, IN_PROGRESS)
        question = _required_text(question, "question")
        self.status = WAITING_ON_REP
        self.info_requested_at = now
        self.info_request_count += 1
        self.info_due_at = cal.add_business_days(now, INFO_ANSWER_DAYS)
        self._record("info_requested", actor.id, now, text=question, event_data={"question": question})

    def provide_info(self, actor: Person, answer: str, now: datetime, cal: BusinessCalendar) -> None:
        self._require_requester(actor, "answer questions on")
        self._require_status("answer on", WAITING_ON_REP)
        answer = _required_text(answer, "answer")
        waited = cal.business_hours_between(self.info_requested_at, now)
        self.status = IN_PROGRESS
        self.info_due_at = None
        self._record("info_provided", actor.id, now, text=answer,
                     event_data={"business_hours_to_answer": round(waited, 4)})

    def post_deal_update(self, actor: Person, text: str, now: datetime, cal: BusinessCalendar) -> None:
        self._require_requester(actor, "post deal updates on")
        self._require_status("post a deal update on", *OPEN, DELIVERED)
        text = _required_text(text, "text")
        since = None
        if self.last_deal_update_at is not None:
            since = round(cal.business_hours_between(self.last_deal_update_at, now), 4)
        self.last_deal_update_at = now
        if self.is_open:
            self.update_due_at = cal.add_business_days(now, UPDATE_DUE_DAYS)
        self._record("deal_updated", actor.id, now, text=text,
                     event_data={"text": text, "business_hours_since_last_update": since})

    def comment(self, actor: Person, text: str, now: datetime) -> None:
        if actor.id != self.requester_id and not works_queue(actor, self.department):
            raise Forbidden("not_participant", "only the requester and the team working it can comment")
        text = _required_text(text, "text")
        self._record("commented", actor.id, now, text=text, event_data={"text": text})

    def deliver(self, actor: Person, note: str | None, now: datetime) -> None:
        if actor.id not in self.assignee_ids:
            raise Forbidden("not_assignee", "only an assignee can deliver this request")
        self._require_status("deliver", IN_PROGRESS)
        note = _optional_text(note, "note")
        self.status = DELIVERED
        self.delivered_at = now
        self.overdue_at = self.update_due_at = self.info_due_at = None
        self._record("delivered", actor.id, now, text=note, event_data={
            "assignee_ids": list(self.assignee_ids),
            "priority": self.priority,
            "rush": self.priority == Priority.RUSH.value,
            "needed_by": self.needed_by,
            "on_time": now <= self.needed_by,
            "notice_business_hours": self.notice_business_hours,
        })

    def close(self, actor: Person, outcome: str, note: str | None, now: datetime, cal: BusinessCalendar) -> None:
        self._require_requester(actor, "close")
        self._require_status("close", DELIVERED)
        if outcome not in OUTCOMES:
            raise BadInput("invalid_outcome", f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
        note = _optional_text(note, "note")
        self.status = CLOSED
        self.outcome = outcome
        self.closed_at = now
        self._record("closed", actor.id, now, text=note, entry_data={"outcome": outcome}, event_data={
            "outcome": outcome,
            "business_hours_since_delivered": round(cal.business_hours_between(self.delivered_at, now), 4),
        })

    def cancel(self, actor: Person, reason: str, now: datetime) -> None:
        if actor.id != self.requester_id and actor.role not in (Role.MANAGER.value, Role.ADMIN.value):
            raise Forbidden("not_allowed_to_cancel", "only the requesting rep or a manager can cancel a request")
        self._require_status("cancel", *OPEN)
        reason = _required_text(reason, "reason")
        self.status = CANCELLED
        self.cancelled_at = now
        self.overdue_at = self.update_due_at = self.info_due_at = None
        self._record("cancelled", actor.id, now, text=reason, event_data={"reason": reason})

    # -- timers (the sweeper) -------------------------------------------------------------------

    def fire_due_timers(self, now: datetime, cal: BusinessCalendar) -> list[str]:
        """Fire every timer that is due at ``now``, each once per occurrence; return their types."""
        fired = []
        if self.overdue_at is not None and self.overdue_at <= now and self.is_open:
            due, self.overdue_at = self.overdue_at, None
            self._timer("overdue", 1, due, now)
            fired.append("overdue")
        if self.update_due_at is not None and self.update_due_at <= now and self.is_open:
            due = self.update_due_at
            self.update_due_count += 1
            self.update_due_at = cal.add_business_days(due, UPDATE_DUE_DAYS)
            self._timer("update_due", self.update_due_count, due, now)
            fired.append("update_due")
        if self.info_due_at is not None and self.info_due_at <= now and self.status == WAITING_ON_REP:
            due, self.info_due_at = self.info_due_at, None
            self._timer("info_unanswered", self.info_request_count, due, now)
            fired.append("info_unanswered")
        return fired

    def _timer(self, type: str, occurrence: int, due: datetime, now: datetime) -> None:
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:{self.id}:{type}:{occurrence}"))
        self._record(type, SYSTEM_ACTOR, now, entry_data={"occurrence": occurrence, "due_at": due.isoformat()},
                     event_data={"occurrence": occurrence, "due_at": due}, event_id=event_id)


def submit(
    requester: Person,
    raw: dict[str, Any],
    number: int,
    now: datetime,
    cal: BusinessCalendar,
    request_id: str | None = None,
) -> SupportRequest:
    """Validate a new request and return it with its ``request.submitted`` event recorded."""
    if not can_submit(requester):
        raise Forbidden("not_a_rep", "support requests are filed by reps (or managers)")
    kind = _choice(raw, "kind", KINDS)
    title = _text(raw, "title", required=True, limit=LIMITS["title"])
    details = _text(raw, "details", required=True, limit=LIMITS["details"])
    customer = _text(raw, "customer", required=True, limit=LIMITS["customer"])
    deal_name = _text(raw, "deal_name", limit=LIMITS["deal_name"]) or None
    commitment = _text(raw, "commitment", limit=LIMITS["commitment"]) or None
    priority = raw.get("priority") or Priority.NORMAL.value
    if priority not in PRIORITIES:
        raise BadInput("invalid_priority", f"priority must be one of {', '.join(PRIORITIES)}", field="priority")
    rush_reason = _text(raw, "rush_reason", limit=LIMITS["rush_reason"]) or None
    if priority == Priority.RUSH.value and not rush_reason:
        raise BadInput("rush_needs_reason", "a rush request needs a reason: why can't it wait?", field="rush_reason")
    deal_value = raw.get("deal_value")
    if deal_value is not None:
        if isinstance(deal_value, bool) or not isinstance(deal_value, (int, float)) or not math.isfinite(deal_value) or deal_value < 0:
            raise BadInput("invalid_deal_value", "deal value must be a number, zero or more", field="deal_value")
        deal_value = float(deal_value)
    needed_by = raw.get("needed_by")
    if not isinstance(needed_by, datetime) or needed_by.tzinfo is None:
        raise BadInput("invalid_needed_by", "needed-by must be a date and time with a timezone", field="needed_by")
    if needed_by <= now:
        raise BadInput("needed_by_in_past", "needed-by must be in the future", field="needed_by")

    notice = round(cal.business_hours_between(now, needed_by), 4)
    gaps = brief_gaps(details, commitment, notice, priority, rush_reason, cal)
    request = SupportRequest(
        id=request_id or new_id("r"),
        number=number,
        requester_id=requester.id,
        department=KIND_DEPARTMENT[kind],
        kind=kind,
        title=title,
        details=details,
        customer=customer,
        deal_name=deal_name,
        deal_value=deal_value,
        commitment=commitment,
        needed_by=needed_by,
        priority=priority,
        rush_reason=rush_reason,
        submitted_at=now,
        notice_business_hours=notice,
        brief_complete=not gaps,
        brief_gaps=gaps,
        overdue_at=needed_by,
        update_due_at=cal.add_business_days(now, UPDATE_DUE_DAYS),
    )
    request._record("submitted", requester.id, now, text=title, event_data={
        "kind": kind, "title": title, "customer": customer, "deal_name": deal_name, "deal_value": deal_value,
        "commitment": commitment, "details_length": len(details), "needed_by": needed_by, "priority": priority,
        "rush_reason": rush_reason, "notice_business_hours": notice, "brief_complete": not gaps, "brief_gaps": gaps,
    })
    return request


def brief_gaps(details: str, commitment: str | None, notice_hours: float, priority: str,
               rush_reason: str | None, cal: BusinessCalendar) -> list[str]:
    """What keeps a brief from being complete (empty: complete). BRIEF: customer, commitment,
    needed-by at least 2 business days ahead unless rush with a reason, details >= 80 chars."""
    gaps = []
    if not commitment:
        gaps.append("commitment: say what was committed to the customer")
    if notice_hours < BRIEF_MIN_NOTICE_DAYS * cal.hours_per_day and not (priority == Priority.RUSH.value and rush_reason):
        gaps.append(f"notice: needed-by is less than {BRIEF_MIN_NOTICE_DAYS} business days ahead")
    if len(details.strip()) < BRIEF_MIN_DETAILS:
        gaps.append(f"details: at least {BRIEF_MIN_DETAILS} characters help the team start")
    return gaps


# -- input helpers -------------------------------------------------------------------------------

def _text(raw: dict[str, Any], name: str, required: bool = False, limit: int = 5000) -> str:
    value = raw.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadInput(f"invalid_{name}", f"{name.replace('_', ' ')} must be text", field=name)
    value = value.strip()
    if required and not value:
        raise BadInput(f"missing_{name}", f"{name.replace('_', ' ')} is required", field=name)
    if len(value) > limit:
        raise BadInput(f"{name}_too_long", f"{name.replace('_', ' ')} is longer than {limit} characters", field=name)
    return value


def _choice(raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(name)
    if isinstance(value, str):
        value = value.strip().lower()
    if value not in allowed:
        raise BadInput(f"invalid_{name}", f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


def _required_text(value: Any, name: str) -> str:
    return _text({name: value}, name, required=True, limit=LIMITS["text"])


def _optional_text(value: Any, name: str) -> str | None:
    return _text({name: value}, name, limit=LIMITS["text"]) or None


__all__ = [
    "KINDS", "KIND_DEPARTMENT", "OPEN", "STATUSES", "Person", "Recorded", "SupportRequest", "TimelineEntry",
    "brief_gaps", "clean_person_input", "new_id", "submit", "works_queue",
]
