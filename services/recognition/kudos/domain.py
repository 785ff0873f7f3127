"""Kudos rules, with no I/O: who may thank whom, with what, and how often.

BRIEF, "Kudos" and "Anti-gaming": a message of 1-500 characters, company values from config,
a gesture, an optional linked request; never to yourself; a monthly allowance per giver
(each recipient of a kudos spends one); at most 3 kudos from one giver to one person per
week; add-ons (+1) by anyone but the giver and the recipients, once each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.recognition.person import DirectoryPerson
from shared.errors import BadInput, Conflict, Forbidden, RuleViolation, Unauthorized
from shared.text import clean_text
from shared.vocabulary import Gesture, values

GESTURES = values(Gesture)
MAX_MESSAGE = 500
MAX_RECIPIENTS = 10

def new_kudos_id() -> str:
    return f"k_{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class KudosInput:
    recipient_ids: list[str]
    message: str
    values: list[str]
    gesture: str
    request_id: str | None
    private: bool = False


def parse_give(raw: dict[str, Any], company_values: tuple[str, ...]) -> KudosInput:
    """Validate the shape of a give request; raises BadInput with a stable code and field."""
    to = raw.get("to")
    if not isinstance(to, list) or not to or not all(isinstance(t, str) and t for t in to):
        raise BadInput("invalid_recipients", "to must be a list of one or more person ids", field="to")
    recipients = list(dict.fromkeys(to))
    if len(recipients) > MAX_RECIPIENTS:
        raise BadInput("too_many_recipients", f"at most {MAX_RECIPIENTS} people per kudos", field="to")

    message = raw.get("message")
    if not isinstance(message, str):
        raise BadInput("invalid_message", "message must be text", field="message")
    message = clean_text(message)
    if not message:
        raise BadInput("empty_message", "say something: the message is empty", field="message")
    if len(message) > MAX_MESSAGE:
        raise BadInput("message_too_long", f"the message is longer than {MAX_MESSAGE} characters", field="message")

    values = raw.get("values") or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadInput("invalid_values", "values must be a list of company values", field="values")
    values = list(dict.fromkeys(v.strip().lower() for v in values))
    unknown = [v for v in values if v not in company_values]
    if unknown:
        raise BadInput("unknown_value", f"not a company value: {', '.join(unknown)} (values: {', '.join(company_values)})", field="values")

    gesture = raw.get("gesture") or Gesture.THANKS.value
    if not isinstance(gesture, str) or gesture.lower() not in GESTURES:
        raise BadInput("unknown_gesture", f"gesture must be one of {', '.join(GESTURES)}", field="gesture")

    request_id = raw.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 64):
        raise BadInput("invalid_request_id", "request_id must be a request id", field="request_id")
    private = raw.get("private", False)
    if private is None:
        private = False
    if not isinstance(private, bool):
        raise BadInput("invalid_private", "private must be true or false", field="private")
    return KudosInput(recipients, message, values, gesture.lower(), request_id, private)


def check_people(giver: DirectoryPerson | None, giver_id: str, recipients: dict[str, DirectoryPerson],
                 recipient_ids: list[str]) -> None:
    """Who may give to whom (the directory copy is the authority)."""
    if giver is None:
        raise Unauthorized("unknown_actor", f"{giver_id!r} is not in the directory")
    if not giver.active:
        raise Forbidden("inactive_actor", f"{giver.name} is deactivated")
    if giver.id in recipient_ids:
        raise RuleViolation("kudos_to_self", "kudos are for others: you cannot send kudos to yourself", field="to")
    for rid in recipient_ids:
        person = recipients.get(rid)
        if person is None:
            raise BadInput("unknown_recipient", f"{rid!r} is not in the directory", field="to")
        if not person.active:
            raise RuleViolation("inactive_recipient", f"{person.name} is no longer active", field="to")


@dataclass
class AddOn:
    actor_id: str
    message: str | None
    at: datetime
    key: str | None = None  # the idempotency key it was made with (a retry returns the kudos)


@dataclass
class Kudos:
    id: str
    giver_id: str
    recipient_ids: list[str]
    message: str
    values: list[str]
    gesture: str
    request_id: str | None
    created_at: datetime
    # Names as they were when the kudos was given: the card always says the same thing.
    giver_name: str
    recipient_names: list[str]
    add_ons: list[AddOn] = field(default_factory=list)
    # Private: seen only by the giver, the recipients, their managers and admins (still scored).
    private: bool = False

    @property
    def involved(self) -> list[str]:
        return [self.giver_id, *self.recipient_ids]


def check_add_on(kudos: Kudos, actor: DirectoryPerson | None, actor_id: str, message: Any) -> str | None:
    if actor is None:
        raise Unauthorized("unknown_actor", f"{actor_id!r} is not in the directory")
    if not actor.active:
        raise Forbidden("inactive_actor", f"{actor.name} is deactivated")
    if actor.id == kudos.giver_id or actor.id in kudos.recipient_ids:
        raise RuleViolation("own_kudos", "the giver and the recipients cannot add on to their own kudos")
    if any(a.actor_id == actor.id for a in kudos.add_ons):
        raise Conflict("already_added_on", "you already added on to this kudos")
    if message is None:
        return None
    if not isinstance(message, str):
        raise BadInput("invalid_message", "message must be text", field="message")
    message = clean_text(message)
    if len(message) > MAX_MESSAGE:
        raise BadInput("message_too_long", f"the message is longer than {MAX_MESSAGE} characters", field="message")
    return message or None
