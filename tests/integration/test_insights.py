"""Insights for managers (issue 21): the read model the points process keeps from the events,
its figures for a week of internal selling, who may read it, and that a redelivered batch
adds nothing."""

from __future__ import annotations

import json

import pytest

from shared.bus.consumer import Delivery
from shared.bus.kafka import consumer_lag
from shared.events import build_event, decode
from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS, Insights
from services.recognition.points.insights_docs import BUCKET_FIELDS, _unpacked, _versions_of, bin_of, quantile
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


def settle_story(settings, producer, runtime) -> None:
    """The org, then the week's story, taken in by the insights group."""
    producer.publish_all(org_events())
    assert wait_until(lambda: getattr(runtime.insights.directory.get("rita"), "manager_id", None) == "mona", 30)
    feed(producer, runtime, story().events)
    assert wait_until(lambda: settled(settings, runtime), 60)


def week_and_all(rt, points_settings) -> dict:
    """Mona's and the admin's insights of the week and of all time, through the points API."""
    with serving(rt.app) as url:
        api = Client(url, points_settings.internal_token)
        return {(who, period): api.as_(who).get("/insights", params={"period": period}).json()
                for who in ("mona", "admin") for period in ("week", "all")}


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
        assert mona["reps"] == [  # highest score first
            {"person_id": "rita", "score": 45, "requests": 1, "rush_share": 0.0, "complete_brief_share": 1.0,
             "deal_updates": 2, "weeks_with_deal_update": 1},
            {"person_id": "jonas", "score": 0, "requests": 1, "rush_share": 1.0, "complete_brief_share": 0.0,
             "deal_updates": 0, "weeks_with_deal_update": 0},
        ]
        assert mona["reps_count"] == 2 and mona["recognition"]["unrecognized_count"] == 2
        assert mona["recognition"].pop("unrecognized_page_info")["has_next_page"] is False
        assert mona["recognition"] == {"people": 2, "gave_share": 0.5, "received_share": 0.0, "kudos_per_person": 0.0,
                                       "top_values": [], "unrecognized_ids": ["jonas", "rita"], "unrecognized_count": 2}
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

        # The lists that grow with the team come a page at a time, each item once, in order.
        def walk(name: str, params: dict) -> tuple[list, set]:
            items, counts, after = [], set(), None
            while True:
                page = api.as_("admin").get("/insights", params={"period": "all", f"{name}_first": 1,
                                                                 **({f"{name}_after": after} if after else {}), **params}).json()
                where = page if name == "reps" else page["recognition"]
                got = where["reps" if name == "reps" else "unrecognized_ids"]
                items += got
                counts.add(where[f"{name}_count"])
                info = where[f"{name}_page_info"]
                assert len(got) == 1 and info["has_previous_page"] is bool(after)
                if not info["has_next_page"]:
                    return items, counts
                after = info["end_cursor"]

        assert walk("reps", {}) == (everyone["reps"], {len(everyone["reps"])}) and len(everyone["reps"]) >= 2
        assert [r["score"] for r in everyone["reps"]] == sorted((r["score"] for r in everyone["reps"]), reverse=True)
        unrecognized = everyone["recognition"]["unrecognized_ids"]
        assert walk("unrecognized", {}) == (unrecognized, {len(unrecognized)}) and len(unrecognized) >= 2
        # The people it names are those of the pages only.
        one = api.as_("admin").get("/insights", params={"period": "all", "reps_first": 1, "unrecognized_first": 1}).json()
        assert {p["id"] for p in one["people"]} == {one["reps"][0]["person_id"], *one["recognition"]["unrecognized_ids"]}
        for bad in ({"reps_first": 0}, {"unrecognized_first": "ten"}, {"reps_first": 1, "reps_after": "nonsense"},
                    {"unrecognized_first": 1, "unrecognized_after": one["reps_page_info"]["end_cursor"]}):
            refused = api.as_("admin").get("/insights", params={"period": "all", **bad})
            assert refused.status_code == 400 and refused.json()["error"]["code"] in ("bad_page_size", "bad_cursor"), bad

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
            # Each person under their own field of their bucket's document (``pb:<bucket>:<key>``).
            return sum(int(_unpacked(person).get("kudos_given", 0)) for doc in runtime.insights.docs.find({"_id": {"$regex": "^pb:"}})
                       for field, person in doc.items() if field not in BUCKET_FIELDS)

        kudos = next(d for d in deliveries if d.envelope.type == "kudos.given")
        again = [Delivery(kudos.envelope, kudos.payload, kudos.topic, kudos.partition, kudos.offset + 1_000)]
        total = given()
        restarted.apply_batch(again)
        assert given() > total
        total = given()
        runtime.insights.apply_batch(again)
        assert given() == total


def test_an_older_stores_person_documents_are_folded_into_buckets_exactly(settings, producer, runtime,
                                                                          points_settings, clock):
    """A `var/` from before the people's buckets kept one document per person and period. Started
    again, the process folds them into buckets: the same answers; an event delivered again adds
    nothing; and an event that a crash had added to one person's document but not yet to the
    other's (a batch cut short) is added once to the one who lacked it."""
    from services.recognition.points.app import build_runtime
    from services.recognition.points.insights import LAYOUT_MARKER
    from services.recognition.points.insights_docs import INSIGHTS_BUCKETS
    from services.recognition.points.store import person_bucket, person_id_of
    from shared.db import disconnect

    settle_story(settings, producer, runtime)

    def answers(rt) -> dict:
        return week_and_all(rt, points_settings)

    before = answers(runtime)
    assert before[("mona", "week")]["reps"][0]["score"] == 45  # rita, highest score first
    runtime.stop()

    # The same documents as an older store kept them: one per person and period key.
    docs = runtime.insights.docs
    buckets = list(docs.find({"_id": {"$regex": "^pb:"}}))
    old = [{"_id": f"p:{person_id_of(field)}:{doc['_id'].split(':', 2)[2]}", **_unpacked(fields), "o": doc["o"]}
           for doc in buckets for field, fields in doc.items() if field not in BUCKET_FIELDS]
    assert {d["_id"] for d in old} >= {"p:rita:2026-W48", "p:pia:2026-W48", "p:rita:all"}
    docs.delete_many({"_id": {"$in": [d["_id"] for d in buckets] + [LAYOUT_MARKER]}})
    # A crash cut a batch short: a new kudos from Rita to Pia reached Rita's documents, not Pia's.
    kudos = build_event("kudos.given", "k-late", {
        "kudos_id": "k-late", "giver_id": "rita", "recipient_ids": ["pia"], "message": "thanks", "values": ["ownership"],
        "gesture": "thanks", "request_id": None, "at": clock.now()}, source="kudos")
    late = Delivery(*decode(kudos.to_bytes()), settings.topic("kudos"), 0, 1_000_000)
    source = f"{late.topic}|0"
    for doc in old:
        if doc["_id"].startswith("p:rita:"):
            doc["kudos_given"] = doc.get("kudos_given", 0) + 1
            doc["o"] = {**doc["o"], source: late.offset}
    docs.insert_many(old)

    again = build_runtime(points_settings, clock=clock)  # folds them
    try:
        assert docs.find_one({"_id": {"$regex": "^p:"}}) is None and docs.find_one({"_id": LAYOUT_MARKER})
        replayed = [Delivery(*decode(r.value), r.topic, r.partition, r.offset)
                    for r in read_topic(settings, settings.topic("requests"), 13) + read_topic(settings, settings.topic("kudos"), 3)]
        again.insights.apply_batch([*replayed, late])  # everything delivered again, and the late kudos
        after = answers(again)
        for who, period in before:
            recognition = after[(who, period)]["recognition"]
            if who == "admin":  # Pia received one more kudos (once), Rita gave one more (counted before)
                assert recognition["kudos_per_person"] > before[(who, period)]["recognition"]["kudos_per_person"]
                assert {v["value"] for v in recognition["top_values"]} >= {"ownership"}
                after[(who, period)]["recognition"] = before[(who, period)]["recognition"]
            assert after[(who, period)] == before[(who, period)], (who, period)
        week = {d["_id"]: d for d in old if d["_id"].endswith(":2026-W48")}
        pia = _unpacked(docs.find_one({"_id": f"pb:{person_bucket('pia', INSIGHTS_BUCKETS)}:2026-W48"})["pia"])
        rita = _unpacked(docs.find_one({"_id": f"pb:{person_bucket('rita', INSIGHTS_BUCKETS)}:2026-W48"})["rita"])
        assert pia["kudos_received"] == week["p:pia:2026-W48"].get("kudos_received", 0) + 1
        assert rita["kudos_given"] == week["p:rita:2026-W48"]["kudos_given"]  # the crash had added it already
    finally:
        disconnect()


def test_people_kept_as_fields_by_an_older_store_answer_the_same_and_become_strings(settings, producer, runtime,
                                                                                   points_settings, clock):
    """A `var/` from before the JSON strings kept each person's figures as fields of their
    bucket's document (and no version). Read as they are; a new event adds to them once, and
    the people it touches are written back as one string each; a delivery again adds nothing."""
    from services.recognition.points.app import build_runtime
    from services.recognition.points.insights_docs import INSIGHTS_BUCKETS
    from services.recognition.points.store import person_bucket
    from shared.db import disconnect

    settle_story(settings, producer, runtime)

    def answers(rt) -> dict:
        return week_and_all(rt, points_settings)

    before = answers(runtime)
    runtime.stop()
    docs = runtime.insights.docs
    for doc in docs.find({"_id": {"$regex": "^pb:"}}):
        assert doc["v"] >= 1 and all(isinstance(v, str) for k, v in doc.items() if k not in BUCKET_FIELDS)
        docs.replace_one({"_id": doc["_id"]}, {k: (v if k in BUCKET_FIELDS else _unpacked(v)) for k, v in doc.items() if k != "v"})
    docs.delete_many({"_id": {"$in": [f"pv:{key}" for key in ("2026-W48", "2026-11", "2026-Q4", "all")]}})  # nor versions documents

    again = build_runtime(points_settings, clock=clock)
    try:
        assert answers(again) == before
        kudos = build_event("kudos.given", "k-new", {
            "kudos_id": "k-new", "giver_id": "rita", "recipient_ids": ["jonas"], "message": "thanks", "values": ["ownership"],
            "gesture": "thanks", "request_id": None, "at": clock.now()}, source="kudos")
        new = Delivery(*decode(kudos.to_bytes()), settings.topic("kudos"), 0, 1_000_000)
        again.insights.apply_batch([new])
        again.insights.apply_batch([new])  # delivered again
        fresh = Insights(docs.database, again.rules, again.insights.calendar, again.insights.directory, clock)
        fresh.apply_batch([new])  # and to a process that holds nothing in memory
        after = answers(again)
        week = after[("mona", "week")]["recognition"]
        assert week["received_share"] == 0.5 and week["unrecognized_ids"] == ["rita"]
        assert after[("admin", "all")]["recognition"]["kudos_per_person"] > before[("admin", "all")]["recognition"]["kudos_per_person"]
        jonas = docs.find_one({"_id": f"pb:{person_bucket('jonas', INSIGHTS_BUCKETS)}:2026-W48"})
        assert isinstance(jonas["jonas"], str) and jonas["v"] == 1
        assert _unpacked(jonas["jonas"])["kudos_received"] == 1 and _unpacked(jonas["jonas"])["v"] == {"ownership": 1}
    finally:
        disconnect()


def test_a_backlog_is_held_then_written_once_exactly_whatever_another_writer_did_meanwhile(settings, producer, runtime,
                                                                                           clock):
    """Behind, insights adds batches up in memory and writes each document once per
    FLUSH_EVENTS events (the consumer commits after the write). Until then nothing is written;
    a document another writer changed meanwhile gets what is held added to it as it is now; one
    that already took some of the held events (a partition that moved) cannot be split: the
    flush lets go of everything held and the consumer reads it again (Replay)."""
    from services.recognition.points.insights_docs import _person_doc, _person_key
    from shared.bus.consumer import Replay

    settle_story(settings, producer, runtime)
    docs = runtime.insights.docs

    def received(who: str) -> int:
        doc = docs.find_one({"_id": _person_doc(who, "all")}) or {}
        return _unpacked(doc.get(_person_key(who))).get("kudos_received", 0)

    def kudos(kid: str, giver: str, to: str, partition: int, offset: int) -> Delivery:
        event = build_event("kudos.given", kid, {
            "kudos_id": kid, "giver_id": giver, "recipient_ids": [to], "message": "thanks", "values": [],
            "gesture": "thanks", "request_id": None, "at": clock.now()}, source="kudos")
        return Delivery(*decode(event.to_bytes()), settings.topic("kudos"), partition, offset)

    def process() -> Insights:  # another points process (or this one restarted): holds nothing
        return Insights(docs.database, runtime.rules, runtime.insights.calendar, runtime.insights.directory, clock)

    jonas, pia = received("jonas"), received("pia")
    held = process()
    first = [kudos("k-held-1", "rita", "jonas", 0, 3_000_000)]
    second = [kudos("k-held-2", "jonas", "pia", 0, 3_000_001), kudos("k-held-3", "li", "jonas", 0, 3_000_002)]
    held.add(first)
    held.add(second)
    held.add(first)  # delivered again while held (a new client after a start over): once
    assert (received("jonas"), received("pia")) == (jonas, pia)  # nothing written yet
    process().apply_batch([kudos("k-other", "mona", "jonas", 1, 3_000_000)])  # another partition's writer, meanwhile
    assert received("jonas") == jonas + 1
    held.flush()
    assert (received("jonas"), received("pia")) == (jonas + 3, pia + 1)
    held.apply_batch([*first, *second])  # delivered again: nothing twice
    process().apply_batch([*first, *second])
    assert (received("jonas"), received("pia")) == (jonas + 3, pia + 1)

    # Held events of which another writer took some: a partition that moved between them.
    moved = [kudos("k-moved-1", "rita", "jonas", 0, 3_000_010), kudos("k-moved-2", "mona", "jonas", 0, 3_000_011)]
    held.add(moved)
    process().apply_batch(moved[:1])
    with pytest.raises(Replay):
        held.flush()
    assert held._held == {} and received("jonas") == jonas + 4
    held.apply_batch(moved)  # read again from the last commit
    assert received("jonas") == jonas + 5


def test_a_teams_answer_is_kept_while_its_documents_stay_and_follows_every_change(settings, producer, runtime,
                                                                                  points_settings, clock):
    """A team is summed once per state of its documents (the key's versions document says which
    changed; an admin's team is the company): the same answers as a process reading afresh; a
    new event changes them at once; a versions document lost or behind (a crash between the
    writes and it) is mended from the documents or by the batch delivered again."""
    from services.recognition.points.insights_docs import INSIGHTS_BUCKETS
    from services.recognition.points.store import person_bucket

    settle_story(settings, producer, runtime)
    first = week_and_all(runtime, points_settings)
    docs = runtime.insights.docs
    versions = docs.find_one({"_id": "pv:2026-W48"})
    assert isinstance(versions["s"], str) and all(_versions_of(versions)) and "v" not in versions and runtime.insights._answers
    assert week_and_all(runtime, points_settings) == first  # from the kept answers

    def afresh() -> dict:
        """What a process that holds nothing in memory answers (the API's shape, without the HTTP)."""
        fresh = Insights(docs.database, runtime.rules, runtime.insights.calendar, runtime.insights.directory, clock)
        return {(who, period): fresh.read(runtime.insights.directory.get(who), period, None, clock.now())
                for who in ("mona", "admin") for period in ("week", "all")}

    def kudos(kid: str, giver: str, to: str) -> Delivery:
        event = build_event("kudos.given", kid, {
            "kudos_id": kid, "giver_id": giver, "recipient_ids": [to], "message": "thanks", "values": ["teamwork"],
            "gesture": "thanks", "request_id": None, "at": clock.now()}, source="kudos")
        return Delivery(*decode(event.to_bytes()), settings.topic("kudos"), 0, 2_000_000 + len(kid))

    assert first[("admin", "week")]["recognition"]["unrecognized_ids"].count("jonas") == 1
    runtime.insights.apply_batch([kudos("k-big-1", "rita", "jonas")])
    after = week_and_all(runtime, points_settings)
    week = after[("admin", "week")]["recognition"]
    assert "jonas" not in week["unrecognized_ids"]
    assert week["kudos_per_person"] > first[("admin", "week")]["recognition"]["kudos_per_person"]
    assert after[("mona", "week")]["recognition"]["unrecognized_ids"] == ["rita"]
    fresh = afresh()
    assert {k: (v["reps"], v["recognition"]["unrecognized_ids"], v["departments"]) for k, v in fresh.items()} == \
        {k: (v["reps"], v["recognition"]["unrecognized_ids"], v["departments"]) for k, v in after.items()}

    # The versions document lost (a store from before it): rebuilt from the documents.
    docs.delete_one({"_id": "pv:2026-W48"})
    assert week_and_all(runtime, points_settings) == after and docs.find_one({"_id": "pv:2026-W48"})
    # Behind (a crash after the people's write, before its own): the kept answer shows the state
    # it names until the batch is delivered again, which finds nothing new and mends it.
    bucket = str(person_bucket("pia", INSIGHTS_BUCKETS))
    stamp = _versions_of(docs.find_one({"_id": "pv:2026-W48"}))[0][bucket]
    new = kudos("k-big-2", "jonas", "pia")
    runtime.insights.apply_batch([new])
    behind, departments = _versions_of(docs.find_one({"_id": "pv:2026-W48"}))
    assert behind[bucket] > stamp
    docs.update_one({"_id": "pv:2026-W48"}, {"$set": {"s": json.dumps({"b": {**behind, bucket: stamp}, "d": departments})},
                                             "$inc": {"n": 1}})
    fresh = Insights(docs.database, runtime.rules, runtime.insights.calendar, runtime.insights.directory, clock)
    fresh.apply_batch([new])  # delivered again, to a process that holds nothing in memory
    assert _versions_of(docs.find_one({"_id": "pv:2026-W48"}))[0][bucket] > stamp
    mended = week_and_all(runtime, points_settings)
    assert mended[("admin", "week")]["recognition"]["kudos_per_person"] > week["kudos_per_person"]

    # A store from before keeps its versions as a map: read as it is, a string from the next write.
    now = docs.find_one({"_id": "pv:2026-W48"})
    docs.replace_one({"_id": "pv:2026-W48"}, {"v": _versions_of(now)[0]})
    assert week_and_all(runtime, points_settings) == mended
    runtime.insights._versions_docs.clear()  # as a process started on that store
    runtime.insights.apply_batch([kudos("k-big-three", "pia", "rita")])
    upgraded = docs.find_one({"_id": "pv:2026-W48"})
    assert "v" not in upgraded and set(_versions_of(upgraded)[0]) >= set(_versions_of(now)[0])
    assert week_and_all(runtime, points_settings)[("mona", "week")]["recognition"]["unrecognized_ids"] == []

    # Two writers (two processes each with a share of the partitions): the one whose copy is old
    # reads the document again and merges, so neither loses a bucket's version.
    other = Insights(docs.database, runtime.rules, runtime.insights.calendar, runtime.insights.directory, clock)
    other._raise_versions({"2026-W48": {"9999": 1}})  # another writer, after ours last wrote
    runtime.insights._raise_versions({"2026-W48": {"9998": 1}})  # ours, from its copy of before
    both = _versions_of(docs.find_one({"_id": "pv:2026-W48"}))[0]
    assert both["9999"] == 1 and both["9998"] == 1 and set(both) >= set(_versions_of(upgraded)[0])

    # A department's document is read again only when the versions document names other offsets
    # for it: a new request is counted at once, by this process and by one reading afresh.
    def received(answers) -> dict:
        return {d["department"]: d["requests_received"] for d in answers[("admin", "week")]["departments"]}

    first_read = received(week_and_all(runtime, points_settings))
    assert runtime.insights._departments  # (the map above named no department: each is read while so)
    submitted = next(e for e in story().events if e.type == "request.submitted")
    request = build_event("request.submitted", "r-new", {**submitted.data, "request_id": "r-new", "at": clock.now()},
                          source="requests")
    runtime.insights.apply_batch([Delivery(*decode(request.to_bytes()), settings.topic("requests"), 0, 3_000_000)])
    named = _versions_of(docs.find_one({"_id": "pv:2026-W48"}))[1]["pricing"]
    assert named == docs.find_one({"_id": "d:pricing:2026-W48"})["o"] and named[f"{settings.topic('requests')}|0"] == 3_000_000
    counted = received(week_and_all(runtime, points_settings))
    assert counted["pricing"] == first_read["pricing"] + 1 and counted == received(afresh())
    assert runtime.insights._departments["d:pricing:2026-W48"][0] == named
    assert received(week_and_all(runtime, points_settings)) == counted  # kept, and the same
