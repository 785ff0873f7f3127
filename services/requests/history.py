"""Request history from a CSV file (``insidetrack import-requests``): each row replayed through
the domain, with no I/O.

For companies moving from another ticketing tool. One row is one request with the moments of
its life; each moment is replayed through the **same domain methods** the live commands use
(``domain.submit``, ``acknowledge``, ``assign``, ``start``, ``request_info``, ``provide_info``,
``post_deal_update``, ``deliver``, ``close``, ``cancel``), at its own time, by the person who
would have done it: the requester submits, answers questions, posts the deal update, closes and
cancels; the first assignee acknowledges (an unassigned request goes to the support person who
acknowledges, as live), assigns the others if the row names more, starts, asks and delivers.
So the timeline, the SLA fields (notice, business hours to acknowledge, on time, ...) and the
events are exactly what the live path would have produced, and every event carries its own
time (envelope ``time`` and ``data.at``): the points service scores it in its own period.

The timers are replayed too, as the sweeper would have fired them: before each step, every
timer due before it fires at its due time (``request.overdue``, ``request.update_due`` every 5
business days without a deal update, ``request.info_unanswered``), and so does every timer due
before the import for a request still open. Timers still ahead are left to the sweeper.

Columns (header row; order free; the first seven required): see ``CSV_COLUMNS`` and
``docs/requests-api.md``. People who have left since (deactivated) may appear: they were
active then. A row the domain refuses (a rush without a reason, a rep delivering, a step out
of order) is reported by line with the column at fault, and nothing of it is imported.

The request id is a hash of the row's content (``r_i…``), so importing the same file twice
imports nothing new, and a row repeated in one file is one request.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

from services.requests import domain
from services.requests.domain import Person, SupportRequest
from services.requests.readmodels import next_due
from shared.calendar import BusinessCalendar
from shared.csvimport import RowError, parse_instant, parse_rows, split_list
from shared.errors import AppError
from shared.events import Envelope, build_event

CSV_COLUMNS = (
    "submitted_at", "requester_email", "kind", "title", "details", "customer", "needed_by",
    "deal_name", "deal_value", "commitment", "priority", "rush_reason", "assignee_emails",
    "acknowledged_at", "started_at", "info_requested_at", "info_question", "info_answered_at", "info_answer",
    "deal_update_at", "deal_update", "delivered_at", "delivery_note", "closed_at", "outcome", "close_note",
    "cancelled_at", "cancel_reason",
)
REQUIRED = CSV_COLUMNS[:7]
TIMES = ("submitted_at", "needed_by", "acknowledged_at", "started_at", "info_requested_at", "info_answered_at",
         "deal_update_at", "delivered_at", "closed_at", "cancelled_at")
MAX_IMPORT_ROWS = 10_000  # per call; the command sends a big file in parts
SOURCE = "requests"

# A moment that needs an earlier one (column -> the column it needs, which must not be later).
NEEDS = {
    "acknowledged_at": "submitted_at", "started_at": "acknowledged_at", "info_requested_at": "acknowledged_at",
    "info_answered_at": "info_requested_at", "deal_update_at": "submitted_at", "delivered_at": "started_at",
    "closed_at": "delivered_at", "cancelled_at": "submitted_at",
}
# A text that belongs to a moment: given without its moment, the row is a mistake.
TEXT_OF = {"info_question": "info_requested_at", "info_answer": "info_answered_at", "deal_update": "deal_update_at",
           "delivery_note": "delivered_at", "outcome": "closed_at", "close_note": "closed_at",
           "cancel_reason": "cancelled_at"}
# The domain names its inputs as the API does; the report names the CSV's columns (a refusal
# of who acted names the people's column; one of the step itself, its moment's column).
DOMAIN_FIELDS = {"question": "info_question", "answer": "info_answer", "text": "deal_update", "reason": "cancel_reason",
                 "assignee_ids": "assignee_emails"}
CODE_FIELDS = {"not_in_queue": "assignee_emails", "not_assignee": "assignee_emails", "not_a_rep": "requester_email"}
NOTE_OF = {"delivered_at": "delivery_note", "closed_at": "close_note"}
# Steps at the same moment go in the lifecycle's order.
ORDER = ("acknowledged_at", "started_at", "info_requested_at", "info_answered_at", "deal_update_at",
         "delivered_at", "closed_at", "cancelled_at")


@dataclass
class ImportedRequest:
    line: int
    request: SupportRequest  # with its whole timeline; ``version``: the writes the live path makes
    events: list[Envelope]   # every event of its life, each at its own time


class _At:
    """The clock of one event: its own time (``build_event`` stamps the envelope with it)."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at


def request_id_for(raw: dict[str, str], times: dict[str, datetime]) -> str:
    """The same row always gives the same id (a reimport finds it there): its cells, times in
    UTC to the millisecond and emails in lower case, so the same content written another way
    (``Z`` or ``+01:00``, capitals) is the same request."""
    cells = []
    for column in CSV_COLUMNS:
        if column in times:
            cells.append(times[column].isoformat(timespec="milliseconds"))
        elif column.endswith("_email") or column.endswith("_emails"):
            cells.append(";".join(e.lower() for e in split_list(raw.get(column, ""))))
        else:
            cells.append(raw.get(column, ""))
    return "r_i" + hashlib.sha256("\x1f".join(cells).encode()).hexdigest()[:24]


def history_event_id(request_id: str, n: int) -> str:
    """The id of the ``n``-th event of an imported request's life: the same whichever import
    (or the recovery of a crashed one) publishes it, so consumers count it once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:request-history:{request_id}:{n}"))


def parse_csv(text: Any, people_by_email: dict[str, Person], calendar: BusinessCalendar, now: datetime,
              line_offset: int = 0) -> tuple[list[ImportedRequest], list[dict[str, Any]]]:
    """The good rows replayed into requests with their events, and the bad ones as errors by
    line (``line_offset`` is added: a part of a bigger file). Raises BadInput for a file it
    cannot read. Numbers are not given here (0): the service allocates them when it stores."""
    return parse_rows(text, CSV_COLUMNS, REQUIRED, MAX_IMPORT_ROWS, line_offset,
                      lambda line, raw: replay_row(line, raw, people_by_email, calendar, now))


def _person(people: dict[str, Person], email: str, column: str, what: str) -> Person:
    if not email:
        raise RowError(column, f"missing_{column}", f"{column} is empty")
    person = people.get(email.lower())
    if person is None:
        raise RowError(column, f"unknown_{what}", f"{email.lower()} is not in the directory")
    # People who have left since acted when they were active (the domain checks assignees' flag).
    return replace(person, active=True)


def replay_row(line: int, raw: dict[str, str], people: dict[str, Person], cal: BusinessCalendar,
               now: datetime) -> ImportedRequest:
    """One row through the domain, step by step at each step's time; raises RowError or the
    domain's AppError (its field renamed to the CSV's column) for a row it refuses."""
    times: dict[str, datetime] = {}
    for column in TIMES:
        at = parse_instant(raw, column, None if column == "needed_by" else now)
        if at is not None:
            times[column] = at
    if "submitted_at" not in times:
        raise RowError("submitted_at", "missing_submitted_at", "submitted_at is empty")
    if "needed_by" not in times:
        raise RowError("needed_by", "missing_needed_by", "needed_by is empty")
    for column, needed in NEEDS.items():
        if column in times and needed not in times:
            raise RowError(needed, f"missing_{needed}", f"{column} needs {needed} (the step before it)")
        if column in times and times[column] < times[needed]:
            raise RowError(column, "out_of_order", f"{column} {raw[column]} is before {needed} {raw[needed]}")
    for column, moment in TEXT_OF.items():
        if raw.get(column) and moment not in times:
            raise RowError(moment, f"missing_{moment}", f"{column} is given but {moment} is empty")

    requester = _person(people, raw.get("requester_email", ""), "requester_email", "requester")
    emails = list(dict.fromkeys(e.lower() for e in split_list(raw.get("assignee_emails", ""))))
    unknown = [e for e in emails if e not in people]
    if unknown:
        raise RowError("assignee_emails", "unknown_assignee", f"not in the directory: {', '.join(unknown)}")
    assignees = [replace(people[e], active=True) for e in emails]
    if "acknowledged_at" in times and not assignees:
        raise RowError("assignee_emails", "missing_assignee_emails",
                       "acknowledged_at needs assignee_emails (the first one acknowledged it)")
    deal_value: float | None = None
    if raw.get("deal_value"):
        try:
            deal_value = float(raw["deal_value"])
        except ValueError:
            raise RowError("deal_value", "invalid_deal_value", f"deal_value {raw['deal_value']!r} is not a number") from None

    request_id = request_id_for(raw, times)
    writes = 0

    def step(column: str, at: datetime, act: Callable[[], None]) -> None:
        nonlocal writes
        fire_timers_before(at)
        try:
            act()
        except AppError as exc:
            raise _refusal(exc, column) from None
        writes += 1

    def fire_timers_before(at: datetime) -> None:
        """Every timer due before ``at``, as the sweeper fires it: at its due time, one write."""
        nonlocal writes
        while (due := next_due(request)) is not None and due < at:
            if not request.fire_due_timers(due, cal):
                break
            writes += 1

    submitted = times["submitted_at"]
    brief = {"kind": raw.get("kind"), "title": raw.get("title"), "details": raw.get("details"),
             "customer": raw.get("customer"), "deal_name": raw.get("deal_name"), "deal_value": deal_value,
             "commitment": raw.get("commitment"), "needed_by": times["needed_by"],
             "priority": (raw.get("priority") or "").lower() or None, "rush_reason": raw.get("rush_reason")}
    if times["needed_by"] <= submitted:  # the domain's own check, said for history
        raise RowError("needed_by", "needed_by_in_past", "needed_by must be after submitted_at")
    try:
        request = domain.submit(requester, brief, number=0, now=submitted, cal=cal, request_id=request_id)
    except AppError as exc:
        raise _refusal(exc, "submitted_at") from None
    writes += 1
    if assignees and "acknowledged_at" not in times:
        # Assigned and never acknowledged: the first assignee (who works the queue) assigned it.
        step("assignee_emails", submitted, lambda: request.assign(assignees[0], assignees, submitted))

    first = assignees[0] if assignees else None
    actions: dict[str, Callable[[datetime], None]] = {
        "acknowledged_at": lambda at: request.acknowledge(first, at, cal),
        "started_at": lambda at: request.start(first, at),
        "info_requested_at": lambda at: request.request_info(first, raw.get("info_question"), at, cal),
        "info_answered_at": lambda at: request.provide_info(requester, raw.get("info_answer"), at, cal),
        "deal_update_at": lambda at: request.post_deal_update(requester, raw.get("deal_update"), at, cal),
        "delivered_at": lambda at: request.deliver(first, raw.get("delivery_note"), at),
        "closed_at": lambda at: request.close(requester, (raw.get("outcome") or "").lower(), raw.get("close_note"), at, cal),
        "cancelled_at": lambda at: request.cancel(requester, raw.get("cancel_reason"), at),
    }
    for column in sorted((c for c in ORDER if c in times), key=lambda c: (times[c], ORDER.index(c))):
        at = times[column]
        step(column, at, lambda: actions[column](at))
        if column == "acknowledged_at" and request.assignee_ids != [p.id for p in assignees]:
            # More than one assignee, or a manager who acknowledged: assigned as the row says.
            step("assignee_emails", at, lambda: request.assign(first, assignees, at))
    fire_timers_before(now)  # what the sweeper fired on a request still open; ahead: the sweeper's

    events = [build_event(e.type, request.id, e.data, source=SOURCE, clock=_At(e.data["at"]), id=e.id or history_event_id(request.id, n))
              for n, e in enumerate(request.new_events)]
    request.new_events, request.new_entries = [], []
    request.version = writes
    return ImportedRequest(line=line, request=request, events=events)


def _refusal(exc: AppError, column: str) -> RowError:
    """The domain's refusal of the step at ``column``, naming the CSV column at fault."""
    if exc.field == "note":
        field = NOTE_OF.get(column, column)
    else:
        field = DOMAIN_FIELDS.get(exc.field) or CODE_FIELDS.get(exc.code) or (exc.field if exc.field in CSV_COLUMNS else column)
    return RowError(field, exc.code, exc.message)
