"""One schema per event type: the ``data`` each event carries.

Events state facts, not commands (past tense). They carry what consumers need to act without
calling back the producer (names, departments, timing facts computed in business hours), so
the points service can score history by reading topics alone. Changing a schema in a way an
old consumer cannot read means a new version registered beside the old one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from shared.events.registry import EventSchema, event_type
from shared.vocabulary import Department, Gesture, Outcome, Priority, Role  # noqa: F401 - the words events carry

Id = str


# --- people (compacted, key: person id) -------------------------------------------------

@event_type("person.upserted", topic="people")
class PersonUpserted(EventSchema):
    person_id: Id
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)
    role: Role
    department: Department
    title: str | None = None
    manager_id: Id | None = None
    active: bool = True
    # "Keep me off the leaderboards" (the person's own setting): still scored, left out of
    # everyone else's leaderboards, screens and chat channels (docs/security.md).
    hidden: bool = False


# --- requests (key: request id) -----------------------------------------------------------

class RequestEvent(EventSchema):
    """What every request event carries: which request, whose, which queue, who acted, when."""

    request_id: Id
    requester_id: Id
    department: Department
    actor_id: Id
    status: str
    at: datetime


@event_type("request.submitted", topic="requests")
class RequestSubmitted(RequestEvent):
    kind: str
    title: str
    customer: str
    deal_name: str | None = None
    deal_value: float | None = None
    commitment: str | None = None
    details_length: int = Field(ge=0)
    needed_by: datetime
    priority: Priority
    rush_reason: str | None = None
    notice_business_hours: float
    # The brief rule is decided where the request lives; points only reads the verdict.
    brief_complete: bool
    brief_gaps: list[str] = []


@event_type("request.acknowledged", topic="requests")
class RequestAcknowledged(RequestEvent):
    business_hours_since_submitted: float


@event_type("request.assigned", topic="requests")
class RequestAssigned(RequestEvent):
    assignee_ids: list[Id]


@event_type("request.started", topic="requests")
class RequestStarted(RequestEvent):
    pass


@event_type("request.info_requested", topic="requests")
class RequestInfoRequested(RequestEvent):
    question: str


@event_type("request.info_provided", topic="requests")
class RequestInfoProvided(RequestEvent):
    business_hours_to_answer: float


@event_type("request.deal_updated", topic="requests")
class RequestDealUpdated(RequestEvent):
    text: str
    # None for the first update on a request.
    business_hours_since_last_update: float | None = None


@event_type("request.commented", topic="requests")
class RequestCommented(RequestEvent):
    text: str


@event_type("request.delivered", topic="requests")
class RequestDelivered(RequestEvent):
    assignee_ids: list[Id]
    priority: Priority
    rush: bool
    needed_by: datetime
    on_time: bool
    notice_business_hours: float


@event_type("request.closed", topic="requests")
class RequestClosed(RequestEvent):
    outcome: Outcome
    business_hours_since_delivered: float | None = None


@event_type("request.cancelled", topic="requests")
class RequestCancelled(RequestEvent):
    reason: str


class RequestTimerEvent(RequestEvent):
    """Emitted by the sweeper once per occurrence; ``occurrence`` makes its id deterministic."""

    occurrence: int = Field(ge=1)
    due_at: datetime


@event_type("request.overdue", topic="requests")
class RequestOverdue(RequestTimerEvent):
    pass


@event_type("request.update_due", topic="requests")
class RequestUpdateDue(RequestTimerEvent):
    pass


@event_type("request.info_unanswered", topic="requests")
class RequestInfoUnanswered(RequestTimerEvent):
    pass


# --- kudos (key: kudos id) ------------------------------------------------------------------

@event_type("kudos.given", topic="kudos")
class KudosGiven(EventSchema):
    kudos_id: Id
    giver_id: Id
    recipient_ids: list[Id] = Field(min_length=1)
    message: str = Field(min_length=1, max_length=500)
    values: list[str] = []
    gesture: Gesture
    request_id: Id | None = None
    at: datetime
    private: bool = False  # scored like any other; shown only to whom docs/security.md says


@event_type("kudos.added_on", topic="kudos")
class KudosAddedOn(EventSchema):
    kudos_id: Id
    actor_id: Id
    giver_id: Id
    recipient_ids: list[Id] = Field(min_length=1)
    message: str | None = Field(default=None, max_length=500)
    at: datetime


# --- points and badges (key: person id) ----------------------------------------------------

APPLIED_MAX_PEOPLE = 500  # person ids per points.applied event: far below MAX_EVENT_BYTES


@event_type("points.awarded", topic="points", headers=("rule",))  # insights passes the rules it does not count
class PointsAwarded(EventSchema):
    """One award to one person by one rule for one source event (the ledger entry to be).

    ``entry_id`` is deterministic (source event, rule, person), so a replay awards nothing new.
    ``capped`` awards carry 0 points and say why in ``reason``. Zero-point awards feed badges.
    """

    entry_id: Id
    person_id: Id
    points: int = Field(ge=0)
    rule: str
    reason: str
    source_event_id: Id
    source_event_type: str
    capped: bool = False
    badges: list[str] = []
    resets: list[str] = []
    counterparts: list[Id] = []
    at: datetime


AWARDS_PER_RECORD = 200  # a person's awards in one points.awarded record at most (~70 KB: far below MAX_EVENT_BYTES)


@event_type("points.awarded", topic="points", version=2, headers=("rules",))
class PersonAwards(EventSchema):
    """A person's awards from one batch of the scorer, in order (version 2 of ``points.awarded``).

    One record per person a batch awards (up to ``AWARDS_PER_RECORD`` awards), not one per
    award: each record is built, sent, stored, fetched, parsed and decoded, and in a backlog a
    batch gives each of a company's people a few awards (docs/performance.md). ``rules``: the
    awards' rules, once each, also sent as a header (``data_rules``, comma-separated), so that
    insights passes by records of rules it does not count without decoding them. A version-1
    record (one award) from before is read as a list of one (:func:`awards_in`).
    """

    person_id: Id
    awards: list[PointsAwarded] = Field(min_length=1, max_length=AWARDS_PER_RECORD)
    rules: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_person(self) -> "PersonAwards":
        if any(award.person_id != self.person_id for award in self.awards):
            raise ValueError("every award is the record's person's")
        if set(self.rules) != {award.rule for award in self.awards}:
            raise ValueError("rules lists the awards' rules")
        return self


def awards_in(payload: "PointsAwarded | PersonAwards") -> list[PointsAwarded]:
    """The awards a ``points.awarded`` record carries, in order, whatever its version."""
    return payload.awards if isinstance(payload, PersonAwards) else [payload]


@event_type("points.applied", topic="points-applied")
class PointsApplied(EventSchema):
    """Awards with points are on the boards (totals, boards, rankings written): a leaderboard
    read from now on shows them. The points applier sends this after each batch it applied
    (several for a batch of many people, ``APPLIED_MAX_PEOPLE`` each), before it commits the
    batch's offsets; a batch delivered again sends it again (a refresh too many, never one too
    few). Subject: ``leaderboards`` (one key, so the notices stay in order).
    """

    person_ids: list[Id] = Field(min_length=1, max_length=APPLIED_MAX_PEOPLE)  # whose points changed
    period_keys: list[str] = Field(min_length=1)  # the boards they changed: "2026-W48", "2026-11", "2026-Q4", "all"
    # Awards with points among them; 0: no award, the people's place on those boards changed
    # (a department or role move, "keep me off the leaderboards" turned on or off).
    awards: int = Field(ge=0)


@event_type("points.state", topic="points-state")
class PointsState(EventSchema):
    """One person's points state after a change, as the points applier keeps it (its
    changelog; subject: the person, so compaction keeps the latest). ``n`` counts the person's
    changes: a record older than the copy a process holds is ignored.

    ``totals``: per period key, ``[points, department, role]`` (where the points were counted);
    ``progress``: the badges' progress as JSON; ``applied``: per ``points`` partition, the last
    award offset added to the totals (a replayed award adds nothing)."""

    person_id: Id
    n: int = Field(ge=1)
    totals: dict[str, tuple[int, str | None, str | None]] = {}
    progress: str | None = None
    applied: dict[str, int] = {}
    # Where their ledger list is: ``n`` entries, ``pages`` ([id, entries, newest, oldest, level]),
    # ``a`` offsets applied (services/recognition/points/ledger_pages.py).
    ledger: dict[str, Any] = {}


@event_type("badge.awarded", topic="badges")
class BadgeAwarded(EventSchema):
    person_id: Id
    badge: str
    name: str
    tier: str | None = None
    evidence_event_ids: list[Id]
    at: datetime
