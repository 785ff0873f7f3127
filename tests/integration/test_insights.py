"""Insights for managers (issue 21): the read model the points process keeps from the events,
its figures for a week of internal selling, who may read it, and that a redelivered batch
adds nothing."""

from __future__ import annotations

import pytest

from shared.bus.consumer import Delivery
from shared.bus.kafka import consumer_lag
from shared.events import build_event, decode
from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS, Insights, bin_of, quantile
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.service_helpers import Client, serving
from tests.integration.test_points_service import (  # noqa: F401 - fixtures (clock: the week's Thursday)
    clock, feed, points_settings, runtime, story,
)

pytestmark = pytest.mark.integration


def org_events():
    """Mona manages Rita and Jonas; an admin."""
    people = [("mona", "Mona Berg", "manager", "sales", None), ("admin", "Ada Admin", "admin", "sales", None),
              ("rita", "Rita Okafor", "rep", "sales", "mona"), ("jonas", "Jonas Weiß", "rep", "sales", "mona")]
    return [build_event("person.upserted", pid, {"person_id": pid, "email": f"{pid}@example.com", "name": name,
                                                  "role": role, "department": dept, "manager_id": manager},
                        source="requests") for pid, name, role, dept, manager in people]


def settled(settings, runtime) -> bool:
    return consumer_lag(settings, {INSIGHTS_GROUP: INSIGHTS_TOPICS}) == 0


def test_the_histogram_gives_medians_and_p90s():
    hist: dict[str, int] = {}
    for hours in (0.2, 1.0, 1.2, 6.0, 16.0):
        hist[str(bin_of(hours))] = hist.get(str(bin_of(hours)), 0) + 1
    assert (quantile(hist, 0.5), quantile(hist, 0.9)) == (1.5, 16.0)
    assert quantile({}, 0.5) is None


def test_a_managers_team_insights_for_a_week(settings, producer, runtime, points_settings):
    producer.publish_all(org_events())
    assert wait_until(lambda: getattr(runtime.insights.directory.get("rita"), "manager_id", None) == "mona", 30)
    feed(producer, runtime, story().events)
    assert wait_until(lambda: settled(settings, runtime), 60)

    with serving(runtime.app) as url:
        api = Client(url, points_settings.internal_token)
        mona = api.as_("mona").get("/insights", params={"period": "week"}).json()
        assert mona["key"] == "2026-W48"
        # Rita's internal-selling score is what the ledger gave her by the rep rules this week.
        ledger = sum(e["points"] for e in runtime.store.ledger.find({"person_id": "rita"})
                     if e["rule"] in runtime.insights.rep_rules and e["at"].isoformat() >= "2026-11-23")
        assert ledger == 45
        assert mona["reps"] == [
            {"person_id": "jonas", "score": 0, "requests": 1, "rush_share": 1.0, "complete_brief_share": 0.0,
             "deal_updates": 0, "weeks_with_deal_update": 0},
            {"person_id": "rita", "score": 45, "requests": 1, "rush_share": 0.0, "complete_brief_share": 1.0,
             "deal_updates": 2, "weeks_with_deal_update": 1},
        ]
        assert mona["recognition"] == {"people": 2, "gave_share": 0.5, "received_share": 0.0, "kudos_per_person": 0.0,
                                       "top_values": [], "unrecognized_ids": ["jonas", "rita"]}
        # The people it names come with it (the gateway looks nobody up for their names).
        assert [(p["id"], p["name"]) for p in mona["people"]] == [("jonas", "Jonas Weiß"), ("rita", "Rita Okafor")]
        # Her team's own department, and the queue her reps' requests went to this week.
        assert [d["department"] for d in mona["departments"]] == ["pricing", "sales"]
        assert mona["departments"][0]["requests_received"] == 2
        other = api.as_("mona").get("/insights", params={"period": "week", "department": "legal"}).json()
        assert (other["departments"], other["reps"], other["recognition"]["people"]) == ([], [], 0)
        pricing = api.as_("mona").get("/insights", params={"period": "week", "department": "pricing"}).json()
        assert ([d["department"] for d in pricing["departments"]], pricing["reps"]) == (["pricing"], [])

        admin = api.as_("admin").get("/insights", params={"period": "week", "department": "pricing"}).json()
        assert admin["departments"] == [{
            "department": "pricing", "requests_received": 2, "acknowledged": 2, "delivered": 2,
            "ack_median_hours": 1.0, "ack_p90_hours": 6.0, "deliver_median_hours": 8.0, "deliver_p90_hours": 16.0,
            "on_time_share": 1.0, "rush_share": 0.5, "rush_short_notice_share": 0.5, "info_loops_per_request": 0.5,
            "closed_loop_share": 0.5}]
        assert admin["recognition"]["received_share"] == 0.5  # pia of pia and li
        assert admin["recognition"]["unrecognized_ids"] == ["li"]
        everyone = api.as_("admin").get("/insights", params={"period": "all"}).json()
        assert len(everyone["departments"]) == 8 and everyone["recognition"]["people"] == 7

        # Only managers (of their team) and admins; never with a screen's read-only token.
        refused = api.as_("pia").get("/insights", params={"period": "week"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_a_manager")
        assert api.as_("admin").get("/insights", params={"period": "week", "public": "true"}).status_code == 403
        assert api.as_("admin").get("/insights", params={"period": "year"}).json()["error"]["code"] == "bad_period"

        # A batch delivered again (other boundaries, the same events) adds nothing.
        before = api.as_("admin").get("/insights", params={"period": "week"}).json()
        records = read_topic(settings, settings.topic("requests"), 13) + read_topic(settings, settings.topic("kudos"), 3)
        deliveries = []
        for r in records:
            envelope, payload = decode(r.value)
            deliveries.append(Delivery(envelope, payload, r.topic, r.partition, r.offset))
        runtime.insights.apply_batch(deliveries)
        runtime.insights.apply_batch(deliveries[5:])
        assert api.as_("admin").get("/insights", params={"period": "week"}).json() == before
        # A restarted process knows no offsets in memory: it reads them from the documents.
        restarted = Insights(runtime.insights.docs.database, runtime.rules, runtime.insights.calendar,
                             runtime.insights.directory, runtime.insights.clock)
        restarted.apply_batch(deliveries)
        assert api.as_("admin").get("/insights", params={"period": "week"}).json() == before

        # Two writers (a rebalance): one takes a new kudos; the other, whose offsets in memory
        # are now behind the documents, gets the same delivery: its write misses, it reads the
        # documents again and adds nothing.
        def given() -> int:
            return sum(int(doc.get("kudos_given", 0)) for doc in runtime.insights.docs.find({}, {"kudos_given": 1}))

        kudos = next(d for d in deliveries if d.envelope.type == "kudos.given")
        again = [Delivery(kudos.envelope, kudos.payload, kudos.topic, kudos.partition, kudos.offset + 1_000)]
        total = given()
        restarted.apply_batch(again)
        assert given() > total
        total = given()
        runtime.insights.apply_batch(again)
        assert given() == total
