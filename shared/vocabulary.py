"""The product's words, each defined once (BRIEF.md, "Domain"): every service validates with
these, the event schemas carry them, and the gateway builds its GraphQL enums from them
(upper-cased names, lower-case values on the wire).

Rules about the words live with the service that owns them: which queue a request kind goes
to and the request lifecycle in ``services/requests/domain.py``, what a period's key is in
``shared/calendar.py``, how a leaderboard scope is kept in the points service.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    """What a person does in Inside Track."""

    REP = "rep"
    SUPPORT = "support"
    MANAGER = "manager"
    ADMIN = "admin"


class Department(str, Enum):
    """A team of the company."""

    SALES = "sales"
    PRESALES = "presales"
    PRICING = "pricing"
    LEGAL = "legal"
    ORDER_DESK = "order_desk"
    MARKETING = "marketing"
    PRODUCT = "product"
    CUSTOMER_SERVICE = "customer_service"


class RequestKind(str, Enum):
    """What kind of help a rep asks for; each kind goes to a department's queue."""

    PRESALES_TECHNICAL = "presales_technical"
    MARKETING = "marketing"
    PRICING = "pricing"
    LEGAL_REVIEW = "legal_review"
    ORDER_ENTRY = "order_entry"
    CUSTOMIZATION = "customization"
    POST_SALE_SERVICE = "post_sale_service"
    EXCEPTION = "exception"


class RequestStatus(str, Enum):
    """Where a support request is in its life."""

    # the open ones first, in lifecycle order

    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    WAITING_ON_REP = "waiting_on_rep"
    DELIVERED = "delivered"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Priority(str, Enum):
    """How urgent a request is; RUSH needs a reason."""

    NORMAL = "normal"
    HIGH = "high"
    RUSH = "rush"


class Outcome(str, Enum):
    """How the deal ended."""

    WON = "won"
    LOST = "lost"
    NO_DECISION = "no_decision"
    NOT_APPLICABLE = "not_applicable"


class Gesture(str, Enum):
    """What a kudos says besides thanks."""

    THANKS = "thanks"
    COFFEE = "coffee"
    LUNCH = "lunch"
    FLOWERS = "flowers"
    HIGH_FIVE = "high_five"


class KudosDirection(str, Enum):
    """Kudos a person received or gave."""

    RECEIVED = "received"
    GIVEN = "given"


class Period(str, Enum):
    """A calendar period in the company timezone."""

    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    ALL = "all"


class Scope(str, Enum):
    """Who a leaderboard compares."""

    COMPANY = "company"
    DEPARTMENT = "department"
    ROLE = "role"


class WebhookEvent(str, Enum):
    """What a chat webhook can be told about (services/notifications/ sends them)."""

    KUDOS_GIVEN = "kudos_given"
    BADGE_EARNED = "badge_earned"
    REQUEST_SUBMITTED = "request_submitted"
    REQUEST_INFO_REQUESTED = "request_info_requested"
    REQUEST_DELIVERED = "request_delivered"
    REQUEST_OVERDUE = "request_overdue"
    REQUEST_CLOSED = "request_closed"


class WebhookFormat(str, Enum):
    """The body a webhook receives: a Slack incoming-webhook message, a Teams card, or the event's envelope."""

    SLACK = "slack"
    TEAMS = "teams"
    JSON = "json"


class DeliveryStatus(str, Enum):
    """Where one webhook delivery is: being tried, received (2xx), or given up on."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# A complete brief (BRIEF.md, "Recognition rules"): the requests service decides it at submission
# (``brief_gaps``); the portal shows the same gaps while a rep types.
BRIEF_MIN_DETAILS = 80  # characters of details
BRIEF_MIN_NOTICE_DAYS = 2  # business days between submission and needed-by, unless rush with a reason


def values(words: type[Enum]) -> tuple[str, ...]:
    """The wire values of a vocabulary, in its order (``values(Priority)`` -> normal, high, rush)."""
    return tuple(word.value for word in words)
