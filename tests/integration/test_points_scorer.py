"""The scorer (stage 1 of points) on FerretDB: a batch scored with its guards (monthly limits,
the giver-to-receiver cap) read and written in bulk gives the same awards as one event at a
time; a batch another scorer races against is scored again, counting nothing twice; an event
delivered again is scored again to the same awards (same ids), which are published again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from kafka.errors import KafkaTimeoutError

from services.recognition import directory as engine_directory
from services.recognition.directory import Directory
from services.recognition.points import scorer as scoring
from services.recognition.points.scorer import Scorer
from services.recognition.points.store import Store, entry_id
from services.recognition.points.rules import load_rules
from shared.calendar import BusinessCalendar
from shared.clock import ManualClock
from shared.db import connect, disconnect
from shared.events import build_event
from shared.events.schemas import PersonUpserted

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)


@pytest.fixture
def db(settings):
    database = connect(settings, "points")
    yield database
    disconnect()


def scorer(db, settings, suffix: str) -> Scorer:
    store = Store(db, suffix)
    store.ensure_indexes()
    return Scorer(store, load_rules(), BusinessCalendar.from_settings(settings), Directory(), ManualClock(NOW))


def kudos(n: int, giver: str, recipients: list[str]):
    return build_event("kudos.given", f"k{n}", {
        "kudos_id": f"k{n}", "giver_id": giver, "recipient_ids": recipients, "message": "thanks", "values": [],
        "gesture": "thanks", "request_id": None, "at": NOW - timedelta(minutes=100 - n)}, source="test")


def awards(docs) -> dict[tuple[str, str, str], tuple[int, bool]]:
    return {(d["_id"], a["rule"], a["person_id"]): (a["points"], a["capped"]) for d in docs for a in d["awards"]}


def test_a_batch_scores_exactly_as_one_event_at_a_time(db, settings):
    # Three givers, three receivers, 45 kudos: the 30-points-a-month cap from one giver to one
    # receiver caps some kudos_received awards; kudos_given (0 points) is never capped.
    events = [kudos(n, f"g{n % 3}", [f"r{n % 5 % 3}", f"r{(n + 1) % 3}"] if n % 4 == 0 else [f"r{n % 5 % 3}"])
              for n in range(45)]
    batched = scorer(db, settings, "_batched").score_batch(events)
    single = scorer(db, settings, "_single")
    one_by_one = [doc for e in events for doc in single.score_batch([e])]

    assert awards(batched) == awards(one_by_one)
    capped = [k for k, (points, was_capped) in awards(batched).items() if was_capped]
    assert capped and len(capped) < len(awards(batched))  # the cap bites, and not on everything
    received = {}
    for (_, rule, person), (points, _) in awards(batched).items():
        if rule == "kudos_received":
            received[person] = received.get(person, 0) + points
    assert received and all(total > 0 for total in received.values())

    # A replay of the whole batch (a redelivery) gives the same awards, ids included: the guards
    # know the awards they counted, so nothing is capped or counted anew (stage 2 skips them).
    again = scorer(db, settings, "_batched").score_batch(events)
    assert awards(again) == awards(batched)
    guards = scorer(db, settings, "_batched").store.guards
    assert all(g["points"] <= 30 and len(g["ids"]) == len(set(g["ids"])) for g in guards.find({"_id": {"$regex": "^giver:"}}))


@pytest.mark.parametrize("guard_existed", [False, True], ids=["new guard (inserted)", "existing guard (updated)"])
def test_a_batch_raced_by_another_scorer_counts_nothing_twice(db, settings, monkeypatch, guard_existed):
    suffix = "_race_old" if guard_existed else "_race"
    ours, theirs = scorer(db, settings, suffix), scorer(db, settings, suffix)
    if guard_existed:  # 10 of the 30 points a month from g to r used before this batch
        theirs.score_batch([kudos(-5, "g", ["r"])])
    batch = [kudos(n, "g", ["r"]) for n in (1, 2, 3)]
    raced = []
    prefetch = scoring._Batch.prefetch

    def prefetch_then_race(self, guard_ids, people, requests=()):
        prefetch(self, guard_ids, people, requests)  # our batch has read the guard: 0 of 30 points used
        if not raced:
            raced.append(True)
            theirs.score_batch([kudos(0, "g", ["r"])])  # another process takes 10 of them meanwhile

    monkeypatch.setattr(scoring._Batch, "prefetch", prefetch_then_race)
    scored = ours.score_batch(batch)

    assert raced and [d["_id"] for d in scored] == [e.id for e in batch]
    received = [next((a["points"], a["capped"]) for a in d["awards"] if a["rule"] == "kudos_received") for d in scored]
    # k0 took 10 of the 30 (and k-5 10 more, when the guard existed): the rest is capped.
    expected = [(10, False), (0, True), (0, True)] if guard_existed else [(10, False), (10, False), (0, True)]
    assert received == expected
    guard = ours.store.guards.find_one({"_id": f"giver:g:r:{NOW:%Y-%m}"})
    assert guard["points"] == 30 and len(guard["ids"]) == 3 == len(set(guard["ids"]))


def test_awards_lost_between_scoring_and_publish_go_out_when_the_event_comes_again(db, settings):
    scorer_ = scorer(db, settings, "_again")
    sent = []

    def kafka_away(envelopes):
        raise KafkaTimeoutError("Failed to update metadata after 10.0 secs.")

    event = kudos(1, "g", ["r1", "r2"])
    scorer_.publish = kafka_away
    with pytest.raises(KafkaTimeoutError):
        scorer_.score_batch([event])  # guards written, nothing published: the consumer does not commit
    scorer_.publish = sent.extend
    scorer_.score_batch([event, event])  # redelivered (twice in one poll, even): scored once more
    expected = {entry_id(event.id, rule, person) for rule, person in
                (("kudos_received", "r1"), ("kudos_received", "r2"), ("kudos_given", "g"))}
    assert sorted(a["entry_id"] for a in sent_awards(sent)) == sorted(expected)  # published, once each
    assert {e.type for e in sent} == {"points.awarded"}
    assert {a["person_id"]: a["points"] for a in sent_awards(sent)} == {"r1": 10, "r2": 10, "g": 0}  # nothing capped
    # One record per person, holding that person's awards only.
    assert sorted(e.subject for e in sent) == ["g", "r1", "r2"]
    assert all(a["person_id"] == e.subject for e in sent for a in e.data["awards"])
    # The giver-to-receiver guards counted each award once, though it was scored twice.
    for person in ("r1", "r2"):
        guard = scorer_.store.guards.find_one({"_id": f"giver:g:{person}:{NOW:%Y-%m}"})
        assert guard["points"] == 10 and guard["ids"] == [entry_id(event.id, "kudos_received", person)]

    sent.clear()
    fresh = kudos(2, "g", ["r1"])
    assert len(scorer_.score_batch([fresh])) == 1
    assert len(sent_awards(sent)) == 2 and all(a["source_event_id"] == fresh.id for a in sent_awards(sent))


def test_a_spaced_award_scored_again_after_a_later_one_of_its_key_comes_out_the_same(db, settings):
    """Deal updates count once per request per 5 business days. Two of one request a week apart
    (an import's history) in one batch both count; a redelivery of the batch scores the first
    one after the guard already holds the second: it is recognised by its award's id."""
    scorer_ = scorer(db, settings, "_spaced")
    updates = [build_event("request.deal_updated", "q1", {
        "request_id": "q1", "requester_id": "rep1", "department": "pricing", "actor_id": "rep1", "status": "in_progress",
        "at": at, "text": "moving"},
        source="test") for at in (NOW - timedelta(days=14), NOW - timedelta(days=7), NOW - timedelta(days=6))]
    first = awards(scorer_.score_batch(updates))
    counted = [key for key, (points, _) in first.items() if key[1] == "deal_update"]
    assert [key[0] for key in counted] == [updates[0].id, updates[1].id]  # the third is too soon after the second
    assert awards(scorer_.score_batch(updates)) == first
    single = scorer(db, settings, "_spaced_single")  # one at a time, then the batch delivered again: the same
    assert awards([doc for u in updates for doc in single.score_batch([u])]) == first
    assert awards(single.score_batch(updates)) == first


def test_the_directory_copy_reads_many_people_in_index_sized_chunks(db):
    """``Directory.many`` reads by ``$in`` in chunks the local FerretDB answers from its index;
    every known person comes back once, unknown ids are left out."""
    directory = Directory()
    directory.collection.insert_many([{"_id": f"d{i}", "name": f"D {i}", "email": f"d{i}@example.com", "role": "rep",
                                       "department": "sales", "active": True} for i in range(1_250)])
    wanted = [f"d{i}" for i in range(1_250)] + ["d7", "nobody"]
    found = directory.many(wanted)
    assert len(found) == 1_250 and "nobody" not in found and found["d1249"].name == "D 1249"
    assert directory.many([]) == {}


def person_event(person_id: str, department: str, at: datetime):
    data = PersonUpserted(person_id=person_id, email=f"{person_id}@example.com", name=person_id.title(), role="support",
                          department=department)
    return build_event("person.upserted", person_id, data, source="test", clock=ManualClock(at)), data


def test_the_directory_copy_keeps_people_in_memory_and_never_an_older_copy(db, monkeypatch):
    directory = Directory()
    directory.apply(*person_event("ana", "pricing", NOW))
    assert directory.get("ana").department == "pricing"
    reads = []
    real = engine_directory.find_by_ids
    monkeypatch.setattr(engine_directory, "find_by_ids", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert directory.many(["ana"])["ana"].department == "pricing" and not reads  # from memory
    # She moves to legal: the next read has it.
    directory.apply(*person_event("ana", "legal", NOW + timedelta(minutes=1)))
    assert directory.get("ana").department == "legal" and len(reads) == 1

    # A read that began before a move and ended after it is not kept in memory.
    def read_then_move(*a, **k):
        found = real(*a, **k)  # ana as in legal
        directory.apply(*person_event("ana", "sales", NOW + timedelta(minutes=2)))
        return found

    directory._known.clear()
    monkeypatch.setattr(engine_directory, "find_by_ids", read_then_move)
    assert directory.get("ana").department == "legal"  # what the read saw
    monkeypatch.setattr(engine_directory, "find_by_ids", real)
    assert directory.get("ana").department == "sales"


def managed_event(person_id: str, manager_id: str | None, at: datetime, active: bool = True):
    data = PersonUpserted(person_id=person_id, email=f"{person_id}@example.com", name=person_id.title(), role="rep",
                          department="sales", manager_id=manager_id, active=active)
    return build_event("person.upserted", person_id, data, source="test", clock=ManualClock(at)), data


def test_a_managers_team_down_the_chain_comes_from_memory_until_someone_changes(db):
    """Insights ask for a manager's team: everyone below them, as ``shared.auth.manages`` has
    it, without reading the whole directory copy for each question."""
    directory = Directory()
    for person, manager in [("t-boss", None), ("t-lead", "t-boss"), ("t-rep1", "t-lead"), ("t-rep2", "t-lead"),
                            ("t-other", None), ("t-loop1", "t-loop2"), ("t-loop2", "t-loop1")]:
        directory.apply(*managed_event(person, manager, NOW))
    team = lambda manager: sorted(p.id for p in directory.below(manager))  # noqa: E731
    assert team("t-boss") == ["t-lead", "t-rep1", "t-rep2"]
    assert team("t-lead") == ["t-rep1", "t-rep2"] and team("t-rep1") == [] and team("t-loop1") == ["t-loop2"]
    everyone = {p.id for p in directory.everyone()}
    assert {"t-boss", "t-other", "t-loop2"} <= everyone

    reads = []
    real = directory.collection.find
    directory.collection = type("Counted", (), {"find": lambda self, *a, **k: reads.append(a) or real(*a, **k)})()
    assert team("t-boss") == ["t-lead", "t-rep1", "t-rep2"] and not reads  # kept in memory
    # A rep moves to another manager: the next question reads the copy again and sees it.
    directory.collection = real.__self__
    directory.apply(*managed_event("t-rep2", "t-other", NOW + timedelta(minutes=1)))
    assert team("t-boss") == ["t-lead", "t-rep1"] and team("t-other") == ["t-rep2"]


def request_event(kind: str, rid: str, minutes: int, **data):
    at = NOW - timedelta(minutes=100 - minutes)
    base = {"request_id": rid, "requester_id": "rep", "department": "pricing", "actor_id": "rep", "status": "x", "at": at,
            "needed_by": at + timedelta(days=3)}
    if kind == "request.submitted":
        base.update(kind="quote", title="A quote", customer="Acme", details_length=300)
    return build_event(kind, rid, {**base, **data}, source="test")


def test_a_batch_of_requests_and_thanks_records_their_facts_as_one_event_at_a_time(db, settings):
    # A thank-you read before its request's delivery (topics are read in parallel) waits for the
    # delivery; one read after it counts at once; one given before the delivery never counts.
    thanks = lambda n, minutes, rid: build_event("kudos.given", f"t{n}", {  # noqa: E731
        "kudos_id": f"t{n}", "giver_id": "rep", "recipient_ids": ["analyst"], "message": "thanks", "values": [],
        "gesture": "thanks", "request_id": rid, "at": NOW - timedelta(minutes=100 - minutes)}, source="test")
    events = [
        request_event("request.submitted", "q1", 1, priority="rush", notice_business_hours=4, brief_complete=True),
        request_event("request.submitted", "q2", 2, priority="normal", notice_business_hours=40, brief_complete=False),
        thanks(1, 30, "q1"),  # read first, given after the delivery (minute 20): waits, then counts
        thanks(2, 10, "q1"),  # given before the delivery: never counts
        request_event("request.delivered", "q1", 20, assignee_ids=["analyst"], on_time=True, rush=True, priority="rush",
                      notice_business_hours=4),
        thanks(3, 40, "q1"),  # after the delivery: counts at once
        thanks(4, 50, "q2"),  # q2 not delivered: waits
    ]
    batched = scorer(db, settings, "_facts_batched")
    single = scorer(db, settings, "_facts_single")
    in_one = batched.score_batch(events)
    one_by_one = [doc for e in events for doc in single.score_batch([e])]

    assert awards(in_one) == awards(one_by_one)
    kudos_ids = {e.id: e.data["kudos_id"] for e in events if e.type == "kudos.given"}
    thanked = {kudos_ids[a["source_event_id"]] for d in in_one for a in d["awards"] if a["rule"] == "thanked_the_helpers"}
    assert thanked == {"t1", "t3"}
    for name in ("request_facts", "submissions", "submission_days"):
        # (A list emptied one at a time and one never written in a batch are the same.)
        ours = {d["_id"]: {k: v for k, v in d.items() if v != []} for d in getattr(batched.store, name).find()}
        theirs = {d["_id"]: {k: v for k, v in d.items() if v != []} for d in getattr(single.store, name).find()}
        assert ours == theirs, name
    facts = {d["_id"]: d for d in batched.store.request_facts.find()}
    assert facts["q1"]["delivered"] and not facts["q1"].get("waiting_thanks")
    assert [w["event"]["data"]["kudos_id"] for w in facts["q2"]["waiting_thanks"]] == ["t4"]
    assert batched.store.submissions.count_documents({"rush_short_notice": True}) == 1


def thanks_for(n: int, rid: str, minutes: int):
    return build_event("kudos.given", f"t{n}", {
        "kudos_id": f"t{n}", "giver_id": "rep", "recipient_ids": ["analyst"], "message": "thanks", "values": [],
        "gesture": "thanks", "request_id": rid, "at": NOW - timedelta(minutes=100 - minutes)}, source="test")


def delivery(rid: str, minutes: int):
    return request_event("request.delivered", rid, minutes, assignee_ids=["analyst"], on_time=True, rush=False,
                         priority="normal", notice_business_hours=40)


def sent_awards(envelopes) -> list[dict]:
    """The awards in published ``points.awarded`` records (each a person's), in order."""
    return [award for e in envelopes for award in e.data["awards"]]


def thanked(envelopes) -> list[str]:
    """The kudos whose thanks for a delivery were awarded, among published award events."""
    return sorted(a["source_event_id"] for a in sent_awards(envelopes) if a["rule"] == "thanked_the_helpers")


@pytest.mark.parametrize("batched", [True, False], ids=["batched delivery", "delivery alone"])
def test_a_thanks_that_starts_waiting_while_its_delivery_is_scored_is_awarded(db, settings, monkeypatch, batched):
    """Two scorer processes: one scores the delivery of r1 and has read its facts (one thanks
    waiting); before it writes the delivery, the other reads r1 undelivered and adds a second
    thanks to wait. Both thanks are awarded once, and nothing is left waiting."""
    suffix = "_late_thanks" + ("_batched" if batched else "")
    delivering, thanking = scorer(db, settings, suffix), scorer(db, settings, suffix)
    sent: list = []
    delivering.publish = thanking.publish = sent.extend
    first, second = thanks_for(1, "r1", 30), thanks_for(2, "r1", 40)
    thanking.score_batch([request_event("request.submitted", "r1", 1, priority="normal", notice_business_hours=40,
                                        brief_complete=True), first])
    assert thanked(sent) == []  # r1 not delivered: t1 waits
    flush, change_facts = scoring._Batch.flush, scoring._Batch.change_facts
    raced = []

    def thanks_meanwhile():
        if not raced:
            raced.append(True)
            thanking.score_batch([second])

    def flush_after_thanks(self):  # batched: the delivery's facts were read, not yet written
        thanks_meanwhile()
        flush(self)

    def set_after_thanks(self, request_id, fields):  # alone: read facts, then written at once
        if fields.get("delivered"):
            thanks_meanwhile()
        change_facts(self, request_id, fields)

    if batched:
        monkeypatch.setattr(scoring._Batch, "flush", flush_after_thanks)
        delivering.score_batch([delivery("r1", 20), kudos(3, "g", ["r"])])
    else:
        monkeypatch.setattr(scoring._Batch, "change_facts", set_after_thanks)
        delivering.score_batch([delivery("r1", 20)])

    assert raced and thanked(sent) == sorted([first.id, second.id])
    assert not delivering.store.request_facts.find_one({"_id": "r1"}).get("waiting_thanks")


@pytest.mark.parametrize("batched", [True, False], ids=["batched thanks", "thanks alone"])
def test_a_thanks_read_undelivered_but_written_after_the_delivery_is_awarded_at_once(db, settings, monkeypatch, batched):
    """The other order: a scorer reads r1 undelivered for a thanks, and the delivery is written
    before the thanks joins the waiting list. The thanks does not wait (nobody would read it
    again): its batch is scored again and awards it."""
    suffix = "_after_delivery" + ("_batched" if batched else "")
    delivering, thanking = scorer(db, settings, suffix), scorer(db, settings, suffix)
    sent: list = []
    delivering.publish = thanking.publish = sent.extend
    thanking.score_batch([request_event("request.submitted", "r1", 1, priority="normal", notice_business_hours=40,
                                        brief_complete=True)])
    wait, raced = scoring._Batch.wait_for_delivery, []

    def delivered_meanwhile(self, request_id, waiting):
        if not raced:
            raced.append(True)
            delivering.score_batch([delivery("r1", 20)])
        return wait(self, request_id, waiting)

    monkeypatch.setattr(scoring._Batch, "wait_for_delivery", delivered_meanwhile)
    event = thanks_for(1, "r1", 30)
    docs = thanking.score_batch([event, kudos(3, "g", ["r"])] if batched else [event])

    assert raced and thanked(sent) == [event.id]
    assert [a["rule"] for a in docs[0]["awards"] if a["rule"] == "thanked_the_helpers"] == ["thanked_the_helpers"]
    assert not delivering.store.request_facts.find_one({"_id": "r1"}).get("waiting_thanks")
