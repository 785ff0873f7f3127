"""Outbox relay and MongoDB behaviour on the real wire server (FerretDB)."""

from __future__ import annotations

import mongoengine
import pytest
from kafka.errors import KafkaTimeoutError

from pymongo.collection import Collection

from shared.bus import outbox
from shared.bus.outbox import OutboxDocument, OutboxJournal, OutboxRelay, merge_update, with_outbox
from shared.db import connect, disconnect, insert_once
from shared.events import Envelope, build_event
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def kudos_given(kudos_id: str, clock, n: int = 1) -> Envelope:
    return build_event(
        "kudos.given",
        kudos_id,
        {
            "kudos_id": kudos_id, "giver_id": "ana", "recipient_ids": ["bo"], "message": f"thanks #{n}",
            "values": [], "gesture": "coffee", "at": clock.now(),
        },
        source="kudos",
        clock=clock,
    )


@pytest.fixture
def db(settings):
    database = connect(settings, "outbox_test")
    yield database
    disconnect()


class CrashAfterPublish(Exception):
    pass


class CrashingCollection:
    """A collection whose writes fail: the process "died" after publishing, before cleanup."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)  # reads (find, find_one, full_name) work

    def update_one(self, *args, **kwargs):
        raise CrashAfterPublish()

    def bulk_write(self, *args, **kwargs):
        raise CrashAfterPublish()


def test_events_written_with_the_state_are_published_after_a_crash_before_the_relay_ran(settings, producer, db, clock):
    # State and events in one insert, then the process "crashes": no relay ran.
    events = [kudos_given("k1", clock, n) for n in range(1, 4)]
    db.kudos.insert_one(with_outbox({"_id": "k1", "message": "thanks"}, events))

    # A new process starts its relay and finds the pending events.
    relay = OutboxRelay(producer, [db.kudos])
    assert relay.relay_once() == 3

    records = read_topic(settings, settings.topic("kudos"), 3)
    assert [Envelope.from_bytes(r.value).id for r in records] == [e.id for e in events]  # in order
    doc = db.kudos.find_one({"_id": "k1"})
    assert doc["outbox"] == [] and doc["outbox_pending"] is False and doc["message"] == "thanks"
    assert relay.relay_once() == 0


def test_a_crash_between_publish_and_cleanup_republishes_the_same_events_never_loses_them(settings, producer, db, clock):
    first = kudos_given("k2", clock, 1)
    db.kudos.insert_one(with_outbox({"_id": "k2", "state": "given"}, [first]))

    with pytest.raises(CrashAfterPublish):
        OutboxRelay(producer, [CrashingCollection(db.kudos)]).relay_once()

    # Meanwhile the service changes the state and records another event in the same write.
    second = kudos_given("k2", clock, 2)
    db.kudos.update_one({"_id": "k2"}, merge_update({"$set": {"state": "added_on"}}, [second]))

    assert OutboxRelay(producer, [db.kudos]).relay_once() == 2
    ids = [Envelope.from_bytes(r.value).id for r in read_topic(settings, settings.topic("kudos"), 3)]
    assert ids == [first.id, first.id, second.id]  # a duplicate (deduped by id downstream), no loss
    assert db.kudos.find_one({"_id": "k2"})["outbox"] == []


def test_a_writer_names_the_document_and_the_relay_publishes_it_without_searching(settings, producer, db, clock):
    relay = OutboxRelay(producer, [db.kudos], scan_s=3600)
    assert relay.relay_once() == 0  # the start-up search: nothing pending yet
    first, second = kudos_given("k4", clock, 1), kudos_given("k5", clock, 1)
    db.kudos.insert_one(with_outbox({"_id": "k4"}, [first]))
    db.kudos.insert_one(with_outbox({"_id": "k5"}, [second]))

    relay.notify(db.kudos, "k4")
    assert relay.relay_once() == 1  # only the document it was told about: no search ran
    assert db.kudos.find_one({"_id": "k5"})["outbox_pending"] is True

    relay.notify()  # no id: search everything (what the periodic safety net does)
    assert relay.relay_once() == 1
    ids = [Envelope.from_bytes(r.value).id for r in read_topic(settings, settings.topic("kudos"), 2)]
    assert sorted(ids) == sorted([first.id, second.id])  # two subjects: two partitions, no order between them
    with pytest.raises(ValueError):
        relay.notify(db.people, "p1")  # a collection it does not watch: a wiring mistake, said loudly


def _searches(monkeypatch) -> list[dict]:
    """Record every find of the test's collections that is not by _id (a scan on FerretDB)."""
    seen: list[dict] = []
    real = Collection.find

    def find(self, filter=None, *args, **kwargs):
        if self.name in ("kudos", "people") and not (isinstance(filter, dict) and "_id" in filter):
            seen.append(filter)
        return real(self, filter, *args, **kwargs)

    monkeypatch.setattr(Collection, "find", find)
    return seen


def test_the_safety_net_reads_the_journal_not_the_collection_and_finishes_a_dead_writers_document(
        settings, producer, db, clock, monkeypatch):
    searches = _searches(monkeypatch)
    old = kudos_given("k_old", clock, 1)  # left pending by code from before the journal (an old var/)
    db.kudos.insert_one(with_outbox({"_id": "k_old"}, [old]))
    journal = OutboxJournal(db.kudos)
    relay = OutboxRelay(producer, [db.kudos], journals=[journal])
    assert relay.relay_once() == 1 and len(searches) == 1  # not started: one search, once
    assert journal.started()

    # A writer marks, writes, and dies before its notice: only the journal knows.
    dead = kudos_given("k_dead", clock, 1)
    journal.mark("k_dead")
    db.kudos.insert_one(with_outbox({"_id": "k_dead"}, [dead]))
    # A live writer's document, published through its notice.
    live = kudos_given("k_live", clock, 1)
    journal.mark("k_live")
    db.kudos.insert_one(with_outbox({"_id": "k_live"}, [live]))
    relay.notify(db.kudos, "k_live")
    assert relay.relay_once() == 1
    assert set(journal.marks()) == {"k_dead", "k_live"}  # young marks stay: writes may be in flight

    monkeypatch.setattr(outbox, "JOURNAL_GRACE_S", 0.0)
    relay.notify()  # the periodic pass (or a restart)
    assert relay.relay_once() == 1  # k_dead: finished by the journal pass
    assert db.kudos.find_one({"_id": "k_dead"})["outbox_pending"] is False
    assert set(journal.marks()) == {"k_dead"}  # k_live had nothing pending: off; k_dead: on the next pass
    relay.notify()
    assert relay.relay_once() == 0 and journal.marks() == {}
    assert len(searches) == 1  # no search after the first
    ids = [Envelope.from_bytes(r.value).id for r in read_topic(settings, settings.topic("kudos"), 3)]
    assert sorted(ids) == sorted([old.id, dead.id, live.id])


def test_a_mark_set_again_after_the_relay_read_it_is_kept(db):
    journal = OutboxJournal(db.kudos)
    first = journal.mark("k1", "k2")
    read = journal.marks()
    assert read == {"k1": first, "k2": first}
    again = journal.mark("k2")  # another writer, between the relay's read and its unmark
    journal.unmark(read)
    assert journal.marks() == {"k2": again}
    journal.unmark({"k2": again})
    assert journal.marks() == {}
    odd = journal.mark("$a.b%2E")  # not a field name as it is: escaped, and read back as it was
    assert journal.marks() == {"$a.b%2E": odd}


class FlakyProducer:
    """Kafka away for the first ``failures`` publishes (what a broker restart looks like)."""

    def __init__(self, real, failures: int = 1):
        self.real, self.failures = real, failures

    def publish_all(self, envelopes):
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError("Failed to update metadata after 10.0 secs.")
        return self.real.publish_all(envelopes)


def test_a_notice_survives_a_failed_publish_and_goes_out_on_the_next_pass(settings, producer, db, clock):
    flaky = FlakyProducer(producer, failures=0)
    relay = OutboxRelay(flaky, [db.kudos], scan_s=3600)
    assert relay.relay_once() == 0  # the start-up search; from now on only a notice brings a document out
    flaky.failures = 1
    event = kudos_given("k6", clock, 1)
    db.kudos.insert_one(with_outbox({"_id": "k6"}, [event]))
    relay.notify(db.kudos, "k6")
    with pytest.raises(KafkaTimeoutError):
        relay.relay_once()  # Kafka away: nothing published, the notice kept
    assert relay.relay_once() == 1
    assert [Envelope.from_bytes(r.value).id for r in read_topic(settings, settings.topic("kudos"), 1)] == [event.id]
    assert db.kudos.find_one({"_id": "k6"})["outbox_pending"] is False


def test_relay_thread_publishes_what_a_mongoengine_document_recorded(settings, producer, db, clock):
    class Thanks(OutboxDocument):
        message = mongoengine.StringField(required=True)
        meta = {"collection": "thanks"}

    doc = Thanks(message="merci", outbox=[kudos_given("k3", clock).to_dict()], outbox_pending=True)
    doc.save()  # state and event: one insert

    relay = OutboxRelay(producer, [Thanks._get_collection()], poll_ms=50)
    relay.start()
    try:
        relay.notify()
        [record] = read_topic(settings, settings.topic("kudos"), 1)
    finally:
        relay.stop()
    assert Envelope.from_bytes(record.value).subject == "k3"
    assert Thanks.objects.get(id=doc.id).outbox == []


def test_unique_index_rejects_a_duplicate_on_the_wire_server(db):
    class Badge(mongoengine.Document):
        person_id = mongoengine.StringField(required=True)
        badge = mongoengine.StringField(required=True)
        meta = {"collection": "badges", "indexes": [{"fields": ["person_id", "badge"], "unique": True}]}

    Badge.ensure_indexes()
    Badge(person_id="ana", badge="clutch").save()
    with pytest.raises(mongoengine.NotUniqueError):
        Badge(person_id="ana", badge="clutch").save()
    Badge(person_id="ana", badge="grateful").save()
    assert Badge.objects(person_id="ana").count() == 2

    assert insert_once(db.ledger, {"_id": "evt-1:rule:ana", "points": 5}) is True
    assert insert_once(db.ledger, {"_id": "evt-1:rule:ana", "points": 5}) is False
    assert db.ledger.count_documents({}) == 1


def test_concurrent_updates_of_one_document_lose_nothing(settings):
    """FerretDB 1.24 alone loses concurrent read-modify-writes; our front serializes writes."""
    import threading

    from shared.db import mongo_client

    clients = [mongo_client(settings) for _ in range(3)]
    try:
        coll = clients[0][settings.database("race")]["counters"]
        coll.insert_one({"_id": "c", "a": 0, "b": 0, "log": []})

        def bump(client, field):
            mine = client[settings.database("race")]["counters"]
            for i in range(150):
                mine.update_one({"_id": "c"}, {"$inc": {field: 1}, "$push": {"log": f"{field}{i}"}})

        threads = [threading.Thread(target=bump, args=(clients[1], "a")), threading.Thread(target=bump, args=(clients[2], "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        doc = coll.find_one({"_id": "c"})
        assert (doc["a"], doc["b"], len(doc["log"])) == (150, 150, 300)
    finally:
        for c in clients:
            c.close()


def test_one_update_command_with_hundreds_of_statements_completes(settings):
    """FerretDB 1.24 kept every statement's cursor open until the whole ``update`` command ended.

    Each open cursor holds one of its 100 SQLite connections, so the 100th statement waited for a
    connection forever and, behind our front's write lock, so did every other writer: the stall
    of the points pipeline under load. deploy/local/ferretdb/patches.json closes each cursor
    when its statement is done.
    """
    from pymongo import UpdateOne

    from shared.db import mongo_client

    client = mongo_client(settings)
    try:
        coll = client[settings.database("bulk")]["totals"]
        coll.insert_many([{"_id": f"p{i}", "points": 0} for i in range(150)])
        ops = [UpdateOne({"_id": f"p{i}"}, {"$inc": {"points": i}}) for i in range(150)]
        ops += [UpdateOne({"_id": f"new{i}"}, {"$inc": {"points": 1}}, upsert=True) for i in range(100)]
        result = coll.bulk_write(ops, ordered=False)
        assert (result.modified_count, result.upserted_count) == (150, 100)
        assert coll.find_one({"_id": "p149"})["points"] == 149
        assert coll.count_documents({}) == 250
        # and the database still takes other writes afterwards
        coll.update_one({"_id": "p0"}, {"$set": {"points": 7}})
        assert coll.find_one({"_id": "p0"})["points"] == 7
    finally:
        client.close()


def _plan(coll, filter_: dict) -> str:
    answer = coll.database.command("explain", {"find": coll.name, "filter": filter_})
    return " ".join(answer["queryPlanner"]["Plan"])


def test_reads_by_id_use_the_index_whatever_else_the_filter_says_and_answer_exactly(settings):
    """Our FerretDB patches push an ``_id`` condition down to SQLite's index even beside other
    conditions or as ``$in``; the rest of the filter still applies to what comes back."""
    from bson import ObjectId

    from shared.db import mongo_client

    client = mongo_client(settings)
    try:
        coll = client[settings.database("pushdown")]["guards"]
        oid = ObjectId()
        coll.insert_many([{"_id": f"g{i}", "n": i, "ids": [f"e{i}"]} for i in range(300)] + [{"_id": oid, "n": 7}, {"_id": 5, "n": 5}])

        assert "USING INDEX" in _plan(coll, {"_id": "g5"})
        assert "USING INDEX" in _plan(coll, {"_id": "g5", "n": {"$lte": 5}})
        assert "USING INDEX" in _plan(coll, {"_id": {"$in": ["g1", "g2", "nope"]}})
        assert "USING INDEX" not in _plan(coll, {"n": 5})  # the control: no _id, a scan

        # the other conditions still decide
        assert coll.find_one({"_id": "g5", "n": {"$lte": 5}})["n"] == 5
        assert coll.find_one({"_id": "g6", "n": {"$lte": 5}}) is None
        assert coll.find_one({"_id": "g6", "ids": {"$ne": "e6"}}) is None
        found = coll.find({"_id": {"$in": ["g1", "g299", "nope", "g1"]}, "n": {"$gt": 1}})
        assert sorted(d["_id"] for d in found) == ["g299"]
        assert sorted(str(d["_id"]) for d in coll.find({"_id": {"$in": ["g3", oid]}})) == sorted(["g3", str(oid)])
        assert [d["n"] for d in coll.find({"_id": {"$in": [5, "g4"]}}).sort("n", 1)] == [4, 5]  # not pushed down, still right
        assert list(coll.find({"_id": {"$in": []}})) == []

        # a conditional update by _id: the guard pattern (applies once, then its filter misses)
        for _ in range(2):
            coll.update_one({"_id": "g10", "ids": {"$ne": "new"}, "n": {"$lte": 10}}, {"$push": {"ids": "new"}, "$inc": {"n": 1}})
        assert coll.find_one({"_id": "g10"}) == {"_id": "g10", "n": 11, "ids": ["e10", "new"]}
        coll.delete_many({"_id": {"$in": ["g0", "g1"]}, "n": 0})
        assert coll.count_documents({}) == 301
    finally:
        client.close()


def test_a_process_can_log_where_its_database_time_goes(settings, caplog):
    """INSIDETRACK_DB_PROFILE_S: each command's time by command and collection, logged as one
    line at most every so often (what says which writes cost a batch on FerretDB)."""
    import logging
    import time

    profiled = settings.model_copy(update={"db_profile_s": 0.001})
    database = connect(profiled, "profile_test", alias="profiled")
    try:
        with caplog.at_level(logging.INFO, logger="shared.db"):
            database["ledger"].insert_many([{"_id": i} for i in range(10)])
            database["boards"].update_one({"_id": "b"}, {"$set": {"v": 1}}, upsert=True)
            # A line goes out with the first command after the interval: make sure it has passed
            # (on a fast machine the find came within 1 ms of the update's line and waited).
            time.sleep(0.01)
            database["boards"].find_one({"_id": "b"})
        lines = [r for r in caplog.records if r.getMessage() == "database time"]
        assert lines and all(r.service == "profile_test" for r in lines)
        seen = {key for r in lines for key in r.top}
        assert {"insert ledger", "update boards", "find boards"} <= seen
        assert all(n >= 1 and t >= 0 for r in lines for n, t in r.top.values())
    finally:
        database.client.drop_database(database.name)
        disconnect("profiled")


def test_ferretdb_tracks_no_objects_for_leak_checks_outside_its_debug_builds(settings, tmp_path):
    """FerretDB 1.24 captured a stack into a pprof profile for every iterator, cursor and
    transaction it made (7 % of its CPU under the points pipeline's writes); our build skips
    that (deploy/local/ferretdb/patches.json). Its own profiles (``FerretDB/...``) stay empty."""
    import re
    import subprocess
    import time

    import requests as http

    from ops.infra import local
    from shared.db import mongo_client
    from tests.integration.service_helpers import free_port

    binary = local.FerretDB(settings).provision()
    port, profiles = free_port(), free_port()
    proc = subprocess.Popen([str(binary), "-listen", f"127.0.0.1:{port}", "-data", str(tmp_path),
                             "-pprof", f"127.0.0.1:{profiles}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = mongo_client(settings.model_copy(update={"mongo_port": port, "mongo_url": None}))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.admin.command("ping")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert time.monotonic() < deadline, "FerretDB did not answer"
                time.sleep(0.2)
        coll = client["leaks"]["docs"]
        coll.insert_many([{"_id": i, "n": i} for i in range(50)])
        coll.update_one({"_id": 3}, {"$inc": {"n": 1}})
        assert len(list(coll.find({"_id": {"$in": [1, 2, 3]}}))) == 3
        index = http.get(f"http://127.0.0.1:{profiles}/debug/pprof/", timeout=10).text
        rows = {name: int(count) for count, name in re.findall(r"<td>(\d+)</td><td><a href='([^'?]+)", index)}
        assert rows.get("goroutine", 0) > 0  # the page is read right (FerretDB's unpatched build: backends.backendContract 1, ...)
        tracked = {name: count for name, count in rows.items() if name.startswith("FerretDB/") and count}
        assert not tracked
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_inserts_larger_than_one_ferretdb_commit_are_exact_with_documents_already_there(settings):
    """Inserts go in commands of INSERT_CHUNK, which our FerretDB commits 500 documents at a time
    (deploy/local/ferretdb/patches.json). A command holding documents already stored (a replay:
    ledger entries, guards, imported kudos) stores exactly the others, once, and says which were
    refused; the stored ones are left as they were."""
    from shared.db import INSERT_CHUNK, insert_many_once, insert_new, mongo_client

    client = mongo_client(settings)
    try:
        coll = client[settings.database("bulk")]["ledger_like"]
        coll.drop()
        there = [0, 499, 500, 777, 1_199]  # first, either side of a 500-document commit, last
        coll.insert_many([{"_id": f"e{i}", "n": -1} for i in there])
        docs = [{"_id": f"e{i}", "n": i} for i in range(1_200)]
        stored = insert_many_once(coll, docs)
        assert len(docs) > 2 * INSERT_CHUNK
        assert sorted(d["_id"] for d in stored) == sorted(f"e{i}" for i in range(1_200) if i not in there)
        assert coll.count_documents({}) == 1_200
        assert [coll.find_one({"_id": f"e{i}"})["n"] for i in there] == [-1] * len(there)
        assert coll.find_one({"_id": "e501"})["n"] == 501
        assert insert_many_once(coll, docs) == []  # all there: nothing stored twice

        # insert_new sends every command of INSERT_CHUNK (here three), whatever one refused, and
        # names the refused ids of all of them.
        coll.insert_one({"_id": "e2100", "n": -1})  # in the second command below
        refused = insert_new(coll, [{"_id": f"e{i}", "n": 0} for i in range(1_195, 1_195 + 2 * INSERT_CHUNK + 10)])
        assert refused == {f"e{i}" for i in range(1_195, 1_200)} | {"e2100"}
        assert coll.count_documents({}) == 1_195 + 2 * INSERT_CHUNK + 10
        assert coll.find_one({"_id": "e2100"})["n"] == -1 and coll.find_one({"_id": "e2204"})["n"] == 0
    finally:
        client.close()
