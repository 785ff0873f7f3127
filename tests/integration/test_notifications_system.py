"""Issue 21's "done when", end to end: an admin registers a Slack-format webhook through GraphQL,
a rep gives a kudos and lets a request go overdue, and a local receiver gets exactly the signed
messages. Every process (requests, kudos, points, notifications, gateway) is real and runs on
one simulated clock, moved forward past the request's needed-by time."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest

from shared.clock import OffsetClock
from tests.conftest import wait_until
from tests.integration.gateway_system import running_system
from tests.integration.test_gateway import SUBMIT, brief
from tests.integration.test_notifications import receiver  # noqa: F401 - the local webhook receiver

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)  # a Monday, 10:30 in Amsterdam
SECRET = "slack-signing-secret-0123456789"
CREATE = """mutation($input: WebhookInput!) { createWebhook(input: $input) {
  webhook { id url events format department enabled } generatedSecret errors { field code message } } }"""
INSIGHTS = """{ insights(period: WEEK) { key reps { person { name } requests completeBriefShare score }
  recognition { gaveShare unrecognized { name } } departments { department requestsReceived } } }"""
UPDATE = """mutation($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) {
  webhook { id department events format } errors { field code message } } }"""
DELIVERIES = """query($id: ID!) { webhookDeliveries(webhookId: $id, first: 10) { totalCount
  edges { node { eventType event status attempts responseStatus } } } }"""


def test_a_slack_webhook_gets_the_kudos_and_the_overdue_request_signed(settings, tmp_path, receiver):
    clock_file = tmp_path / "clock.json"
    clock = OffsetClock(clock_file)
    clock.start_at(NOW)
    env = {"INSIDETRACK_DEMO_CLOCK_FILE": str(clock_file), "INSIDETRACK_SWEEP_INTERVAL_MS": "200",
           "INSIDETRACK_WEBHOOK_ALLOW_HTTP": "true", "INSIDETRACK_PUBLIC_URL": "https://insidetrack.example.com"}
    with running_system(settings, env=env) as system:  # the notifications process among them
        admin, rita, pia = system["as_admin"], system["as"]("rita"), system["as"]("pia")

        # Admins only; bad input is a typed user error.
        refused = rita(CREATE, {"input": {"url": receiver.url + "/slack", "events": ["KUDOS_GIVEN"]}}).json()
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        bad = admin(CREATE, {"input": {"url": "ftp://chat.example.com/hook", "events": ["KUDOS_GIVEN"]}}).json()
        assert bad["data"]["createWebhook"]["errors"] == [
            {"field": "url", "code": "INVALID_URL", "message": "url must be an absolute https:// URL"}]
        # An unknown event is not a value of the WebhookEvent enum: GraphQL refuses the variables
        # before anything runs, with a coded error that names the value and where it was.
        unknown = admin(CREATE, {"input": {"url": receiver.url + "/slack", "events": ["PARTY"]}}).json()
        assert unknown.get("data") is None and unknown["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", unknown
        assert "PARTY" in unknown["errors"][0]["message"] and "WebhookEvent" in unknown["errors"][0]["message"]
        created = admin(CREATE, {"input": {"url": receiver.url + "/slack", "events": ["KUDOS_GIVEN", "REQUEST_OVERDUE"],
                                           "format": "SLACK", "secret": SECRET}}).json()["data"]["createWebhook"]
        assert created["errors"] == [] and created["generatedSecret"] is None
        webhook = created["webhook"]
        assert (webhook["events"], webhook["format"], webhook["enabled"]) == (["KUDOS_GIVEN", "REQUEST_OVERDUE"], "SLACK", True)
        listed = admin("{ webhooks { id url } }").json()
        assert listed["data"]["webhooks"] == [{"id": webhook["id"], "url": receiver.url + "/slack"}]
        assert rita("{ webhooks { id } }").json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # An update changes what it names, keeps the rest; a bad value is a typed error.
        updated = admin(UPDATE, {"id": webhook["id"], "input": {"department": "SALES"}}).json()["data"]["updateWebhook"]
        assert (updated["webhook"]["department"], updated["webhook"]["events"]) == ("SALES", ["KUDOS_GIVEN", "REQUEST_OVERDUE"])
        updated = admin(UPDATE, {"id": webhook["id"], "input": {"format": "SLACK"}}).json()["data"]["updateWebhook"]
        assert (updated["webhook"]["department"], updated["errors"]) == ("SALES", [])
        refused = admin(UPDATE, {"id": webhook["id"], "input": {"url": "https://chat.example.com/hook#top"}}).json()
        assert refused["data"]["updateWebhook"]["errors"] == [
            {"field": "url", "code": "INVALID_URL", "message": "url must not have a #fragment"}]

        given = rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks for the quote!", gesture: COFFEE}) '
                     '{ kudos { id } errors { code } } }', {"to": [system["people"]["pia"]["id"]]}).json()
        kudos_id = given["data"]["giveKudos"]["kudos"]["id"]
        needed_by = NOW + timedelta(days=3)
        submitted = rita(SUBMIT, {"input": brief(neededBy=needed_by.isoformat())}).json()
        assert submitted["data"]["submitRequest"]["errors"] == []
        assert pia  # the queue's support staff does nothing: the request goes overdue
        assert wait_until(lambda: len(receiver.at("/slack")) == 1, 60), receiver.received  # the kudos
        clock.set(needed_by + timedelta(minutes=5))
        assert wait_until(lambda: len(receiver.at("/slack")) >= 2, 90), receiver.received

        got = receiver.at("/slack")
        for record in got:
            expected = "sha256=" + hmac.new(SECRET.encode(), record["body"], hashlib.sha256).hexdigest()
            assert record["headers"]["X-InsideTrack-Signature"] == expected
        bodies = [json.loads(r["body"]) for r in got]
        assert bodies[0] == {
            "text": "☕ Rita Okafor thanked Pía Novák: “Thanks for the quote!”",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "☕ Rita Okafor thanked Pía Novák: “Thanks for the quote!”"}},
                {"type": "image", "image_url": f"https://insidetrack.example.com/cards/{kudos_id}.thumb.png",
                 "alt_text": "Kudos card"},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "Inside Track · kudos.given"}]},
            ]}
        due = needed_by.strftime("%Y-%m-%d %H:%M")
        assert bodies[1]["text"] == f"⏰ “Price the Acme renewal” for Rita Okafor is overdue (was due {due} UTC)"
        assert bodies[1]["blocks"][1] == {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Queue*\npricing"}]}

        page = admin(DELIVERIES, {"id": webhook["id"]}).json()["data"]["webhookDeliveries"]
        assert page["totalCount"] == 2
        assert [e["node"] for e in page["edges"]] == [
            {"eventType": "request.overdue", "event": "REQUEST_OVERDUE", "status": "DELIVERED", "attempts": 1, "responseStatus": 200},
            {"eventType": "kudos.given", "event": "KUDOS_GIVEN", "status": "DELIVERED", "attempts": 1, "responseStatus": 200},
        ]
        # Exactly those: nothing else arrives (the request's other events are not subscribed).
        deleted = admin('mutation($id: ID!) { deleteWebhook(id: $id) { webhook { id } errors { code } } }',
                        {"id": webhook["id"]}).json()["data"]["deleteWebhook"]
        assert deleted == {"webhook": {"id": webhook["id"]}, "errors": []}
        assert len(receiver.at("/slack")) == 2

        # A manager sees their team's insights (Mona manages Rita and Jonas); support staff do not.
        mona = system["as"]("mona")

        def team() -> dict:
            return mona(INSIGHTS).json()["data"]["insights"]

        assert wait_until(lambda: any(r["requests"] == 1 for r in team()["reps"]), 60), team()
        insights = team()
        assert [(r["person"]["name"], r["requests"], r["completeBriefShare"]) for r in insights["reps"]] == [
            ("Rita Okafor", 1, 1.0), ("Jonas Weiß", 0, None)]  # highest score first
        assert insights["recognition"]["gaveShare"] == 0.5
        assert [p["name"] for p in insights["recognition"]["unrecognized"]] == ["Jonas Weiß", "Rita Okafor"]
        # The lists that grow with the team, a page at a time through GraphQL.
        paged = "query($a: String, $b: String) { insights(period: WEEK, repsFirst: 1, repsAfter: $a, unrecognizedFirst: 1, " \
                "unrecognizedAfter: $b) { reps { person { name } } repsCount repsPageInfo { hasNextPage endCursor } " \
                "recognition { unrecognized { name } unrecognizedCount unrecognizedPageInfo { hasNextPage endCursor } } } }"

        def page(a=None, b=None) -> dict:
            return mona(paged, {"a": a, "b": b}).json()["data"]["insights"]

        first = page()
        assert ([r["person"]["name"] for r in first["reps"]], first["repsCount"]) == (["Rita Okafor"], 2)
        assert first["repsPageInfo"]["hasNextPage"] and first["recognition"]["unrecognizedCount"] == 2
        second = page(first["repsPageInfo"]["endCursor"], first["recognition"]["unrecognizedPageInfo"]["endCursor"])
        assert [r["person"]["name"] for r in second["reps"]] == ["Jonas Weiß"] and not second["repsPageInfo"]["hasNextPage"]
        assert [p["name"] for p in second["recognition"]["unrecognized"]] == ["Rita Okafor"]
        refused = mona("{ insights(period: WEEK, repsFirst: 500) { repsCount } }").json()["errors"][0]
        assert refused["extensions"]["code"] == "BAD_PAGE_SIZE", refused
        assert pia(INSIGHTS).json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
