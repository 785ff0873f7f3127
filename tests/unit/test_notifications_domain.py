"""Webhook rules without I/O: URLs, input, which events are sent, the exact bodies, signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from services.notifications.config import NotificationsSettings
from services.notifications.domain import (
    Notice, Person, UrlRules, Webhook, body_for, check_url, delivery_id, encode_body, headers_for, matches,
    notice_for, people_of, retryable, webhook_fields,
)
from shared.clock import as_utc
from shared.config import ConfigError, load_settings
from shared.errors import BadInput
from shared.vocabulary import WebhookEvent

PEOPLE = {
    "p_rita": Person("p_rita", "Rita Okafor", "rep", "sales"),
    "p_pia": Person("p_pia", "Pía Novák", "support", "pricing"),
    "p_li": Person("p_li", "Li Wei", "support", "pricing"),
    "p_gone": Person("p_gone", "Gone Person", "support", "legal", active=False),
    "p_hid": Person("p_hid", "Hidden Person", "support", "legal", hidden=True),
}
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def code_of(fn, *args) -> str:
    with pytest.raises(BadInput) as refused:
        fn(*args)
    return refused.value.code


@pytest.mark.parametrize("url, rules, code", [
    ("ftp://hooks.example.com/x", UrlRules(), "invalid_url"),
    ("hooks.example.com/x", UrlRules(), "invalid_url"),
    ("https://user:pw@hooks.example.com/x", UrlRules(), "invalid_url"),
    ("https://hooks.example.com:99999/x", UrlRules(), "invalid_url"),
    ("https://hooks.example.com/x y", UrlRules(), "invalid_url"),
    ("", UrlRules(), "invalid_url"),
    (None, UrlRules(), "invalid_url"),
    ("http://hooks.example.com/x", UrlRules(), "url_not_https"),
    ("https://evil.example.org/x", UrlRules(allowed_hosts=("hooks.slack.com",)), "host_not_allowed"),
    ("https://webhook.office.com/x", UrlRules(allowed_hosts=("*.webhook.office.com",)), "host_not_allowed"),
    ("https://hooks.slack.com.evil.org/x", UrlRules(allowed_hosts=("hooks.slack.com",)), "host_not_allowed"),
])
def test_a_bad_url_is_refused_with_its_code(url, rules, code):
    assert code_of(check_url, url, rules) == code


@pytest.mark.parametrize("url, rules", [
    ("https://hooks.slack.com/services/T/B/x", UrlRules(allowed_hosts=("hooks.slack.com",))),
    ("https://acme.webhook.office.com/x", UrlRules(allowed_hosts=("*.webhook.office.com",))),
    ("http://127.0.0.1:9999/hook", UrlRules(allow_http=True)),
    ("https://example.com/hook?token=1", UrlRules()),
])
def test_a_good_url_is_taken(url, rules):
    assert check_url(url, rules) == url


def test_input_is_checked_field_by_field():
    rules = UrlRules()
    good = {"url": "https://hooks.example.com/x", "events": ["kudos_given"]}
    assert webhook_fields(good, rules, creating=True) == {
        "url": good["url"], "events": ["kudos_given"], "format": "slack", "department": None}
    assert code_of(webhook_fields, {**good, "events": []}, rules, True) == "no_events"
    assert code_of(webhook_fields, {**good, "events": ["kudos_given", "party"]}, rules, True) == "unknown_event"
    assert code_of(webhook_fields, {**good, "format": "xml"}, rules, True) == "unknown_format"
    assert code_of(webhook_fields, {**good, "department": "moon"}, rules, True) == "unknown_department"
    assert code_of(webhook_fields, {**good, "secret": "short"}, rules, True) == "invalid_secret"
    # An update changes only what it names; switching on again starts the failure count over.
    assert webhook_fields({"enabled": True}, rules, creating=False) == {"enabled": True, "failures": 0,
                                                                        "disabled_reason": None}
    assert webhook_fields({"format": "teams"}, rules, creating=False) == {"format": "teams"}


def test_http_is_refused_in_production_and_hosts_are_checked():
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOW_HTTP"):
        load_settings(NotificationsSettings, env={"INSIDETRACK_ENV": "production", "INSIDETRACK_INTERNAL_TOKEN": "x" * 32,
                                                  "INSIDETRACK_WEBHOOK_ALLOW_HTTP": "true"})
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOWED_HOSTS"):
        load_settings(NotificationsSettings, env={"INSIDETRACK_WEBHOOK_ALLOWED_HOSTS": "https://x.com"})
    settings = load_settings(NotificationsSettings, env={"INSIDETRACK_WEBHOOK_ALLOWED_HOSTS": "Hooks.Slack.com, *.webhook.office.com"})
    assert settings.allowed_hosts == ("hooks.slack.com", "*.webhook.office.com")


def kudos(**over) -> dict:
    return {"kudos_id": "k_1", "giver_id": "p_rita", "recipient_ids": ["p_pia", "p_li"], "message": "Thanks for the  quote!",
            "values": ["customer_first"], "gesture": "coffee", "request_id": None, "at": T0.isoformat(), "private": False,
            **over}


def test_private_kudos_and_hidden_or_deactivated_people_are_never_sent():
    assert notice_for("kudos.given", kudos(private=True), PEOPLE.get, None, "https://it") is None
    assert notice_for("kudos.given", kudos(recipient_ids=["p_pia", "p_hid"]), PEOPLE.get, None, "https://it") is None
    assert notice_for("kudos.given", kudos(giver_id="p_gone"), PEOPLE.get, None, "https://it") is None
    assert notice_for("kudos.given", kudos(recipient_ids=["p_unknown"]), PEOPLE.get, None, "https://it") is None
    badge = {"person_id": "p_hid", "badge": "clutch", "name": "Clutch", "tier": None, "evidence_event_ids": [], "at": T0.isoformat()}
    assert notice_for("badge.awarded", badge, PEOPLE.get, None, "https://it") is None
    assert notice_for("request.started", {}, PEOPLE.get, None, "https://it") is None  # not a webhook event


def test_the_slack_and_teams_bodies_of_a_kudos_are_exact():
    notice = notice_for("kudos.given", kudos(), PEOPLE.get, None, "https://it.example.com")
    envelope = {"type": "kudos.given"}
    assert body_for("slack", notice, envelope) == {
        "text": "☕ Rita Okafor thanked Pía Novák and Li Wei: “Thanks for the quote!”",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "☕ Rita Okafor thanked Pía Novák and Li Wei: “Thanks for the quote!”"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Values*\ncustomer first"}]},
            {"type": "image", "image_url": "https://it.example.com/cards/k_1.thumb.png", "alt_text": "Kudos card"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Inside Track · kudos.given"}]},
        ]}
    assert body_for("teams", notice, envelope) == {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "☕ Rita Okafor thanked Pía Novák and Li Wei: “Thanks for the quote!”", "wrap": True},
                        {"type": "FactSet", "facts": [{"title": "Values", "value": "customer first"}]},
                        {"type": "Image", "url": "https://it.example.com/cards/k_1.thumb.png", "altText": "Kudos card"},
                    ]}}]}
    assert body_for("json", notice, envelope) is envelope
    assert notice.departments == {"sales", "pricing"}


def test_request_events_name_the_request_and_its_queue():
    base = {"request_id": "r_1", "requester_id": "p_rita", "department": "pricing", "actor_id": "p_pia",
            "status": "in_progress", "at": T0.isoformat()}
    overdue = notice_for("request.overdue", {**base, "occurrence": 1, "due_at": "2026-11-27T09:00:00Z"}, PEOPLE.get,
                         {"title": "Price the Acme renewal"}, "https://it")
    assert overdue.text == "⏰ “Price the Acme renewal” for Rita Okafor is overdue (was due 2026-11-27 09:00 UTC)"
    assert overdue.event is WebhookEvent.REQUEST_OVERDUE and overdue.departments == {"pricing", "sales"}
    delivered = notice_for("request.delivered", {**base, "assignee_ids": ["p_pia"], "priority": "normal", "rush": False,
                                                 "needed_by": T0.isoformat(), "on_time": True, "notice_business_hours": 9},
                           PEOPLE.get, None, "https://it")
    assert delivered.text == "✅ Pía Novák delivered “request r_1” for Rita Okafor (on time)"


def test_a_webhook_gets_what_it_names_about_its_department_since_it_exists():
    notice = Notice(WebhookEvent.KUDOS_GIVEN, frozenset({"sales", "pricing"}), "hi")
    hook = Webhook("wh_1", "https://x", ("kudos_given",), "slack", "s" * 16, T0)
    assert matches(hook, notice, T0)
    assert not matches(hook, notice, datetime(2026, 11, 27, 9, 59, tzinfo=timezone.utc))  # history
    assert not matches(Webhook("wh_1", "https://x", ("badge_earned",), "slack", "s" * 16, T0), notice, T0)
    assert matches(Webhook("wh_1", "https://x", ("kudos_given",), "slack", "s" * 16, T0, department="pricing"), notice, T0)
    assert not matches(Webhook("wh_1", "https://x", ("kudos_given",), "slack", "s" * 16, T0, department="legal"), notice, T0)
    assert not matches(Webhook("wh_1", "https://x", ("kudos_given",), "slack", "s" * 16, T0, enabled=False), notice, T0)


def test_the_signature_is_the_hmac_of_the_exact_body():
    body = encode_body({"text": "é", "n": 1})
    assert body == '{"text":"é","n":1}'.encode()
    headers = headers_for("a-secret-of-16-chars", body, "dl_1", "kudos_given")
    expected = hmac.new(b"a-secret-of-16-chars", body, hashlib.sha256).hexdigest()
    assert headers["X-InsideTrack-Signature"] == f"sha256={expected}"
    assert headers["X-InsideTrack-Delivery"] == "dl_1" and json.loads(body) == {"text": "é", "n": 1}
    assert delivery_id("wh_1", "e_1") == delivery_id("wh_1", "e_1") != delivery_id("wh_2", "e_1")


def test_what_is_retried():
    assert [retryable(s) for s in (None, 500, 503, 429, 400, 404, 301, 200)] == [True, True, True, True, False, False, False, False]


def test_no_graphql_field_returns_a_webhook_secret():
    from services.gateway.schema import schema

    types = schema.graphql_schema.type_map
    assert "secret" not in types["Webhook"].fields
    assert {name for name, t in types.items() if not name.startswith("__") and hasattr(t, "fields")
            and "secret" in t.fields and not name.endswith("Input")} == set()


def test_the_people_a_message_names():
    assert people_of("kudos.given", kudos()) == ["p_rita", "p_pia", "p_li"]
    assert people_of("badge.awarded", {"person_id": "p_pia"}) == ["p_pia"]
    assert people_of("request.closed", {"requester_id": "p_rita", "actor_id": "p_rita"}) == ["p_rita"]


class _Webhooks:
    """The two reads the deliverer makes of its store for the webhooks (a counter of them)."""

    def __init__(self):
        self.version, self.docs, self.version_reads = 0, [], 0

    def webhooks_version(self):
        self.version_reads += 1
        return self.version

    def all_webhooks(self):
        return list(self.docs)

    def remember_requests(self, requests):
        pass  # (the titles of submitted requests: none here)

    def add(self, created_at):
        self.docs.append({"_id": f"wh_{len(self.docs)}", "url": "https://chat.example.com/hook", "events": ["KUDOS_GIVEN"],
                          "format": "JSON", "secret": "s", "created_at": created_at})
        self.version += 1


def test_history_reads_the_webhooks_version_once_a_second_and_a_new_event_sees_a_new_webhook_at_once():
    from datetime import timedelta

    from services.notifications.delivery import Deliverer
    from shared.clock import ManualClock

    store, clock, ticks = _Webhooks(), ManualClock(T0), [100.0]
    deliverer = Deliverer(store, None, NotificationsSettings(), clock, monotonic=lambda: ticks[0])
    assert deliverer.webhooks(T0) == [] and store.version_reads == 1
    # A backlog of history (a year ago): no read per event; a second later, one.
    for day in range(1, 500):
        deliverer.webhooks(T0 - timedelta(days=365 - day % 300))
    assert store.version_reads == 1
    ticks[0] += 1.5
    deliverer.webhooks(T0 - timedelta(days=30))
    assert store.version_reads == 2
    # A webhook created now is seen by the first event newer than the last read, at once.
    clock.advance(seconds=20)
    store.add(clock.now())
    assert [w.id for w in deliverer.webhooks(clock.now())] == ["wh_0"] and store.version_reads == 3
    # ... and an event older than that read needs no read (the webhook is newer than it anyway).
    deliverer.webhooks(clock.now() - timedelta(minutes=5))
    assert store.version_reads == 3
    # A webhook the deliverer disabled (it kept failing) is read again before the next event.
    deliverer._version = None
    deliverer.webhooks(clock.now() - timedelta(minutes=5))
    assert store.version_reads == 4


def test_a_batch_of_new_events_reads_the_webhooks_version_once_and_again_after_a_webhook_is_disabled():
    """Live, every event is newer than the last read: the version is read once a batch (each of
    its events was published before that read), not once an event; the next batch reads it
    again, and so does the event after a webhook the deliverer disabled."""
    from services.notifications.delivery import Deliverer
    from shared.clock import ManualClock

    store, clock = _Webhooks(), ManualClock(T0)
    deliverer = Deliverer(store, None, NotificationsSettings(), clock, monotonic=lambda: 100.0)
    seen = []
    deliverer._notify = lambda envelope, payload: seen.append(deliverer.webhooks(as_utc(envelope.time)))
    batch = [(SimpleNamespace(time=clock.now(), type="kudos.given"), None) for _ in range(50)]
    deliverer.handle_events(batch)
    assert store.version_reads == 1 and len(seen) == 50
    store.add(clock.now())  # a webhook made after that batch was read: the next batch sees it
    clock.advance(seconds=1)
    deliverer.handle_events([(SimpleNamespace(time=clock.now(), type="kudos.given"), None)] * 3)
    assert store.version_reads == 2 and [w.id for w in seen[-1]] == ["wh_0"]

    def notify(envelope, payload):
        seen.append(deliverer.webhooks(as_utc(envelope.time)))
        deliverer._version = None  # the deliverer disabled a webhook that kept failing
    deliverer._notify = notify
    deliverer.handle_events([(SimpleNamespace(time=clock.now(), type="kudos.given"), None)] * 3)
    assert store.version_reads == 5  # read again before each next event


def test_events_no_webhook_takes_are_passed_by_without_being_decoded():
    """Most request events (acknowledged, assigned, started, ...) concern no webhook: the
    delivery consumer passes them by on their ``ce_type`` header, undecoded. Every type a
    webhook takes is decoded; so is a message without the header (sent before it existed)."""
    from types import SimpleNamespace

    from services.notifications.delivery import not_notified
    from services.notifications.domain import EVENT_OF_TYPE

    def message(kind):
        return SimpleNamespace(value=b"{}", headers=[("ce_type", kind.encode())] if kind else [])

    assert all(not_notified(message(kind)) for kind in ("request.acknowledged", "request.assigned", "points.awarded"))
    assert not any(not_notified(message(kind)) for kind in EVENT_OF_TYPE)
    assert "kudos.given" in EVENT_OF_TYPE and not not_notified(message(None))
