"""The requests service's read models on the real FerretDB + Kafka: lists through the API (order,
cursors, totals, filters, a request moving between lists), timers fired once from their buckets,
no scan per read or per sweep, a restart, a crash left mid-projection, the upgrade of an old
``var/`` and a bulk import whose events are all published."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo.collection import Collection

from services.requests import readmodels
from services.requests.app import build_runtime
from services.requests.importer import import_in_process, import_through_service
from shared.db import disconnect
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.service_helpers import Client, serving
from tests.integration.test_requests_service import START, api, clock, events_of, runtime, submit_body  # noqa: F401

pytestmark = pytest.mark.integration
WATCHED = {"requests", "people", "request_lists", "request_timers", "request_cards"}


@pytest.fixture
def no_scans(monkeypatch):
    """Record every read of the service's collections that is not by _id (a scan on FerretDB)."""
    scans: list[tuple[str, dict]] = []
    real_find, real_count = Collection.find, Collection.count_documents

    def by_id(flt) -> bool:
        return isinstance(flt, dict) and set(flt) - {"version", readmodels.PENDING} <= {"_id"} and "_id" in flt

    def find(self, filter=None, *args, **kwargs):
        if self.name in WATCHED and not by_id(filter) and "outbox_pending" not in (filter or {}):
            scans.append((self.name, filter))
        return real_find(self, filter, *args, **kwargs)

    def count_documents(self, filter, *args, **kwargs):
        if self.name in WATCHED:
            scans.append((self.name, filter))
        return real_count(self, filter, *args, **kwargs)

    monkeypatch.setattr(Collection, "find", find)
    monkeypatch.setattr(Collection, "count_documents", count_documents)
    return scans


def _titles(page):
    return [r["title"] for r in page["items"]]


def _walk(client, first, **params):
    items, after = [], None
    while True:
        page = client.get("/requests", params={**params, "first": first, **({"after": after} if after else {})}).json()
        items += page["items"]
        if not page["page_info"]["has_next_page"]:
            return items, page["total_count"]
        after = page["page_info"]["end_cursor"]


def test_lists_order_filter_count_and_follow_status_changes_without_scanning(api, clock, no_scans):
    rita, pia, paul = (api.as_(api.people[n]) for n in ("rita", "pia", "paul"))
    api.get("/people")  # the directory copy is loaded once here (one read of the collection) ...
    no_scans.clear()  # ... from now on nothing may scan
    ids = {}
    for days, priority in ((5, "normal"), (2, "high"), (9, "normal"), (3, "high"), (40, "normal"), (70, "high")):
        body = submit_body(needed_by=(START + timedelta(days=days)).isoformat(), title=f"in {days} days", priority=priority)
        ids[days] = rita.post("/requests", json=body).json()["id"]
        clock.advance(minutes=1)
    rita.post("/requests", json=submit_body(kind="legal_review", title="legal"))

    queue, total = _walk(pia, 2, department="pricing", open="true")
    assert [r["title"] for r in queue] == ["in 2 days", "in 3 days", "in 5 days", "in 9 days", "in 40 days", "in 70 days"]
    assert total == 6
    mine, total = _walk(rita, 3, requester_id=api.people["rita"])
    assert [r["title"] for r in mine][:2] == ["legal", "in 70 days"] and total == 7  # newest first
    high = pia.get("/requests", params={"department": "pricing", "open": "true", "priority": "high"}).json()
    assert _titles(high) == ["in 2 days", "in 3 days", "in 70 days"] and high["total_count"] == 3
    everything, total = _walk(api, 4)
    assert total == 7 and len({r["id"] for r in everything}) == 7
    assert api.get("/requests", params={"status": "submitted"}).json()["total_count"] == 7

    # The request moves: acknowledged and assigned to Paul, then delivered (leaves the open queue).
    rid = ids[3]
    pia.post(f"/requests/{rid}/acknowledge")
    pia.post(f"/requests/{rid}/assign", json={"assignee_ids": [api.people["paul"]]})
    assert _titles(paul.get("/requests", params={"assignee_id": api.people["paul"]}).json()) == ["in 3 days"]
    assert pia.get("/requests", params={"assignee_id": api.people["pia"]}).json()["total_count"] == 0
    acked = pia.get("/requests", params={"department": "pricing", "status": "acknowledged"}).json()
    assert _titles(acked) == ["in 3 days"] and acked["total_count"] == 1
    assert pia.get("/requests", params={"department": "pricing", "status": "submitted"}).json()["total_count"] == 5
    paul.post(f"/requests/{rid}/start")
    paul.post(f"/requests/{rid}/deliver", json={"note": "done"})
    queue, total = _walk(pia, 20, department="pricing", open="true")
    assert "in 3 days" not in [r["title"] for r in queue] and total == 5
    assert _titles(pia.get("/requests", params={"department": "pricing", "status": "delivered"}).json()) == ["in 3 days"]
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 6  # all statuses
    assert pia.get("/requests", params={"department": "pricing", "status": "acknowledged"}).json()["total_count"] == 0
    delivered_mine = rita.get("/requests", params={"requester_id": api.people["rita"], "status": "delivered"}).json()
    assert _titles(delivered_mine) == ["in 3 days"] and delivered_mine["total_count"] == 1
    assert rita.get("/requests", params={"requester_id": api.people["rita"], "open": "true"}).json()["total_count"] == 6
    assert api.get("/requests", params={"open": "true"}).json()["total_count"] == 6

    # People: search (name or email, any case), filters, pages, from the in-memory copy.
    found = api.get("/people", params={"search": "PRIC", "department": "pricing"}).json()
    assert [p["name"] for p in found["items"]] == ["Paul Pricing", "Pía Pricing"] and found["total_count"] == 2
    assert [p["name"] for p in api.get("/people", params={"search": "LEA@EX"}).json()["items"]] == ["Léa Legal"]
    assert api.get("/people", params={"role": "manager"}).json()["total_count"] == 1
    first = api.get("/people", params={"first": 3}).json()
    second = api.get("/people", params={"first": 3, "after": first["page_info"]["end_cursor"]}).json()
    assert first["total_count"] == second["total_count"] == 7
    names = [p["name"] for p in first["items"] + second["items"]]
    assert names == sorted(names, key=str.lower) and len(set(names)) == 6
    assert no_scans == []


def test_a_second_instance_sees_directory_changes_at_once(api, runtime, clock):
    other = build_runtime(runtime.settings, clock=clock)
    try:
        assert other.service.repo.directory.page()["total_count"] == 7
        api.post("/people", json={"email": "new@example.com", "name": "Nora New", "role": "rep", "department": "sales"})
        found = other.service.repo.directory.page(search="nora")
        assert [p.name for p in found["items"]] == ["Nora New"]
        assert other.service.repo.person_by_email("NEW@example.com").name == "Nora New"
    finally:
        other.producer.close()


def test_sweeper_fires_each_timer_once_from_its_buckets_and_idles_on_two_reads(api, settings, runtime, clock, no_scans):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    rid = rita.post("/requests", json=submit_body(needed_by=(START + timedelta(hours=5)).isoformat())).json()["id"]
    other_id = rita.post("/requests", json=submit_body(needed_by=(START + timedelta(days=30)).isoformat())).json()["id"]
    pia.post(f"/requests/{rid}/acknowledge")
    pia.post(f"/requests/{rid}/request-info", json={"question": "Which currency?"})
    no_scans.clear()
    service = runtime.service
    assert service.sweep() == 0  # nothing due yet

    clock.advance(days=1)
    other = build_runtime(runtime.settings, clock=clock)  # a second instance (its start searches once)
    no_scans.clear()
    try:
        fired = [other.service.sweep(), service.sweep(), other.service.sweep()]
        assert sum(fired) == 2  # overdue + info_unanswered, once
        clock.advance(days=7)
        assert service.sweep() + other.service.sweep() == 2  # update_due of both requests, once each
        assert service.sweep() == other.service.sweep() == 0
    finally:
        other.producer.close()
    events = events_of(settings, 8)
    timers = {e.id: (e.subject, e.type) for e, d in events if e.type in ("request.overdue", "request.info_unanswered", "request.update_due")}
    assert sorted(timers.values()) == sorted([(rid, "request.overdue"), (rid, "request.info_unanswered"),
                                              (rid, "request.update_due"), (other_id, "request.update_due")])

    # Idle: a tick reads the cursor and two hour buckets by _id, whatever the history.
    reads = []
    real = Collection.find

    def counting(self, filter=None, *a, **k):
        if self.name in WATCHED:
            reads.append((self.name, filter))
        return real(self, filter, *a, **k)

    Collection.find = counting
    try:
        assert service.sweep() == 0
    finally:
        Collection.find = real
    assert [name for name, _ in reads] == ["request_timers", "request_timers"]
    assert len(reads[1][1]["_id"]["$in"]) == 2
    assert no_scans == []


def test_restart_keeps_lists_and_timers(api, runtime, clock):
    rita = api.as_(api.people["rita"])
    rid = rita.post("/requests", json=submit_body(needed_by=(START + timedelta(hours=5)).isoformat())).json()["id"]
    runtime.stop()
    disconnect()
    again = build_runtime(runtime.settings, clock=clock)
    try:
        with serving(again.app) as url:
            client = Client(url, runtime.settings.internal_token, api.people["pia"])
            page = client.get("/requests", params={"department": "pricing", "open": "true"}).json()
            assert [r["id"] for r in page["items"]] == [rid] and page["total_count"] == 1
        clock.advance(days=1)
        assert again.service.sweep() == 1  # overdue
        assert again.service.sweep() == 0
    finally:
        again.producer.close()


def test_a_projection_a_crash_interrupted_is_finished_at_start(api, runtime, clock):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    rid = rita.post("/requests", json=submit_body()).json()["id"]
    # The state write of "acknowledge" happened (marked first, as every writer does), the
    # projection did not (the process died).
    nb = runtime.service.repo.get(rid).needed_by
    runtime.service.repo.requests_journal.mark(rid)
    runtime.service.repo.requests.update_one({"_id": rid}, {"$set": {
        "status": "acknowledged", "assignee_ids": [api.people["pia"]], "version": 2, readmodels.PENDING: True,
        readmodels.UNLIST: readmodels.unlist_value({"st:pricing:submitted": nb, "allst:submitted": nb})}})
    assert pia.get("/requests", params={"department": "pricing", "status": "submitted"}).json()["total_count"] == 1
    again = build_runtime(runtime.settings, clock=clock)  # start: recover()
    try:
        lists = again.service.repo.read_models.feeds
        assert lists.count("st:pricing:submitted") == 0 and lists.page("st:pricing:acknowledged")["ids"] == [rid]
        assert lists.page(f"as:{api.people['pia']}")["ids"] == [rid]
        assert lists.entries(f"by:{api.people['rita']}")[0]["d"]["s"] == "acknowledged"
        assert lists.page("open:pricing")["ids"] == [rid]
        assert again.service.repo.requests.find_one({"_id": rid})[readmodels.PENDING] is False
    finally:
        again.producer.close()


def test_an_old_var_is_upgraded_once_on_start(api, runtime, settings, clock):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    soon = rita.post("/requests", json=submit_body(needed_by=(START + timedelta(hours=5)).isoformat(), title="soon")).json()["id"]
    clock.advance(minutes=1)
    later = rita.post("/requests", json=submit_body(title="later")).json()["id"]
    pia.post(f"/requests/{later}/acknowledge")
    repo = runtime.service.repo
    # What the old code left: documents without read models (no lists, no buckets, no version).
    repo.lists.drop()
    repo.timers.drop()
    repo.cards.drop()
    repo.counters.delete_one({"_id": readmodels.VERSION_ID})
    repo.requests.update_many({}, {"$unset": {readmodels.PENDING: "", readmodels.UNLIST: ""}})
    # ... and the indexes its queries used (every read is by _id now: they cost writes only).
    repo.requests.create_index([("department", 1), ("needed_by", 1), ("_id", 1)])
    repo.requests.create_index("overdue_at")
    clock.advance(days=1)  # "soon" became overdue while the old code was stopped

    upgraded = build_runtime(runtime.settings, clock=clock)
    try:
        kept = sorted(info["key"][0][0] for info in repo.requests.index_information().values())
        assert kept == ["_id", "number", "outbox_pending"]
        models = upgraded.service.repo.read_models
        assert models.version() == readmodels.READ_MODELS_VERSION
        assert models.ensure_built(clock.now()) is False  # once
        with serving(upgraded.app) as url:
            client = Client(url, settings.internal_token, api.people["pia"])
            queue = client.get("/requests", params={"department": "pricing", "open": "true"}).json()
            assert _titles(queue) == ["soon", "later"] and queue["total_count"] == 2
            acked = client.get("/requests", params={"department": "pricing", "status": "acknowledged"}).json()
            assert _titles(acked) == ["later"]
            assert client.get("/requests", params={"assignee_id": api.people["pia"]}).json()["total_count"] == 1
            mine = client.get("/requests", params={"requester_id": api.people["rita"]}).json()
            assert _titles(mine) == ["later", "soon"]
        models._build(clock.now(), fresh=False)  # the path of a build whose lock timed out: adds nothing twice
        assert models.feeds.count("open:pricing") == 2 and models.feeds.count(f"by:{api.people['rita']}") == 2
        assert upgraded.service.sweep() == 1  # the overdue timer from before the upgrade, once
        assert upgraded.service.sweep() == 0
        assert repo.requests.find_one({"_id": soon})["overdue_at"] is None
    finally:
        upgraded.producer.close()


def test_a_var_from_before_the_cards_gets_them_on_start_and_lists_show_the_current_state(api, runtime, settings, clock):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    first = rita.post("/requests", json=submit_body(title="first")).json()["id"]
    clock.advance(minutes=1)
    second = rita.post("/requests", json=submit_body(title="second")).json()["id"]
    pia.post(f"/requests/{first}/acknowledge")
    repo = runtime.service.repo
    repo.cards.drop()  # read models of version 1: lists and timers, no cards
    repo.counters.update_one({"_id": readmodels.VERSION_ID}, {"$set": {"version": 1}})

    upgraded = build_runtime(runtime.settings, clock=clock)
    try:
        assert upgraded.service.repo.read_models.version() == readmodels.READ_MODELS_VERSION
        assert {c["_id"]: c["v"] for c in repo.cards.find({})} == {first: 2, second: 1}
        with serving(upgraded.app) as url:
            client = Client(url, settings.internal_token, api.people["rita"])
            mine = client.get("/requests", params={"requester_id": api.people["rita"]}).json()
            assert [(r["title"], r["status"], r["assignee_ids"]) for r in mine["items"]] == [
                ("second", "submitted", []), ("first", "acknowledged", [api.people["pia"]])]
            # Each item is what the request itself says, but for its timeline.
            one = client.get(f"/requests/{first}").json()
            assert one.pop("timeline") and mine["items"][1] == one
    finally:
        upgraded.producer.close()


def test_a_card_follows_every_command_and_an_older_version_never_overwrites_it(api, runtime, no_scans):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    rid = rita.post("/requests", json=submit_body(title="card")).json()["id"]
    stale = runtime.service.repo.get(rid)  # version 1, submitted
    pia.post(f"/requests/{rid}/acknowledge")
    pia.post(f"/requests/{rid}/start")
    queue = pia.get("/requests", params={"department": "pricing"}).json()
    assert [(r["id"], r["status"], r["version"]) for r in queue["items"]] == [(rid, "in_progress", 3)]
    runtime.service.repo.read_models.write_card(stale)  # a projection of version 1 landing late
    runtime.service.repo.read_models.write_cards([stale])
    again = pia.get("/requests", params={"department": "pricing"}).json()
    assert again["items"] == queue["items"]
    assert no_scans == []


def _people_csv(n: int, prefix: str) -> str:
    rows = ["email,name,role,department,title,manager_email,active", f"{prefix}boss@example.com,{prefix} Boss,manager,sales,,,"]
    rows += [f"{prefix}{i}@example.com,{prefix} Person {i:04d},rep,sales,AE,{prefix}boss@example.com,true" for i in range(n)]
    rows.append("broken-email,Nobody,rep,sales,,,")
    return "\n".join(rows) + "\n"


def test_a_big_import_through_the_service_is_published_at_once(api, runtime, settings):
    admin, report = import_through_service(api.base_url, settings.internal_token, _people_csv(1500, "imp"))
    assert report["created"] == 1501 and [e["line"] for e in report["errors"]] == [1503]
    assert admin["email"] == "admin@example.com"
    people = runtime.service.repo.people
    # "At once" is the service's relay, told by the import, not its hourly safety-net search; the
    # bound only has to tell those apart (a 2-core machine at load 30 took over a minute).
    assert wait_until(lambda: people.count_documents({"outbox_pending": True}) == 0, timeout=150)
    published = {r.key for r in read_topic(settings, settings.topic("people"), 7 + 1501, timeout=60)}
    assert len(published) >= 7 + 1501
    boss = runtime.service.repo.person_by_email("impboss@example.com")
    page = api.get("/people", params={"search": "imp person 00", "first": 5}).json()
    assert page["total_count"] == 100 and all(p["manager_id"] == boss.id for p in page["items"])

    # Again: nothing new, nothing changed (every row already known).
    _, again = import_through_service(api.base_url, settings.internal_token, _people_csv(1500, "imp"))
    assert again["created"] == 0 and again["updated"] == 1501


def test_an_import_without_a_running_service_publishes_before_returning(settings):
    from services.requests.config import RequestsSettings

    rs = RequestsSettings(**settings.model_dump())
    admin, report = import_in_process(rs, _people_csv(50, "cli"))
    disconnect()
    assert report["created"] == 51 and admin["email"] == rs.admin_email
    published = read_topic(settings, settings.topic("people"), 52, timeout=30)
    assert len({r.key for r in published}) == 52  # the admin and everyone, before the command returned


def test_the_relays_safety_net_search_finishes_what_a_dead_instance_left(api, runtime):
    rita = api.as_(api.people["rita"])
    rid = rita.post("/requests", json=submit_body()).json()["id"]
    nb = runtime.service.repo.get(rid).needed_by
    requests = runtime.service.repo.requests
    assert wait_until(lambda: requests.find_one({"_id": rid})["outbox_pending"] is False)  # submitted published
    # Another instance stored "cancelled" and died before projecting and before its relay published.
    runtime.service.repo.requests_journal.mark(rid)
    runtime.service.repo.requests.update_one({"_id": rid}, {"$set": {
        "status": "cancelled", "version": 2, readmodels.PENDING: True, "outbox_pending": True,
        readmodels.UNLIST: readmodels.unlist_value({"st:pricing:submitted": nb, "allst:submitted": nb,
                                                    "open:pricing": nb, "allopen": nb})}})
    runtime.relay.notify()  # as its periodic search does
    lists = runtime.service.repo.read_models.feeds
    assert wait_until(lambda: lists.count("open:pricing") == 0, timeout=20)
    assert lists.page("st:pricing:cancelled")["ids"] == [rid] and lists.count("allst:submitted") == 0


def test_the_import_people_command_goes_through_the_running_service(api, runtime, settings, monkeypatch, tmp_path, capsys):
    from ops.cli import main
    from shared.serve import HttpServer
    from tests.integration.service_helpers import free_port

    port = free_port()
    server = HttpServer(runtime.app, port, threads=2)
    server.start()
    try:
        monkeypatch.setenv("INSIDETRACK_REQUESTS_PORT", str(port))
        monkeypatch.setenv("INSIDETRACK_INTERNAL_TOKEN", settings.internal_token)
        path = tmp_path / "people.csv"
        path.write_text(_people_csv(30, "cmd"), encoding="utf-8")
        assert main(["import-people", str(path)]) == 1  # one bad row
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert "31 created" in out and "line 33:" in out and "admin@example.com" in out
    people = runtime.service.repo.people
    assert wait_until(lambda: people.count_documents({"outbox_pending": True}) == 0)  # published by the service
    assert runtime.service.repo.person_by_email("cmd7@example.com") is not None


def test_a_timer_written_behind_the_sweepers_cursor_still_fires_once(api, runtime, clock):
    """A writer on a clock in the past (loading history, a lagging instance) files a timer
    already due: it goes in the cursor's bucket, not in one the sweeper has passed."""
    from dataclasses import replace

    from shared.clock import ManualClock

    runtime.service.sweep()  # the cursor is at now
    past = replace(runtime.service, clock=ManualClock(START - timedelta(days=30)))
    rep = api.people["rita"]
    rid = past.submit(rep, submit_body(needed_by=START - timedelta(days=29))).id
    fired = [runtime.service.sweep() for _ in range(8)]
    assert fired[0] == 2 and fired[-1] == 0  # overdue and the first update_due, then one late update_due a tick
    request = runtime.service.repo.get(rid)
    timers = [(e.type, e.data["occurrence"]) for e in request.timeline if e.type in ("overdue", "update_due")]
    assert timers.count(("overdue", 1)) == 1 and len(set(timers)) == len(timers) == sum(fired)
    assert [o for t, o in timers if t == "update_due"] == list(range(1, request.update_due_count + 1))
    assert request.update_due_at > START
