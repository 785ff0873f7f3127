"""The points process on real Kafka and FerretDB: rules, ledger, totals, leaderboards, badges."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from services.recognition.points.app import POINTS_GROUPS, SCORE_GROUP, build_runtime
from services.recognition.points.config import PointsSettings
from services.recognition.points.rebuild import SUFFIX, rebuild
from services.recognition.points.state import PersonState, PointsTable, read_table
from services.recognition.points.store import Store, person_field
from shared.bus.kafka import consumer_lag
from shared.clock import ManualClock
from shared.db import disconnect
from shared.events import build_event, decode
from shared.events.schemas import PointsAwarded, awards_in
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.service_helpers import Client, serving

pytestmark = pytest.mark.integration

UTC = timezone.utc
# Monday 23 November 2026 (ISO week 2026-W48), in Amsterdam (UTC+1).
MON = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 local
PEOPLE = {
    "rita": ("Rita Okafor", "rep", "sales"),
    "jonas": ("Jonas Weiß", "rep", "sales"),
    "pia": ("Pía Novák", "support", "pricing"),
    "li": ("Li Wei", "support", "pricing"),
    "ahmed": ("Ahmed Haddad", "support", "legal"),
}


def person_events():
    return [build_event("person.upserted", pid, {"person_id": pid, "email": f"{pid}@example.com", "name": name,
                                                  "role": role, "department": dept}, source="requests")
            for pid, (name, role, dept) in PEOPLE.items()]


class History:
    """Builds realistic request and kudos events, the way the services publish them."""

    def __init__(self):
        self.events = []

    def request(self, type, rid, at, actor, status, requester="rita", dept="pricing", **data):
        event = build_event(f"request.{type}", rid, {
            "request_id": rid, "requester_id": requester, "department": dept, "actor_id": actor,
            "status": status, "at": at, **data}, source="requests")
        self.events.append(event)
        return event

    def submitted(self, rid, at, requester="rita", complete=True, rush=False, notice=40.0):
        return self.request("submitted", rid, at, requester, "submitted", requester=requester, kind="pricing",
                            title="Price it", customer="Acme", details_length=120, needed_by=at + timedelta(days=7),
                            priority="rush" if rush else "normal", rush_reason="CFO call" if rush else None,
                            notice_business_hours=notice, brief_complete=complete,
                            brief_gaps=[] if complete else ["commitment: say what was committed"])

    def delivered(self, rid, at, who, on_time=True, rush=False, requester="rita"):
        return self.request("delivered", rid, at, who, "delivered", requester=requester, assignee_ids=[who],
                            priority="rush" if rush else "normal", rush=rush, needed_by=at + timedelta(hours=1),
                            on_time=on_time, notice_business_hours=10.0)

    def kudos(self, kid, at, giver, to, request_id=None):
        event = build_event("kudos.given", kid, {"kudos_id": kid, "giver_id": giver, "recipient_ids": to,
                                                 "message": "Thanks!", "values": [], "gesture": "coffee",
                                                 "request_id": request_id, "at": at}, source="kudos")
        self.events.append(event)
        return event

    def add_on(self, kid, at, actor, giver, to):
        event = build_event("kudos.added_on", kid, {"kudos_id": kid, "actor_id": actor, "giver_id": giver,
                                                    "recipient_ids": to, "message": None, "at": at}, source="kudos")
        self.events.append(event)
        return event


def story() -> History:
    """A week of internal selling (and a little of the week before, for movement)."""
    h = History()
    prev = MON - timedelta(days=7)
    h.submitted("r0", prev, requester="jonas")                                  # jonas +10 (W47)
    h.request("acknowledged", "r0", prev + timedelta(hours=1), "li", "acknowledged", requester="jonas",
              business_hours_since_submitted=1.0)                               # li +5 (W47)
    h.kudos("k0", prev + timedelta(hours=2), "jonas", ["pia"])                  # pia +10 (W47)

    h.submitted("r1", MON)                                                      # rita +10
    h.request("acknowledged", "r1", MON + timedelta(hours=1), "pia", "acknowledged",
              business_hours_since_submitted=1.0)                               # pia +5
    h.request("info_requested", "r1", MON + timedelta(hours=2), "pia", "waiting_on_rep", question="EUR?")
    h.request("info_provided", "r1", MON + timedelta(hours=4), "rita", "in_progress", business_hours_to_answer=2.0)  # rita +10
    h.request("deal_updated", "r1", MON + timedelta(hours=5), "rita", "in_progress", text="CFO in",
              business_hours_since_last_update=None)                            # rita +5
    h.request("deal_updated", "r1", MON + timedelta(days=1), "rita", "in_progress", text="Legal in",
              business_hours_since_last_update=4.0)                             # too soon: 0
    h.delivered("r1", MON + timedelta(days=2), "pia")                           # pia +20
    h.request("closed", "r1", MON + timedelta(days=2, hours=3), "rita", "closed", outcome="won",
              business_hours_since_delivered=3.0)                               # rita +15
    h.kudos("k1", MON + timedelta(days=2, hours=4), "rita", ["pia"], request_id="r1")  # pia +10, rita +5 (thanked)
    h.add_on("k1", MON + timedelta(days=2, hours=5), "jonas", "rita", ["pia"])  # pia +5

    h.submitted("r2", MON + timedelta(days=1), requester="jonas", complete=False, rush=True, notice=6.0)  # jonas 0
    h.request("acknowledged", "r2", MON + timedelta(days=1, hours=7), "li", "acknowledged", requester="jonas",
              business_hours_since_submitted=6.0)                               # late: 0
    h.delivered("r2", MON + timedelta(days=2), "li", rush=True, requester="jonas")  # li +20 +15
    return h


@pytest.fixture
def clock():
    return ManualClock(MON + timedelta(days=3))  # Thursday


@pytest.fixture
def points_settings(settings):
    return PointsSettings(**settings.model_dump())


@pytest.fixture
def runtime(points_settings, producer, clock):
    producer.publish_all(person_events())
    rt = build_runtime(points_settings, clock=clock)
    rt.start_background()
    assert wait_until(rt.directory_reader.caught_up.is_set, timeout=30)
    yield rt
    rt.stop()
    disconnect()


def feed(producer, runtime, events, awards: int | None = None, timeout: float = 60):
    producer.publish_all(events)
    # Scored (the scorer commits only after its awards are published) and applied (the applier
    # commits only after its ledger entries, written last): both groups have nothing left.
    assert wait_until(lambda: consumer_lag(runtime.settings, POINTS_GROUPS) == 0, timeout), (
        f"still to score or apply: {consumer_lag(runtime.settings, POINTS_GROUPS)}")
    expected = awards or 0
    # An award is in the ledger only once everything it changes is in place (written last).
    assert wait_until(lambda: runtime.store.ledger.count_documents({}) >= expected, timeout), (
        f"awards not applied: {runtime.store.ledger.count_documents({})} of {expected}; applier processed "
        f"{runtime.apply_runner.processed}, dead-lettered {runtime.apply_runner.dead_lettered}, relay {runtime.relay.published} "
        f"{runtime.relay.last_error}")
    # Let any duplicate deliveries drain too.
    assert wait_until(lambda: runtime.relay.relay_once() == 0, timeout)


def published_awards(settings) -> list:
    """Every award on the points topic now (its records each hold a person's awards)."""
    records = read_topic(settings, settings.topic("points"), 1_000, timeout=3)
    return [award for r in records for award in awards_in(decode(r.value)[1])]


def totals(runtime, key):
    return runtime.store.key_totals(key)


def test_a_week_of_events_gives_the_points_the_rules_say(producer, runtime):
    feed(producer, runtime, story().events)
    assert totals(runtime, "2026-W48") == {"rita": 45, "pia": 40, "li": 35}
    assert totals(runtime, "2026-W47") == {"jonas": 10, "li": 5, "pia": 10}
    assert totals(runtime, "2026-11") == {"rita": 45, "pia": 50, "li": 40, "jonas": 10}
    assert totals(runtime, "all") == totals(runtime, "2026-11") == totals(runtime, "2026-Q4")

    # Every point is explained by its ledger entry: rule, reason, source event.
    rita = runtime.queries.history("rita")["items"]
    assert sorted((e["rule"], e["points"]) for e in rita) == sorted([
        ("complete_brief", 10), ("info_answered_within_a_day", 10), ("deal_update", 5),
        ("closed_the_loop", 15), ("thanked_the_helpers", 5)])
    assert all(e["reason"] and e["source_event_id"] for e in rita)
    assert sum(e["points"] for e in rita) == 45


def test_leaderboard_ranks_moves_scopes_and_my_rank(producer, runtime, settings):
    feed(producer, runtime, story().events)
    board = runtime.queries.leaderboard("week", me="jonas")
    assert [(e["rank"], e["person_id"], e["points"], e["movement"]) for e in board["entries"]] == [
        (1, "rita", 45, None), (2, "pia", 40, -1), (3, "li", 35, 0)]  # last week: pia 1st (tied with jonas), li 3rd
    assert board["me"] == {"person_id": "jonas", "points": 0, "rank": None}
    support = runtime.queries.leaderboard("week", scope="role", role="support", me="li")
    assert [e["person_id"] for e in support["entries"]] == ["pia", "li"] and support["me"]["rank"] == 2
    pricing = runtime.queries.leaderboard("month", scope="department", department="pricing")
    assert [(e["person_id"], e["points"]) for e in pricing["entries"]] == [("pia", 50), ("li", 40)]
    page = runtime.queries.leaderboard("week", first=2)
    rest = runtime.queries.leaderboard("week", first=2, after=page["page_info"]["end_cursor"])
    assert [e["person_id"] for e in rest["entries"]] == ["li"] and rest["entries"][0]["rank"] == 3

    # Over the internal API, as the gateway calls it.
    with serving(runtime.app) as url:
        api = Client(url, settings.internal_token, "pia")
        answer = api.get("/leaderboard", params={"period": "week"}).json()
        assert answer["me"] == {"person_id": "pia", "points": 40, "rank": 2}
        # each entry carries the person from the directory copy: the gateway needs no second call
        name, role, department = PEOPLE["rita"]
        assert answer["entries"][0]["person"] == {"id": "rita", "email": "rita@example.com", "name": name, "role": role,
                                                  "department": department, "title": None, "manager_id": None, "active": True,
                                                  "hidden": False}
        assert [e["person"]["id"] for e in answer["entries"]] == [e["person_id"] for e in answer["entries"]]
        assert api.get("/leaderboard", params={"period": "fortnight"}).json()["error"]["code"] == "invalid_period"
        summary = api.as_("rita").get("/people/rita/summary").json()
        assert summary["periods"]["week"]["points"] == 45 and summary["periods"]["week"]["rank"] == 1
        assert summary["rush_share"] == {"days": 30, "requests": 1, "rush_short_notice": 0, "share": 0.0}
        assert api.as_("jonas").get("/people/jonas/summary").json()["rush_share"]["share"] == 0.5  # r2 was a short-notice rush
        # A rush share is the rep's, their managers' and admins': Pía sees Rita's points, not it.
        seen_by_pia = api.get("/people/rita/summary").json()
        assert seen_by_pia["periods"]["week"]["points"] == 45 and seen_by_pia["rush_share"] is None
        assert api.as_(None).get("/leaderboard").status_code == 401


def test_leaderboards_come_from_the_ranking_and_follow_a_department_change(producer, runtime):
    from services.recognition.points.queries import PointsQueries
    from services.recognition.points.ranking import Ranking

    feed(producer, runtime, story().events)
    store = runtime.store
    board = store.boards.find_one({"_id": "board:2026-W48"})
    assert runtime.queries.ranking.view("2026-W48", "company", None).version == board["v"]  # kept up to date
    q = runtime.queries
    from_boards = PointsQueries(store, q.rules, q.calendar, q.directory, q.clock, ranking=Ranking(store.db["no_rankings"]))
    for args in [("week", "company", None, None), ("month", "department", "pricing", None), ("week", "role", None, "support")]:
        assert q.leaderboard(*args, me="li") == from_boards.leaderboard(*args, me="li")

    # Li moves from pricing to legal: the boards and the ranking follow.
    producer.publish_all([build_event("person.upserted", "li", {"person_id": "li", "email": "li@example.com", "name": "Li Wei",
                                                                 "role": "support", "department": "legal"}, source="requests")])
    # The applier moves her on each period's board in turn (week, then month...): wait for the
    # last board compared below, not only the first.
    def li_in(period: str) -> str | None:
        return next((e["department"] for e in q.leaderboard(period, "company")["entries"] if e["person_id"] == "li"), None)

    assert wait_until(lambda: li_in("week") == "legal" and li_in("month") == "legal", timeout=30)
    assert [e["person_id"] for e in q.leaderboard("week", "department", "legal")["entries"]] == ["li"]
    assert [e["person_id"] for e in q.leaderboard("week", "department", "pricing")["entries"]] == ["pia"]
    for args in [("week", "department", "legal", None), ("week", "department", "pricing", None), ("month", "company", None, None)]:
        assert q.leaderboard(*args, me="li") == from_boards.leaderboard(*args, me="li")


def test_ties_share_a_rank(producer, runtime):
    h = History()
    for pid in ("pia", "li", "ahmed"):
        h.request("acknowledged", f"t-{pid}", MON, pid, "acknowledged", business_hours_since_submitted=1.0)
    h.request("acknowledged", "t-extra", MON, "ahmed", "acknowledged", business_hours_since_submitted=1.0)
    feed(producer, runtime, h.events)
    board = runtime.queries.leaderboard("week")
    assert [(e["rank"], e["points"]) for e in board["entries"]] == [(1, 10), (2, 5), (2, 5)]


def test_duplicates_and_replays_change_nothing(producer, runtime, settings):
    events = story().events
    feed(producer, runtime, events)
    before = (totals(runtime, "all"), runtime.store.ledger.count_documents({}))
    # The same source events again, and every award published a second time.
    feed(producer, runtime, events)
    records = [decode(r.value)[0] for r in read_topic(settings, settings.topic("points"), before[1], timeout=5)]
    assert sum(len(e.data["awards"]) for e in records) >= before[1]  # each person's awards, twice over
    processed = runtime.apply_runner.processed
    producer.publish_all(records)
    assert wait_until(lambda: runtime.apply_runner.processed >= processed + len(records), timeout=30)
    assert (totals(runtime, "all"), runtime.store.ledger.count_documents({})) == before


def test_an_award_published_one_a_record_before_the_upgrade_is_still_applied(producer, runtime):
    """A points topic written by the version before (points.awarded v1: one award a record) is
    read by the new applier as it comes: its awards count, once."""
    from shared.events.envelope import make_envelope

    feed(producer, runtime, story().events)
    before = totals(runtime, "all")
    award = {"entry_id": "old-1", "person_id": "pia", "points": 5, "rule": "kudos_received", "reason": "Kudos received",
             "source_event_id": "k-old", "source_event_type": "kudos.given", "at": (MON + timedelta(days=1)).isoformat()}
    old = make_envelope("points.awarded", "pia", award, source="points", schemaversion=1)
    producer.publish_all([old, old])  # and once more (a duplicate publish)
    feed(producer, runtime, [])
    assert totals(runtime, "all") == {**before, "pia": before["pia"] + 5}
    assert runtime.store.ledger.count_documents({"source_event_id": "k-old"}) == 1


def test_giver_cap_records_capped_awards_with_zero_points(producer, runtime):
    h = History()
    for i in range(4):
        h.kudos(f"kc{i}", MON + timedelta(hours=i), "jonas", ["ahmed"])
    feed(producer, runtime, h.events)
    entries = runtime.queries.history("ahmed")["items"]
    assert sorted((e["points"], e["capped"]) for e in entries) == [(0, True), (10, False), (10, False), (10, False)]
    assert "capped" in next(e["reason"] for e in entries if e["capped"])
    assert totals(runtime, "all")["ahmed"] == 30


def test_week_boundary_is_midnight_in_the_company_timezone(producer, runtime):
    h = History()
    sunday_late = datetime(2026, 11, 29, 22, 59, tzinfo=UTC)   # Sunday 23:59 in Amsterdam
    monday_early = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)   # Monday 00:00 in Amsterdam
    h.request("acknowledged", "b1", sunday_late, "pia", "acknowledged", business_hours_since_submitted=1.0)
    h.request("acknowledged", "b2", monday_early, "li", "acknowledged", business_hours_since_submitted=1.0)
    feed(producer, runtime, h.events)
    assert totals(runtime, "2026-W48") == {"pia": 5}
    assert totals(runtime, "2026-W49") == {"li": 5}


def test_badges_are_awarded_once_with_evidence_and_progress(producer, runtime, settings):
    h = History()
    for i in range(6):
        h.delivered(f"c{i}", MON + timedelta(hours=i), "li", rush=True)
    for i in range(3):
        h.request("deal_updated", "s1", MON - timedelta(weeks=i), "rita", "in_progress", text="news")
    feed(producer, runtime, h.events)
    assert wait_until(lambda: runtime.relay.relay_once() == 0 and runtime.store.badge_awards.count_documents({}) >= 1)
    badges = {b["badge"]: b for b in runtime.queries.badges_of("li")}
    clutch = badges["clutch"]
    assert clutch["earned"] and clutch["level"] == 6 and len(clutch["evidence_event_ids"]) == 5
    assert badges["fast_responder"]["earned"] is False and badges["fast_responder"]["progress"] == 0.0
    streak = {b["badge"]: b for b in runtime.queries.badges_of("rita")}["streak"]
    assert (streak["level"], streak["earned"], streak["next_threshold"], streak["progress"]) == (3, False, 4, 0.75)

    [(event, data)] = [decode(r.value) for r in read_topic(settings, settings.topic("badges"), 1)]
    assert event.type == "badge.awarded" and data.person_id == "li" and data.badge == "clutch" and data.name == "Clutch"
    assert read_topic(settings, settings.topic("badges"), 2, timeout=3)[1:] == []  # awarded once


def test_rebuild_equals_live_scoring(producer, runtime, points_settings):
    h = story()
    for i in range(4):
        h.kudos(f"kr{i}", MON + timedelta(hours=10 + i), "jonas", ["ahmed"])  # includes a capped one
    for i in range(5):
        h.delivered(f"cr{i}", MON + timedelta(hours=i), "li", rush=True)
    feed(producer, runtime, h.events)
    snapshot = _snapshot(runtime, runtime.store.table)
    runtime.stop()  # a rebuild runs with the points process stopped
    runtime.store.totals.insert_one({"_id": "ahmed:all", "person_id": "ahmed", "key": "all", "points": 1})  # from before the buckets
    # Someone the changelog has points for that history does not give any (a rules change took them).
    PointsTable(points_settings, producer).write([PersonState("ghost", totals={"all": [99, "sales", "rep"]})])

    # On the same clock as the live process (totals are kept for the periods readable "now").
    report = rebuild(points_settings, runtime.store.db, runtime.rules, runtime.scorer.directory, runtime.scorer.clock)
    assert report.events == len(h.events) and report.awards == len(snapshot["ledger"])
    rebuilt = read_table(points_settings)  # what the points process restores when it starts again
    assert _snapshot(runtime, rebuilt) == snapshot
    assert rebuilt.get("ghost").totals == {} and "ghost" not in rebuilt.key_totals("all")
    # Swapped in by renaming (FerretDB: not over an existing collection, so dropped first), with
    # the live store's indexes made after the load, and nothing left behind.
    store = runtime.store
    assert any(key[0][0] == "person_id" for key in (i["key"] for i in store.badge_awards.index_information().values()))
    assert not [name for name in store.db.list_collection_names() if name.endswith(SUFFIX) or name in Store.FOLDED]


def _snapshot(runtime, table):
    store = runtime.store
    return {
        # Which of several kudos racing at a cap gets capped follows processing order (live:
        # as they arrive across partitions; rebuild: by time), so compare what each person
        # earned by which rule, not entry ids.
        "ledger": sorted((d["person_id"], d["rule"], d["points"], d["capped"]) for d in store.ledger.find()),
        "totals": sorted((s.person_id, sorted((key, tuple(t)) for key, t in s.totals.items())) for s in table.people() if s.totals),
        "badges": sorted(d["_id"] for d in store.badge_awards.find()),
    }


def test_two_processes_share_the_work_and_a_killed_one_loses_and_doubles_nothing(points_settings, producer):
    import os
    import signal
    import subprocess
    import sys

    from shared.config import PROJECT_ROOT
    from shared.db import mongo_client
    from tests.integration.service_helpers import free_port

    producer.publish_all(person_events())
    actors = list(PEOPLE)
    h = History()
    for i in range(400):
        h.request("acknowledged", f"s{i}", MON + timedelta(minutes=i), actors[i % len(actors)], "acknowledged",
                  business_hours_since_submitted=1.0)
    expected = {a: 5 * sum(1 for i in range(400) if actors[i % len(actors)] == a) for a in actors}

    def start():
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
        env.update({"INSIDETRACK_KAFKA_PORT": str(points_settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(points_settings.mongo_port),
                    "INSIDETRACK_NAME_PREFIX": points_settings.name_prefix, "INSIDETRACK_POINTS_PORT": str(free_port()),
                    "INSIDETRACK_LOG_LEVEL": os.environ.get("TEST_CHILD_LOG_LEVEL", "WARNING"), "PYTHONPATH": str(PROJECT_ROOT)})
        return subprocess.Popen([sys.executable, "-m", "services.recognition.points"], env=env, cwd=PROJECT_ROOT)

    first, second = start(), start()
    client = mongo_client(points_settings)
    db = client[points_settings.database("points")]
    try:
        producer.publish_all(h.events[:200])
        assert wait_until(lambda: db.ledger.count_documents({}) >= 50, timeout=60)
        first.send_signal(signal.SIGKILL)  # in the middle of the stream
        first.wait(10)
        producer.publish_all(h.events[200:])
        # The survivor takes over the dead one's partitions and finishes everything, exactly once.
        assert wait_until(lambda: db.ledger.count_documents({}) == 400, timeout=120), (
            f"ledger {db.ledger.count_documents({})}, still to score or apply {consumer_lag(points_settings, POINTS_GROUPS)}")
        week = read_table(points_settings).key_totals("2026-W48")
        assert wait_until(lambda: read_table(points_settings).key_totals("2026-W48") == expected, timeout=30), week
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()  # never leave a process behind to load the next tests
                    proc.wait(10)
        client.close()
    assert second.returncode == 0  # and it stopped cleanly on SIGTERM


def test_the_stages_run_where_they_are_given_scoring_in_one_process_applying_in_another(points_settings, producer):
    """The local stack's shape (ops/supervisor.py): a process that scores (and keeps insights)
    publishes awards and applies none, keeps no points state and refuses reads of it with the
    reason; a process that applies applies them and answers those reads; both become ready and
    stop cleanly."""
    import os
    import signal
    import subprocess
    import sys

    from shared.bus.kafka import admin_client
    from shared.config import PROJECT_ROOT
    from shared.db import mongo_client
    from tests.integration.service_helpers import free_port

    producer.publish_all(person_events())
    h = History()
    for i in range(10):
        h.request("acknowledged", f"st{i}", MON + timedelta(minutes=i), "pia", "acknowledged", business_hours_since_submitted=1.0)

    import requests as http

    from shared.auth import internal_headers

    ports = {}

    def start(stages: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
        ports[stages] = free_port()
        env.update({"INSIDETRACK_KAFKA_PORT": str(points_settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(points_settings.mongo_port),
                    "INSIDETRACK_NAME_PREFIX": points_settings.name_prefix, "INSIDETRACK_POINTS_PORT": str(ports[stages]),
                    "INSIDETRACK_POINTS_STAGES": stages,
                    "INSIDETRACK_LOG_LEVEL": os.environ.get("TEST_CHILD_LOG_LEVEL", "WARNING"), "PYTHONPATH": str(PROJECT_ROOT)})
        return subprocess.Popen([sys.executable, "-m", "services.recognition.points"], env=env, cwd=PROJECT_ROOT)

    client = mongo_client(points_settings)
    db = client[points_settings.database("points")]
    scorer = start("score,insights")
    applier = None
    try:
        producer.publish_all(h.events)
        assert wait_until(lambda: consumer_lag(points_settings, {SCORE_GROUP: POINTS_GROUPS[SCORE_GROUP]}) == 0, timeout=60)
        awards = published_awards(points_settings)
        assert len(awards) == 10 and {award.person_id for award in awards} == {"pia"}
        # Scored and published, applied by nobody yet: nobody is in the applier's group.
        admin = admin_client(points_settings)
        try:
            apply_group = points_settings.topic("points-apply")
            members = admin.describe_groups([apply_group])[apply_group].get("members")
            score_group = points_settings.topic("points-score")
            scorers = admin.describe_groups([score_group])[score_group].get("members")
            insights_group = points_settings.topic("points-insights")
            insights_members = lambda: admin.describe_groups([insights_group])[insights_group].get("members")  # noqa: E731
            assert wait_until(lambda: len(insights_members()) == 1, timeout=30)  # insights run beside the scorer
        finally:
            admin.close()
        assert not members and len(scorers) == 1 and db.ledger.count_documents({}) == 0
        applier = start("apply")
        assert wait_until(lambda: db.ledger.count_documents({}) == 10, timeout=60)
        assert wait_until(lambda: read_table(points_settings).key_totals("2026-W48") == {"pia": 50}, timeout=30)
        assert len(published_awards(points_settings)) == 10  # the applier scored nothing

        def get(stages: str, path: str):
            return http.get(f"http://127.0.0.1:{ports[stages]}{path}", timeout=10,
                            headers=internal_headers(points_settings.internal_token, "pia"))

        # Both ready; only the applying process holds people's points and answers for them.
        assert wait_until(lambda: get("score,insights", "/readyz").status_code == 200, timeout=30)
        assert wait_until(lambda: get("apply", "/readyz").status_code == 200, timeout=30)
        refused = get("score,insights", "/leaderboard?period=week&first=5")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "points_not_kept_here"
        assert get("score,insights", "/people/pia/summary").status_code == 503
        assert get("score,insights", "/badges").status_code == 200  # the rules' badges: no points state needed
        ledger = get("apply", "/people/pia/ledger?first=20").json()["items"]
        assert sum(e["points"] for e in ledger) == 50  # from its points state's ledger index
        assert get("score,insights", "/people/pia/ledger?first=20").status_code == 503
    finally:
        for proc in (scorer, applier):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        client.close()
    assert scorer.returncode == 0 and applier.returncode == 0


def test_thanks_read_before_the_delivery_still_count_and_early_thanks_do_not(producer, runtime):
    h = History()
    h.submitted("o1", MON)
    delivered = h.delivered("o1", MON + timedelta(days=1), "pia")
    thanks = h.kudos("ko1", MON + timedelta(days=1, hours=1), "rita", ["pia"], request_id="o1")
    early = h.kudos("ko2", MON + timedelta(hours=1), "rita", ["li"], request_id="o1")  # before the delivery
    feed(producer, runtime, [h.events[0], thanks, early])   # the kudos topic is read first
    assert "thanked_the_helpers" not in {e["rule"] for e in runtime.queries.history("rita")["items"]}
    feed(producer, runtime, [delivered])
    rules = [e["rule"] for e in runtime.queries.history("rita")["items"]]
    assert rules.count("thanked_the_helpers") == 1  # the thanks after the delivery, not the early one


def test_distinct_and_streak_badges(producer, runtime):
    reps = [f"rep{i}" for i in range(10)]
    producer.publish_all([build_event("person.upserted", r, {"person_id": r, "email": f"{r}@example.com", "name": r.title(),
                                                             "role": "rep", "department": "sales"}, source="requests")
                          for r in reps])
    # People arrive on several partitions: wait for all of them, not just the last one sent.
    assert wait_until(lambda: len(runtime.queries.directory.many(reps)) == len(reps), timeout=30)
    h = History()
    for i, rep in enumerate(reps):
        h.kudos(f"kt{i}", MON + timedelta(minutes=i), rep, ["ahmed"])          # Team Favorite for ahmed
        h.kudos(f"kg{i}", MON + timedelta(hours=1, minutes=i), "rita", [rep])  # Grateful for rita
    h.kudos("kx", MON + timedelta(hours=2), "pia", ["ahmed"])                  # pia is support: not a rep
    for i in range(3):
        h.submitted(f"gb{i}", MON + timedelta(hours=3 + i), requester="jonas")
    h.submitted("gbx", MON + timedelta(hours=7), requester="jonas", complete=False)
    h.submitted("gby", MON + timedelta(hours=8), requester="jonas")
    feed(producer, runtime, h.events)
    assert wait_until(lambda: runtime.store.badge_awards.count_documents({}) >= 2, timeout=30), (
        [runtime.store.progress_of(p) for p in ("ahmed", "rita")],
        [(e["rule"], e["person_id"]) for e in runtime.store.ledger.find({"person_id": {"$in": ["ahmed", "rita"]}})][:30])
    ahmed = {b["badge"]: b for b in runtime.queries.badges_of("ahmed")}
    assert ahmed["team_favorite"]["earned"] and ahmed["team_favorite"]["level"] == 10
    rita = {b["badge"]: b for b in runtime.queries.badges_of("rita")}
    assert rita["grateful"]["earned"] and rita["grateful"]["level"] == 10
    jonas = {b["badge"]: b for b in runtime.queries.badges_of("jonas")}
    assert jonas["great_brief"]["level"] == 1 and not jonas["great_brief"]["earned"]  # the streak was broken
    assert sorted(d["_id"] for d in runtime.store.badge_awards.find()) == ["ahmed:team_favorite:earned", "rita:grateful:earned"]


def test_person_reads_come_from_read_models_and_an_old_store_is_upgraded(producer, runtime, points_settings, clock):
    """A person's ledger, rush share and badges are read by _id (the ledger pages, the
    requester's days, award ids); a store from before those read models gets them on start."""
    from services.recognition.points.store import UPGRADE_MARKER

    h = story()
    for i in range(4):
        h.kudos(f"ku{i}", MON + timedelta(hours=10 + i), "jonas", ["ahmed"])  # the 4th is capped
    for i in range(6):
        h.delivered(f"cu{i}", MON + timedelta(hours=i), "li", rush=True)
    feed(producer, runtime, h.events)
    queries, store = runtime.queries, runtime.store

    def person_reads():
        ledgers = {p: queries.history(p, first=2) for p in ("rita", "ahmed", "li")}
        for person, first_page in list(ledgers.items()):  # every page, through the cursors
            items, page = list(first_page["items"]), first_page
            while page["page_info"]["has_next_page"]:
                page = queries.history(person, first=2, after=page["page_info"]["end_cursor"])
                items += page["items"]
            ledgers[person] = (first_page["total_count"], [(e["entry_id"], e["points"], e["capped"]) for e in items])
        return {"ledgers": ledgers, "rush": {p: queries.rush_share(p) for p in ("rita", "jonas")},
                "badges": {p: queries.badges_of(p) for p in ("li", "rita")},
                "summaries": {p: queries.summary(p) for p in ("ahmed", "li", "rita")}}

    live = person_reads()
    # The same answers as a search of the ledger would give, newest first.
    for person, (total, items) in live["ledgers"].items():
        wanted = sorted((d for d in store.ledger.find({"person_id": person}) if d["points"] > 0 or d["capped"]),
                        key=lambda d: (d["at"], d["_id"]), reverse=True)
        assert total == len(items) == len(wanted) and [i[0] for i in items] == [d["_id"] for d in wanted]
    assert (0, True) in [(p, c) for _, p, c in live["ledgers"]["ahmed"][1]]
    assert live["rush"]["jonas"]["share"] == 0.5 and live["rush"]["rita"]["requests"] == 1
    assert {b["badge"]: b["earned"] for b in live["badges"]["li"]}["clutch"] is True
    assert live["summaries"]["ahmed"]["periods"]["week"]["points"] == 30  # the 4th kudos from jonas is capped

    # An old store: the same collections without the read models, and people's totals and badge
    # progress where older versions kept them: in documents per person, then in bucket documents
    # (one per period key and bucket; the fold takes any bucket id).
    # Their ledger lists were day buckets (``ledger_lists``), which the pages replace: folded
    # from the ledger itself. The people's states then had no ledger index.
    runtime.stop()
    store.submission_days.drop()
    store.ledger_pages.drop()
    store.ledger_lists.insert_one({"_id": "ledger:li|2026-11|days", "b": {}})
    people = sorted(runtime.store.table.people(), key=lambda state: state.person_id)
    assert all(s.ledger["n"] for s in people if s.person_id in ("rita", "ahmed", "li"))
    unindexed = [s.copy() for s in people]
    for state in unindexed:
        state.ledger = {}
    PointsTable(points_settings, producer).write(unindexed)
    assert len(people) >= 4 and {"li", "ahmed"} <= {s.person_id for s in people if s.progress}
    store.totals.insert_many([{"_id": f"{s.person_id}:{key}", "person_id": s.person_id, "key": key, "points": t[0],
                               "department": t[1], "role": t[2], "applied": s.applied}
                              for s in people[::2] for key, t in s.totals.items()])
    store.person_totals.insert_many([{"_id": f"{key}|{n}", "p": {person_field(s.person_id): t[0]},
                                      "d": {person_field(s.person_id): t[1]}, "r": {person_field(s.person_id): t[2]},
                                      "a": {person_field(s.person_id): s.applied}}
                                     for n, s in enumerate(people[1::2]) for key, t in s.totals.items()])
    store.person_totals.insert_one({"_id": "~buckets:v1", "at": MON})  # an older store's marker
    store.badge_progress.insert_many([{"_id": s.person_id, **s.progress} for s in people[::2] if s.progress])
    store.person_progress.insert_many([{"_id": str(n), "s": {person_field(s.person_id): json.dumps(s.progress)}}
                                       for n, s in enumerate(people[1::2]) if s.progress])
    folded = Store(store.db, table=PointsTable())
    assert folded.fold_into_state() == {"people": len(people)}
    assert {s.person_id: (s.totals, s.progress, s.applied) for s in folded.table.people()} == {
        s.person_id: (s.totals, s.progress, s.applied) for s in people}
    assert not set(Store.FOLDED) & set(store.db.list_collection_names())  # folded, then dropped
    assert folded.fold_into_state() == {}  # once only
    store.totals.insert_many([{"_id": "li:all", "person_id": "li", "key": "all", "points": 1}])
    store.db["scored_events"].insert_one({"_id": "ku0", "type": "kudos.given", "awards": "[]"})  # kept by older scorers
    again = build_runtime(points_settings, clock=clock)  # the changelog holds people already: only dropped
    try:
        again.start_background(only=[again.state_runner])
        assert wait_until(again.state_runner.caught_up.is_set, timeout=30)
        assert again.store.submission_days.find_one({"_id": UPGRADE_MARKER}) is not None
        assert not {"totals", "ledger_lists", "scored_events"} & set(again.store.db.list_collection_names())
        assert again.store.ledger_pages.marked() and again.store.fold_ledger() == {}  # once only
        assert again.store.key_totals("all") == {s.person_id: s.points("all") for s in people if s.points("all")}
        runtime.queries = again.queries
        queries = again.queries
        assert person_reads() == live
        assert again.store.upgrade() == {}  # once only
    finally:
        again.stop()
        disconnect()


def test_each_applied_batch_is_announced_and_a_batch_delivered_again_announces_again(producer, runtime, settings):
    """``points.applied`` follows the applier's write: the live leaderboards' cue. Awards delivered
    again (as after a crash between the write and the notice, before the commit) add nothing and
    send the notice then, so the crash loses no refresh."""
    h = History()
    h.kudos("k1", MON, "rita", ["pia"])  # +10 to pia; rita's award has no points (Grateful)
    feed(producer, runtime, h.events)
    ledger = runtime.store.ledger.count_documents({})
    notices = settings.topic("points-applied")
    # One notice per period's board, as soon as it is written: the week's first.
    first = [decode(r.value) for r in read_topic(settings, notices, 4)]
    assert [(e.type, e.subject, d.person_ids, d.awards) for e, d in first] == [("points.applied", "leaderboards", ["pia"], 1)] * 4
    assert [d.period_keys for _, d in first] == [["2026-W48"], ["2026-11"], ["2026-Q4"], ["all"]]

    awards = [decode(r.value)[0] for r in read_topic(settings, settings.topic("points"), 2)]
    producer.publish_all(awards)
    again = read_topic(settings, notices, 5)
    assert len(again) == 5
    _, data = decode(again[4].value)
    assert data.person_ids == ["pia"] and sorted(data.period_keys) == ["2026-11", "2026-Q4", "2026-W48", "all"]
    assert runtime.store.ledger.count_documents({}) == ledger


def test_a_restarted_process_restores_its_state_and_a_batch_cut_short_after_the_changelog_adds_nothing_twice(
        producer, runtime, points_settings, clock):
    """Totals and badge progress live in memory, kept in the changelog topic: a new process
    reads them back before it applies anything (and says it is not ready until then), and a
    batch whose changelog records were written before a crash (the ledger not yet) is applied
    again without counting twice."""
    h = story()
    feed(producer, runtime, h.events)
    live = {s.person_id: (s.totals, s.progress, s.applied) for s in runtime.store.table.people()}
    assert live["pia"][0]["all"][0] == 50 and live["li"][1]  # totals and badge progress
    runtime.stop()

    again = build_runtime(points_settings, clock=clock)
    try:
        assert len(again.store.table) == 0  # nothing in memory until the reader has read the changelog
        with again.app.test_client() as client:
            answer = client.get("/readyz")
            assert answer.status_code == 503 and "points_state" in answer.get_data(as_text=True)
        again.start_background()
        assert wait_until(again.state_runner.caught_up.is_set, timeout=30)
        assert {s.person_id: (s.totals, s.progress, s.applied) for s in again.store.table.people()} == live
        with again.app.test_client() as client:
            assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30), client.get("/readyz").get_json()

        # A crash after the changelog write: the people's new states are kept, the ledger lacks
        # the batch. Delivered again, the batch adds the ledger entries and not the points.
        awards = [PointsAwarded(entry_id=f"crash-{n}", person_id="pia", points=5, rule="kudos_received",
                                reason="Kudos received", source_event_id="kz", source_event_type="kudos.given",
                                at=MON + timedelta(days=2, hours=6 + n)) for n in range(2)]
        batch = [(award, "9", n) for n, award in enumerate(awards)]
        original = again.store.ledger.insert_many

        def crash(*args, **kwargs):
            raise ConnectionError("the process died here")

        again.store.ledger.insert_many = crash
        try:
            with pytest.raises(ConnectionError):
                again.applier.apply_batch(batch)
        finally:
            again.store.ledger.insert_many = original
        assert again.store.table.get("pia").points("all") == 60  # the changelog has it
        assert read_table(points_settings).get("pia").points("all") == 60
        assert again.applier.apply_batch(batch) == len(awards)
        assert again.store.table.get("pia").points("all") == 60  # not 70
        assert again.store.ledger.count_documents({"source_event_id": "kz"}) == len(awards)
    finally:
        again.stop()
