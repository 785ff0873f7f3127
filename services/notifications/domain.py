"""Webhooks: what an admin may register, which events reach which webhook, and the exact body,
signature and headers each delivery carries. No I/O: ``store.py`` keeps the state,
``delivery.py`` sends.

The rules, in one place:

- a webhook's URL is ``https://`` (``http://`` only where ``INSIDETRACK_WEBHOOK_ALLOW_HTTP``
  allows it), with a host on ``INSIDETRACK_WEBHOOK_ALLOWED_HOSTS`` when that is set, no user
  name or password in it; the secret is write-only (never in any answer);
- an event reaches an enabled webhook that names its kind, created before the event happened
  (history read by a new consumer group is never sent), and, when the webhook names a
  department, only events about that department's people or queue;
- never sent: a private kudos, and anything about a person who is hidden (keeps themselves off
  everyone else's boards) or deactivated;
- a delivery that gets a 5xx, a 429 or no answer is retried (``retryable``); a redirect is
  not followed and counts as a failure; other 4xx are not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from shared.clock import utc
from shared.errors import BadInput
from shared.vocabulary import Department, WebhookEvent, WebhookFormat, values

SIGNATURE_HEADER = "X-InsideTrack-Signature"
DELIVERY_HEADER = "X-InsideTrack-Delivery"
EVENT_HEADER = "X-InsideTrack-Event"
USER_AGENT = "InsideTrack-Webhooks/1"
MAX_URL = 2000
MIN_SECRET, MAX_SECRET = 16, 256

# The event types a webhook can be told about, by what it subscribes to.
EVENT_OF_TYPE: dict[str, WebhookEvent] = {
    "kudos.given": WebhookEvent.KUDOS_GIVEN,
    "badge.awarded": WebhookEvent.BADGE_EARNED,
    "request.submitted": WebhookEvent.REQUEST_SUBMITTED,
    "request.info_requested": WebhookEvent.REQUEST_INFO_REQUESTED,
    "request.delivered": WebhookEvent.REQUEST_DELIVERED,
    "request.overdue": WebhookEvent.REQUEST_OVERDUE,
    "request.closed": WebhookEvent.REQUEST_CLOSED,
}
GESTURE_EMOJI = {"thanks": "🙏", "coffee": "☕", "lunch": "🍽️", "flowers": "💐", "high_five": "🙌"}


@dataclass(frozen=True)
class Person:
    """A person as this process knows them (from the ``people`` topic)."""

    id: str
    name: str
    role: str
    department: str
    active: bool = True
    manager_id: str | None = None
    hidden: bool = False  # off everyone else's boards: never named in a channel

    @property
    def shown(self) -> bool:
        return self.active and not self.hidden


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]
    format: str
    secret: str
    created_at: datetime
    department: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    failures: int = 0  # deliveries failed in a row

    @classmethod
    def from_doc(cls, doc: dict) -> "Webhook":
        return cls(id=doc["_id"], url=doc["url"], events=tuple(doc["events"]), format=doc["format"],
                   secret=doc["secret"], created_at=utc(doc["created_at"]), department=doc.get("department"),
                   enabled=doc.get("enabled", True), disabled_reason=doc.get("disabled_reason"),
                   failures=int(doc.get("failures", 0)))


# -- input ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UrlRules:
    allow_http: bool = False
    allowed_hosts: tuple[str, ...] = ()


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def check_url(url: Any, rules: UrlRules) -> str:
    """The webhook URL, or a refusal with its code (``INVALID_URL``, ``URL_NOT_HTTPS``,
    ``HOST_NOT_ALLOWED``)."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL:
        raise BadInput("invalid_url", f"url must be an absolute https:// URL of at most {MAX_URL} characters", "url")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError:
        raise BadInput("invalid_url", "url is not a valid URL", "url") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in url):
        raise BadInput("invalid_url", "url must be an absolute https:// URL", "url")
    if parts.username is not None or parts.password is not None:
        raise BadInput("invalid_url", "url must not carry a user name or password (use the secret)", "url")
    if parts.fragment:
        raise BadInput("invalid_url", "url must not have a #fragment", "url")
    if parts.scheme == "http" and not rules.allow_http:
        raise BadInput("url_not_https", "url must be https:// (http:// is allowed only where "
                       "INSIDETRACK_WEBHOOK_ALLOW_HTTP is set, for local use)", "url")
    if not host_allowed(parts.hostname.lower(), rules.allowed_hosts):
        raise BadInput("host_not_allowed", f"{parts.hostname} is not on the webhook host allow-list "
                       f"({', '.join(rules.allowed_hosts)})", "url")
    del port
    return url


def check_events(events: Any) -> tuple[str, ...]:
    if not isinstance(events, list) or not events:
        raise BadInput("no_events", "name at least one event the webhook is for", "events")
    known = values(WebhookEvent)
    for event in events:
        if event not in known:
            raise BadInput("unknown_event", f"unknown event {event!r}; one of {', '.join(known)}", "events")
    return tuple(dict.fromkeys(events))


def check_format(value: Any) -> str:
    if value not in values(WebhookFormat):
        raise BadInput("unknown_format", f"format must be one of {', '.join(values(WebhookFormat))}", "format")
    return value


def check_department(value: Any) -> str | None:
    if value is None:
        return None
    if value not in values(Department):
        raise BadInput("unknown_department", f"unknown department {value!r}", "department")
    return value


def check_secret(value: Any) -> str:
    if not isinstance(value, str) or not MIN_SECRET <= len(value) <= MAX_SECRET:
        raise BadInput("invalid_secret", f"secret must be {MIN_SECRET} to {MAX_SECRET} characters", "secret")
    return value


def new_secret() -> str:
    return secrets.token_hex(24)


def webhook_fields(body: dict, rules: UrlRules, creating: bool) -> dict[str, Any]:
    """The stored fields a create (every field) or an update (the fields given) sets; a
    refusal names the first field at fault."""
    out: dict[str, Any] = {}
    if creating or "url" in body:
        out["url"] = check_url(body.get("url"), rules)
    if creating or "events" in body:
        out["events"] = list(check_events(body.get("events")))
    if creating or "format" in body:
        out["format"] = check_format(body.get("format") or WebhookFormat.SLACK.value)
    if creating or "department" in body:
        out["department"] = check_department(body.get("department"))
    if body.get("secret") is not None:
        out["secret"] = check_secret(body["secret"])
    if not creating and "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadInput("invalid_enabled", "enabled must be true or false", "enabled")
        out["enabled"] = body["enabled"]
        if body["enabled"]:  # switched on again: the count starts over
            out["failures"] = 0
            out["disabled_reason"] = None
    return out


# -- which events reach which webhook --------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    """An event about to be sent: its kind, the people and department it is about, and its text."""

    event: WebhookEvent
    departments: frozenset[str]
    text: str
    image_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def matches(webhook: Webhook, notice: Notice, event_time: datetime) -> bool:
    return (webhook.enabled and notice.event.value in webhook.events and event_time >= webhook.created_at
            and (webhook.department is None or webhook.department in notice.departments))


def people_of(event_type: str, data: dict) -> list[str]:
    """Whom a message about this event names (they must be known to build it)."""
    if event_type == "kudos.given":
        return [data["giver_id"], *data["recipient_ids"]]
    if event_type == "badge.awarded":
        return [data["person_id"]]
    return [data["requester_id"]]


def _names(people: list[Person]) -> str:
    names = [p.name for p in people]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def notice_for(event_type: str, data: dict, people: Callable[[str], Person | None], request: dict | None,
               public_url: str) -> Notice | None:
    """What a channel is told about an event, or None when it is never sent (a private kudos,
    a hidden or deactivated person, someone unknown)."""
    kind = EVENT_OF_TYPE.get(event_type)
    if kind is None:
        return None
    if kind is WebhookEvent.KUDOS_GIVEN:
        if data.get("private"):
            return None
        giver = people(data["giver_id"])
        recipients = [people(pid) for pid in data["recipient_ids"]]
        everyone = [giver, *recipients]
        if any(p is None or not p.shown for p in everyone):
            return None
        emoji = GESTURE_EMOJI.get(data.get("gesture"), "🙏")
        text = f"{emoji} {giver.name} thanked {_names(recipients)}: “{_quote(data['message'])}”"
        fields = {}
        if data.get("values"):
            fields["Values"] = ", ".join(v.replace("_", " ") for v in data["values"])
        return Notice(kind, frozenset(p.department for p in everyone), text,
                      image_url=f"{public_url}/cards/{data['kudos_id']}.thumb.png", fields=fields)
    if kind is WebhookEvent.BADGE_EARNED:
        person = people(data["person_id"])
        if person is None or not person.shown:
            return None
        tier = f" ({data['tier']})" if data.get("tier") else ""
        return Notice(kind, frozenset([person.department]), f"🏅 {person.name} earned the {data['name']} badge{tier}")
    # A request event: the requester must be shown; the queue's department always counts.
    requester = people(data["requester_id"])
    if requester is None or not requester.shown:
        return None
    actor = people(data["actor_id"])
    actor_name = actor.name if actor is not None and actor.shown else "Someone"
    title = (request or {}).get("title") or data.get("title") or f"request {data['request_id']}"
    queue = data["department"].replace("_", " ")
    fields = {"Queue": queue}
    if kind is WebhookEvent.REQUEST_SUBMITTED:
        priority = data["priority"]
        text = f"📥 {requester.name} asked {queue} for help: “{_quote(title)}” for {data['customer']}"
        fields.update({"Priority": priority, "Needed by": _day(data["needed_by"])})
        if priority == "rush" and data.get("rush_reason"):
            fields["Rush because"] = _quote(data["rush_reason"], 200)
    elif kind is WebhookEvent.REQUEST_INFO_REQUESTED:
        text = f"❓ {actor_name} needs information from {requester.name} on “{_quote(title)}”: {_quote(data['question'])}"
    elif kind is WebhookEvent.REQUEST_DELIVERED:
        timing = "on time" if data["on_time"] else "late"
        text = f"✅ {actor_name} delivered “{_quote(title)}” for {requester.name} ({timing})"
    elif kind is WebhookEvent.REQUEST_OVERDUE:
        text = f"⏰ “{_quote(title)}” for {requester.name} is overdue (was due {_day(data['due_at'])})"
    else:  # closed
        text = f"🔁 {requester.name} closed the loop on “{_quote(title)}”: {data['outcome'].replace('_', ' ')}"
    return Notice(kind, frozenset([data["department"], requester.department]), text, fields=fields)


def _day(value: Any) -> str:
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text[:16].replace("T", " ") + " UTC" if text.endswith(("Z", "+00:00")) else text


# -- the body and its signature ----------------------------------------------------------------

def body_for(webhook_format: str, notice: Notice, envelope: dict) -> dict:
    """The JSON a webhook of this format receives."""
    if webhook_format == WebhookFormat.JSON.value:
        return envelope
    if webhook_format == WebhookFormat.SLACK.value:
        blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": notice.text}}]
        if notice.fields:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in notice.fields.items()]})
        if notice.image_url:
            blocks.append({"type": "image", "image_url": notice.image_url, "alt_text": "Kudos card"})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Inside Track · {envelope['type']}"}]})
        return {"text": notice.text, "blocks": blocks}
    # Teams: a message with an Adaptive Card (what Teams workflows' "post to a channel" takes).
    card_body: list[dict] = [{"type": "TextBlock", "text": notice.text, "wrap": True}]
    if notice.fields:
        card_body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in notice.fields.items()]})
    if notice.image_url:
        card_body.append({"type": "Image", "url": notice.image_url, "altText": "Kudos card"})
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                    "version": "1.4", "body": card_body}}]}


def encode_body(body: dict) -> bytes:
    """The exact bytes sent (and signed): compact JSON, UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_id(webhook_id: str, event_id: str) -> str:
    """Deterministic: one delivery per webhook and event, however often the event is read."""
    return "dl_" + hashlib.sha256(f"{webhook_id}|{event_id}".encode()).hexdigest()[:24]


def headers_for(secret: str, body: bytes, delivery: str, event: str) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature(secret, body), DELIVERY_HEADER: delivery, EVENT_HEADER: event}


def retryable(status: int | None) -> bool:
    """No answer (None), a 5xx or a 429 is tried again; anything else is final."""
    return status is None or status >= 500 or status == 429
