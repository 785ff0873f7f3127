"""Request history import (``POST /requests/import``, ``insidetrack import-requests``) on the
real stack: lists, timeline and events at the history's own times, re-import, bad rows by line,
open requests and their timers, a crash halfway."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.requests import readmodels
from services.requests.readmodels import RequestReadModels
from shared.events import decode
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.test_requests_read_models import no_scans  # noqa: F401
from tests.integration.test_requests_service import START, api, clock, events_of, runtime  # noqa: F401

pytestmark = pytest.mark.integration

HEADER = ("submitted_at,requester_email,kind,title,details,customer,needed_by,commitment,priority,rush_reason,"
          "assignee_emails,acknowledged_at,started_at,info_requested_at,info_question,info_answered_at,info_answer,"
          "deal_update_at,deal_update,delivered_at,closed_at,outcome,cancelled_at,cancel_reason\n")
DETAILS = '"Three-year renewal, 500 seats, volume tiers and a ramp in year one; the CFO wants two options."'
# START is Monday 23 November 2026, 09:00 UTC (10:00 in Amsterdam).
HISTORY = HEADER + "\n".join([
    # 2: a whole life with an info loop and a deal update (Rita, worked by Pía)
    f"2026-03-02T09:30:00+01:00,rita@example.com,pricing,Acme renewal,{DETAILS},Acme,2026-03-06T17:00:00+01:00,"
    "Proposal Friday,normal,,pia@example.com,2026-03-02T10:00:00+01:00,2026-03-02T11:00:00+01:00,"
    "2026-03-02T12:00:00+01:00,EUR?,2026-03-02T15:00:00+01:00,EUR,2026-03-03T09:00:00+01:00,CFO call went well,"
    "2026-03-04T15:00:00+01:00,2026-03-05T10:00:00+01:00,won,,",
    # 3: cancelled after it was acknowledged
    f"2026-04-01T09:00:00+02:00,rita@example.com,pricing,Initech quote,{DETAILS},Initech,2026-04-08T17:00:00+02:00,"
    ",rush,The budget closes,paul@example.com,2026-04-01T09:30:00+02:00,,,,,,,,,,,2026-04-01T11:00:00+02:00,Budget frozen",
    # 4: delivered by Paul, not closed yet (Sam)
    f"2026-05-04T09:00:00+02:00,sam@example.com,pricing,Umbrella pilot,{DETAILS},Umbrella,2026-05-08T17:00:00+02:00,"
    "Pilot offer,high,,paul@example.com,2026-05-04T10:00:00+02:00,2026-05-04T11:00:00+02:00,,,,,,,"
    "2026-05-07T12:00:00+02:00,,,,",
    # 5: still open: acknowledged on Friday, needed by Thursday
    f"2026-11-20T09:00:00+01:00,sam@example.com,pricing,Hooli quote,{DETAILS},Hooli,2026-11-26T17:00:00+01:00,"
    "Quote Thursday,normal,,pia@example.com,2026-11-20T10:00:00+01:00,,,,,,,,,,,,",
    # 6: started before it was acknowledged
    f"2026-06-01T09:00:00+02:00,rita@example.com,pricing,Out of order,{DETAILS},Acme,2026-06-05T17:00:00+02:00,"
    ",normal,,pia@example.com,2026-06-01T12:00:00+02:00,2026-06-01T11:00:00+02:00,,,,,,,,,,,",
    # 7: nobody we know
    f"2026-06-01T09:00:00+02:00,ghost@example.com,pricing,Who?,{DETAILS},Acme,2026-06-05T17:00:00+02:00,"
    ",normal,,,,,,,,,,,,,,,",
]) + "\n"


def _import(api, text=HISTORY, **params):
    return api.as_(None).post("/requests/import", data=text.encode(), params={"actor_email": "admin@example.com", **params},
                              headers={"Content-Type": "text/csv"})


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def test_history_lands_on_the_lists_with_its_own_times_and_is_published(api, runtime, settings, no_scans):
    api.get("/people")  # the directory copy, loaded once (one read of people) before we count scans
    refused = api.as_(api.people["rita"]).post("/requests/import", data=HISTORY.encode(), headers={"Content-Type": "text/csv"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_only"

    report = _import(api, line_offset=0).json()
    assert [(e["line"], e["field"], e["code"]) for e in report["errors"]] == [
        (6, "started_at", "out_of_order"), (7, "requester_email", "unknown_requester")]
    assert (report["imported"], report["already_imported"], report["rejected"]) == (4, 0, 2)
    assert no_scans == []  # ids by $in, bulk writes by _id: no read of the collection

    rita, sam, pia = (api.as_(api.people[n]) for n in ("rita", "sam", "pia"))
    mine = rita.get("/requests", params={"requester_id": api.people["rita"]}).json()
    assert [r["title"] for r in mine["items"]] == ["Initech quote", "Acme renewal"] and mine["total_count"] == 2
    assert sam.get("/requests", params={"requester_id": api.people["sam"]}).json()["total_count"] == 2
    queue = pia.get("/requests", params={"department": "pricing"}).json()
    assert queue["total_count"] == 4
    assert [r["number"] for r in sorted(queue["items"], key=lambda r: r["submitted_at"])] == [1001, 1002, 1003, 1004]
    for status, title in (("closed", "Acme renewal"), ("cancelled", "Initech quote"), ("delivered", "Umbrella pilot"),
                          ("acknowledged", "Hooli quote")):
        page = pia.get("/requests", params={"department": "pricing", "status": status}).json()
        assert ([r["title"] for r in page["items"]], page["total_count"]) == ([title], 1), status
    open_queue = pia.get("/requests", params={"department": "pricing", "open": "true"}).json()
    assert [r["title"] for r in open_queue["items"]] == ["Hooli quote"] and open_queue["total_count"] == 1
    assert pia.get("/requests", params={"assignee_id": api.people["pia"]}).json()["total_count"] == 2

    # The timeline at the history's times, each step by the person who took it.
    acme = next(r for r in mine["items"] if r["title"] == "Acme renewal")
    full = rita.get(f"/requests/{acme['id']}").json()
    assert [(e["type"], e["actor_id"], _utc(e["at"])) for e in full["timeline"]] == [
        ("submitted", api.people["rita"], datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)),
        ("acknowledged", api.people["pia"], datetime(2026, 3, 2, 9, tzinfo=timezone.utc)),
        ("started", api.people["pia"], datetime(2026, 3, 2, 10, tzinfo=timezone.utc)),
        ("info_requested", api.people["pia"], datetime(2026, 3, 2, 11, tzinfo=timezone.utc)),
        ("info_provided", api.people["rita"], datetime(2026, 3, 2, 14, tzinfo=timezone.utc)),
        ("deal_updated", api.people["rita"], datetime(2026, 3, 3, 8, tzinfo=timezone.utc)),
        ("delivered", api.people["pia"], datetime(2026, 3, 4, 14, tzinfo=timezone.utc)),
        ("closed", api.people["rita"], datetime(2026, 3, 5, 9, tzinfo=timezone.utc))]
    assert full["status"] == "closed" and full["outcome"] == "won" and full["brief_complete"] is True

    # Every event published, each with its own time: the envelope's and the data's.
    stored = [runtime.service.repo.get(r["id"]) for r in queue["items"]]
    expected = sum(len(r.timeline) for r in stored)
    events = events_of(settings, expected)
    assert len(events) == expected == report["events"]
    assert all(envelope.time == data.at for envelope, data in events)
    by_request = {r.id: [(f"request.{e.type}", e.at) for e in r.timeline] for r in stored}
    for rid, steps in by_request.items():
        assert [(e.type, e.time) for e, _ in events if e.subject == rid] == steps
    delivered = {d.request_id: d for e, d in events if e.type == "request.delivered"}
    assert delivered[acme["id"]].on_time is True
    assert wait_until(lambda: runtime.service.repo.requests.count_documents(
        {"$or": [{"outbox_pending": True}, {readmodels.PENDING: True}]}) == 0)

    # The same file again imports nothing new.
    again = _import(api).json()
    assert (again["imported"], again["already_imported"], again["rejected"]) == (0, 4, 2)
    assert runtime.service.repo.requests.count_documents({}) == 4
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 4


def test_an_open_imported_request_is_worked_live_and_its_timers_fire(api, runtime, clock, settings):
    assert _import(api).json()["imported"] == 4
    pia = api.as_(api.people["pia"])
    (hooli,) = pia.get("/requests", params={"department": "pricing", "open": "true"}).json()["items"]
    assert hooli["timers"]["overdue_at"] == "2026-11-26T16:00:00+00:00"
    assert runtime.service.sweep() == 0  # nothing due yet (START is Monday)

    clock.set(datetime(2026, 11, 27, 10, tzinfo=timezone.utc))  # Friday: past needed-by and 5 business days
    assert runtime.service.sweep() == 2 and runtime.service.sweep() == 0
    timers = [e for e in runtime.service.repo.get(hooli["id"]).timeline if e.actor_id == "system"]
    assert [(e.type, e.data["occurrence"]) for e in timers] == [("overdue", 1), ("update_due", 1)]

    # Worked on live from where the history left it.
    assert pia.post(f"/requests/{hooli['id']}/start").json()["status"] == "in_progress"
    assert pia.post(f"/requests/{hooli['id']}/deliver").json()["status"] == "delivered"
    assert pia.get("/requests", params={"department": "pricing", "open": "true"}).json()["total_count"] == 0
    assert pia.get("/requests", params={"department": "pricing", "status": "delivered"}).json()["total_count"] == 2
    clock.advance(days=30)
    assert runtime.service.sweep() == 0  # delivered: its timers are off the buckets


def _published_once(settings, repo) -> None:
    """Every event of every stored request is on the topic, each exactly once."""
    expected = sum(len(repo.get(d["_id"]).timeline) for d in repo.requests.find({}, {"_id": 1}))
    events = [decode(r.value) for r in read_topic(settings, settings.topic("requests"), expected + 1, timeout=3)]
    assert len({e.id for e, _ in events}) == len(events) == expected


def test_a_crash_after_storing_is_finished_by_the_relay_and_a_rerun_imports_nothing_twice(api, runtime, settings, monkeypatch):
    def crash(self, requests):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(RequestReadModels, "project_imported", crash)
    assert _import(api).status_code == 500
    monkeypatch.undo()
    repo = runtime.service.repo
    assert repo.requests.count_documents({}) == 4
    assert repo.requests.count_documents({"$or": [{"outbox_pending": True}, {readmodels.PENDING: True}]}) == 0  # written once
    assert repo.imports.count_documents({"outbox_pending": True}) == 1  # their events, not published yet
    assert set(repo.imports_journal.marks()) == {d["_id"] for d in repo.imports.find({}, {"_id": 1})}
    pia = api.as_(api.people["pia"])
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 0  # on no list

    # Running the import again stores nothing new and has the relay finish the rest (the
    # relay's pass at start, or its pass over old marks, does the same).
    again = _import(api).json()
    assert (again["imported"], again["already_imported"]) == (0, 4)
    assert wait_until(lambda: repo.imports.count_documents({"outbox_pending": True}) == 0)
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 4
    assert pia.get("/requests", params={"department": "pricing", "open": "true"}).json()["total_count"] == 1
    _published_once(settings, repo)


def test_a_crash_before_storing_drops_those_events_once_old_and_a_rerun_imports_them(api, runtime, settings, clock, monkeypatch):
    runtime.relay.stop()  # its passes are run here, one at a time
    repo = runtime.service.repo
    real_insert = type(repo.requests).insert_many

    def crash(collection, documents, *args, **kwargs):
        if collection.name == repo.requests.name:
            raise RuntimeError("the process died here")
        return real_insert(collection, documents, *args, **kwargs)

    monkeypatch.setattr(type(repo.requests), "insert_many", crash)
    assert _import(api).status_code == 500
    monkeypatch.undo()
    assert repo.requests.count_documents({}) == 0
    assert repo.imports.count_documents({"outbox_pending": True}) == 1  # the events of rows never stored

    # Young: maybe an import still writing (another process): the relay leaves it alone.
    runtime.relay.notify()
    runtime.relay.relay_once()
    assert repo.imports.count_documents({"outbox_pending": True}) == 1
    # Old: its rows were never stored, so none of its events is published.
    clock.advance(minutes=11)
    runtime.relay.notify()
    runtime.relay.relay_once()
    assert repo.imports.count_documents({"outbox_pending": True}) == 0
    assert read_topic(settings, settings.topic("requests"), 1, timeout=2) == []

    # The same file again: stored, listed and published, each event once.
    assert _import(api).json()["imported"] == 4
    pia = api.as_(api.people["pia"])
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 4
    _published_once(settings, repo)


def test_kafka_away_or_a_live_command_racing_the_import_leave_the_rest_to_the_relay(api, runtime, settings, monkeypatch):
    """The import publishes its events itself. Kafka refusing: the relay publishes them from the
    import's event documents. A live command landing before the import's lists are written: the
    import projects the newer version (it reads the outbox journal to know which)."""
    def kafka_away(events):
        raise ConnectionError("no broker")

    real_lists = RequestReadModels.project_imported
    raced: list[str] = []

    def lists_then_a_live_command(self, requests):
        hooli = next(r for r in requests if r.title.startswith("Hooli"))
        if not raced:  # the first import: the command after the import's lists
            real_lists(self, requests)
        runtime.service.start(api.people["pia"], hooli.id)  # acknowledged -> in_progress, version + 1
        if raced:  # the second: before them (its projection first, then the import's stale one)
            real_lists(self, requests)
        raced.append(hooli.id)

    monkeypatch.setattr(runtime.service, "publish", kafka_away)
    monkeypatch.setattr(RequestReadModels, "project_imported", lists_then_a_live_command)
    report = _import(api).json()
    assert report["imported"] == 4 and raced
    repo = runtime.service.repo
    assert wait_until(lambda: repo.requests.count_documents(
        {"$or": [{"outbox_pending": True}, {readmodels.PENDING: True}]}) == 0)
    assert wait_until(lambda: repo.imports.count_documents({"outbox_pending": True}) == 0)  # the relay published
    expected = sum(len(repo.get(d["_id"]).timeline) for d in repo.requests.find({}, {"_id": 1}))
    events = events_of(settings, expected)
    assert len({e.id for e, _ in events}) == expected
    pia = api.as_(api.people["pia"])
    for status, count in (("acknowledged", 0), ("in_progress", 1), ("closed", 1)):
        page = pia.get("/requests", params={"department": "pricing", "status": status}).json()
        assert page["total_count"] == count == len(page["items"]), status
    assert pia.get("/requests", params={"department": "pricing", "open": "true"}).json()["total_count"] == 1

    # Kafka back, the race again on a fresh import: the import publishes, the raced one is the relay's.
    monkeypatch.setattr(runtime.service, "publish", runtime.producer.publish_all)
    more = HISTORY.replace("Hooli quote", "Hooli renewal").replace("Acme renewal", "Acme upsell")
    report = _import(api, text=more).json()
    assert report["imported"] == 2 and len(raced) == 2  # the two rows whose content changed
    assert wait_until(lambda: repo.requests.count_documents(
        {"$or": [{"outbox_pending": True}, {readmodels.PENDING: True}]}) == 0)
    for status, count in (("acknowledged", 0), ("in_progress", 2), ("closed", 2)):
        page = pia.get("/requests", params={"department": "pricing", "status": status}).json()
        assert page["total_count"] == count == len(page["items"]), status
        assert {r["status"] for r in page["items"]} <= {status}
    assert pia.get("/requests", params={"department": "pricing"}).json()["total_count"] == 6


def test_the_import_requests_command_sends_the_file_to_the_running_service(api, runtime, tmp_path, capsys):
    from ops.cli import main

    path = tmp_path / "requests.csv"
    path.write_text(HISTORY, encoding="utf-8")
    assert main(["import-requests", str(path), "--url", api.base_url]) == 1  # two rows refused
    out = capsys.readouterr().out
    assert "4 imported, 0 already imported, 2 rejected" in out and "  line 6: " in out and "[out_of_order]" in out
    assert main(["import-requests", str(path), "--url", api.base_url]) == 1
    assert "0 imported, 4 already imported, 2 rejected" in capsys.readouterr().out
    assert wait_until(lambda: runtime.service.repo.requests.count_documents({"outbox_pending": True}) == 0)
