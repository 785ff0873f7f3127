"""The requests service over real HTTP, against FerretDB and Kafka."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from services.requests.app import build_runtime
from services.requests.config import RequestsSettings
from shared.clock import ManualClock
from shared.events import Envelope, decode
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.service_helpers import Client, serving

pytestmark = pytest.mark.integration

# Monday 23 November 2026, 10:00 in Amsterdam.
START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)

PEOPLE_CSV = """email,name,role,department,title,manager_email,active
rita@example.com,Rita Rep,rep,sales,Account Executive,mona@example.com,true
mona@example.com,Mona Manager,manager,sales,Sales Director,,
pia@example.com,Pía Pricing,support,pricing,Pricing Analyst,,true
paul@example.com,Paul Pricing,support,pricing,Pricing Analyst,,true
lea@example.com,Léa Legal,support,legal,Counsel,,
bad-email,Broken,rep,sales,,,
zed@example.com,Zed,wizard,sales,,,
sam@example.com,Sam Sales,rep,sales,,nobody@example.com,
rita@example.com,Rita Again,rep,sales,,,
"""

BRIEF = "Customer wants a 3-year enterprise deal with volume discount tiers and a ramp in year one; " \
        "we need a priced proposal with options."


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def runtime(settings, clock):
    rs = RequestsSettings(**{**settings.model_dump(), "sweep_interval_ms": 50})
    rt = build_runtime(rs, clock=clock)
    rt.start_background(only=[rt.relay])  # tests run the sweeper themselves, on their clock
    yield rt
    rt.stop()
    from shared.db import disconnect

    disconnect()


@contextmanager
def company(runtime, settings, people_csv: str):
    """The service served, ``people_csv`` imported: a client acting as the admin, with the
    import's ``report`` and ``people`` (id by the local part of the email)."""
    admin = runtime.service.ensure_admin("admin@example.com")
    with serving(runtime.app) as url:
        client = Client(url, settings.internal_token, admin.id)
        report = client.post("/people/import", data=people_csv, headers={"Content-Type": "text/csv"}).json()
        client.report = report
        client.people = {p["email"].split("@")[0]: p["id"] for p in client.get("/people?first=100").json()["items"]}
        yield client


@pytest.fixture
def api(runtime, settings):
    with company(runtime, settings, PEOPLE_CSV) as client:
        yield client


def events_of(settings, count, topic="requests"):
    return [decode(r.value) for r in read_topic(settings, settings.topic(topic), count)]


def submit_body(**changes):
    body = {
        "kind": "pricing", "title": "Price the Acme renewal", "details": BRIEF, "customer": "Acme",
        "deal_name": "Acme 2027", "deal_value": 250000, "commitment": "Proposal on the CFO's desk Friday",
        "needed_by": (START + timedelta(days=4)).isoformat(), "priority": "normal",
    }
    body.update(changes)
    return body


def test_csv_import_imports_good_rows_and_reports_bad_ones_by_line(api, settings):
    report = api.report
    assert report["created"] == 6  # rita, mona, pia, paul, lea, sam (sam's manager is reported)
    by_line = {e["line"]: e for e in report["errors"]}
    assert by_line[7]["code"] == "invalid_email" and by_line[8]["code"] == "invalid_role"
    assert by_line[9]["code"] == "unknown_manager" and by_line[10]["code"] == "duplicate_email"
    rita = api.get(f"/people/{api.people['rita']}").json()
    assert rita["manager_id"] == api.people["mona"]  # a manager defined later in the file
    assert api.get(f"/people/{api.people['pia']}").json()["name"] == "Pía Pricing"

    # Search, filter and paginate the directory.
    found = api.get("/people", params={"search": "PRIC", "department": "pricing"}).json()
    assert [p["name"] for p in found["items"]] == ["Paul Pricing", "Pía Pricing"]
    first = api.get("/people", params={"first": 2}).json()
    second = api.get("/people", params={"first": 2, "after": first["page_info"]["end_cursor"]}).json()
    assert first["total_count"] == 7 and len(first["items"]) == 2
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second["items"]}

    # Every person was published to the compacted people topic (admin + 6, each written once:
    # the import resolves managers before writing, so Rita's manager link is in her one event).
    people_events = events_of(settings, 7, topic="people")
    latest = {e.subject: d for e, d in people_events}
    assert latest[api.people["rita"]].manager_id == api.people["mona"]
    assert all(e.type == "person.upserted" for e, _ in people_events)


def test_a_people_file_with_old_mac_line_endings_imports_and_an_unreadable_one_is_refused_whole(api):
    def send(text: str):
        return api.post("/people/import", data=text.encode(), headers={"Content-Type": "text/csv"})

    # Lines ended by a lone \r (an old Mac export): read as lines, not refused as a broken cell.
    report = send("email,name,role,department\rcr.one@example.com,CR One,rep,sales\rcr.two@example.com,CR Two,support,legal\r")
    assert report.status_code == 200 and report.json()["created"] == 2 and report.json()["errors"] == [], report.text
    before = api.get("/people", params={"first": 1}).json()["total_count"]
    import csv
    refused = send("email,name,role,department\nlong@example.com," + "n" * (csv.field_size_limit() + 1) + ",rep,sales\n")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unreadable_csv", refused.text
    assert refused.json()["error"]["message"].startswith("line 2:")
    assert api.get("/people", params={"first": 1}).json()["total_count"] == before  # nothing taken


def test_non_admins_cannot_change_the_directory(api):
    response = api.as_(api.people["rita"]).post("/people", json={"email": "x@example.com", "name": "X", "role": "admin", "department": "sales"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_only"
    assert api.as_(None).get("/people").status_code == 401
    assert api.as_("p_nobody").get("/people").json()["error"]["code"] == "unknown_actor"
    wrong_token = Client(api.base_url, "not-the-token-at-all", api.actor_id).get("/people")
    assert wrong_token.status_code == 401 and wrong_token.json()["error"]["code"] == "bad_internal_token"


def test_a_request_walks_its_whole_life_and_each_step_is_an_event(api, settings, clock):
    rita, pia = api.as_(api.people["rita"]), api.as_(api.people["pia"])
    created = rita.post("/requests", json=submit_body())
    assert created.status_code == 201, created.text
    req = created.json()
    rid = req["id"]
    assert req["department"] == "pricing" and req["status"] == "submitted" and req["brief_complete"] is True
    assert req["number"] >= 1001

    clock.advance(hours=1)
    assert pia.post(f"/requests/{rid}/acknowledge").json()["assignee_ids"] == [api.people["pia"]]
    clock.advance(minutes=30)
    assert pia.post(f"/requests/{rid}/request-info", json={"question": "Which currency?"}).json()["status"] == "waiting_on_rep"
    clock.advance(hours=2)
    assert rita.post(f"/requests/{rid}/provide-info", json={"answer": "EUR"}).json()["status"] == "in_progress"
    rita.post(f"/requests/{rid}/deal-updates", json={"text": "CFO meeting moved to Thursday"})
    pia.post(f"/requests/{rid}/comments", json={"text": "Draft attached"})
    clock.advance(hours=3)
    delivered = pia.post(f"/requests/{rid}/deliver", json={"note": "Proposal v1"}).json()
    assert delivered["status"] == "delivered"
    clock.advance(days=1)
    closed = rita.post(f"/requests/{rid}/close", json={"outcome": "won", "note": "Signed!"}).json()
    assert closed["status"] == "closed" and closed["outcome"] == "won"

    full = rita.get(f"/requests/{rid}").json()
    assert [e["type"] for e in full["timeline"]] == [
        "submitted", "acknowledged", "info_requested", "info_provided", "deal_updated", "commented", "delivered", "closed",
    ]
    assert all(e["actor_id"] for e in full["timeline"])

    events = events_of(settings, 8)
    assert [e.type for e, _ in events] == [
        "request.submitted", "request.acknowledged", "request.info_requested", "request.info_provided",
        "request.deal_updated", "request.commented", "request.delivered", "request.closed",
    ]
    assert {e.subject for e, _ in events} == {rid}  # one key: one partition, in order
    data = {e.type: d for e, d in events}
    assert data["request.acknowledged"].business_hours_since_submitted == 1.0
    assert data["request.info_provided"].business_hours_to_answer == 2.0
    assert data["request.delivered"].on_time is True and data["request.delivered"].rush is False
    assert data["request.closed"].outcome.value == "won"
    assert data["request.closed"].business_hours_since_delivered == 8.0  # a full business day later


def test_bad_input_is_refused_with_a_code_and_leaves_nothing_behind(api, settings, runtime):
    rita = api.as_(api.people["rita"])
    cases = [
        (submit_body(kind="astrology"), "invalid_kind"),
        (submit_body(title="  "), "missing_title"),
        (submit_body(needed_by=(START - timedelta(hours=1)).isoformat()), "needed_by_in_past"),
        (submit_body(needed_by="next friday"), "invalid_needed_by"),
        (submit_body(needed_by="2026-12-01T10:00:00"), "invalid_needed_by"),
        (submit_body(priority="rush"), "rush_needs_reason"),
        (submit_body(deal_value="a lot"), "invalid_deal_value"),
        (submit_body(details="x" * 6000), "details_too_long"),
        (submit_body(customer={"$gt": ""}), "invalid_customer"),
    ]
    for body, code in cases:
        response = rita.post("/requests", json=body)
        assert response.status_code == 400, (code, response.text)
        assert response.json()["error"]["code"] == code
    not_json = rita.post("/requests", data="kind=pricing", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    support_submits = api.as_(api.people["pia"]).post("/requests", json=submit_body())
    assert support_submits.status_code == 403 and support_submits.json()["error"]["code"] == "not_a_rep"

    assert runtime.service.repo.requests.count_documents({}) == 0
    assert read_topic(settings, settings.topic("requests"), 1, timeout=2) == []


def test_a_submit_retried_with_its_idempotency_key_files_one_request(api, runtime, clock):
    rita = api.as_(api.people["rita"])
    body = submit_body(idempotency_key="portal-42")
    first, retry = rita.post("/requests", json=body), rita.post("/requests", json=body)
    assert first.status_code == 201 and retry.status_code == 201
    assert (retry.json()["id"], retry.json()["number"]) == (first.json()["id"], first.json()["number"])
    other = rita.post("/requests", json={**body, "idempotency_key": "portal-43"}).json()
    assert other["id"] != first.json()["id"]
    mine = rita.get("/requests", params={"requester_id": api.people["rita"]}).json()
    assert mine["total_count"] == 2
    # The same key from someone else is their own action.
    mona = api.as_(api.people["mona"]).post("/requests", json=body).json()
    assert mona["id"] != first.json()["id"] and mona["requester_id"] == api.people["mona"]
    # A key names one action: reused a day later, it is refused.
    clock.advance(hours=25)
    reused = rita.post("/requests", json=body)
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "idempotency_key_reused")


def test_illegal_transitions_and_wrong_actors_change_nothing(api, runtime):
    rita, pia, paul, lea = (api.as_(api.people[n]) for n in ("rita", "pia", "paul", "lea"))
    rid = rita.post("/requests", json=submit_body()).json()["id"]
    before = rita.get(f"/requests/{rid}").json()

    refused = [
        (rita.post(f"/requests/{rid}/acknowledge"), 403, "not_in_queue"),
        (lea.post(f"/requests/{rid}/acknowledge"), 404, "request_not_found"),  # not hers to see
        (pia.post(f"/requests/{rid}/deliver"), 403, "not_assignee"),
        (pia.post(f"/requests/{rid}/start"), 409, "illegal_transition"),
        (rita.post(f"/requests/{rid}/close", json={"outcome": "won"}), 409, "illegal_transition"),
        (pia.post(f"/requests/{rid}/cancel", json={"reason": "no"}), 403, "not_allowed_to_cancel"),
        (pia.post(f"/requests/{rid}/deal-updates", json={"text": "hi"}), 403, "not_requester"),
        (pia.post(f"/requests/nope/acknowledge"), 404, "request_not_found"),
    ]
    for response, status, code in refused:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert rita.get(f"/requests/{rid}").json() == before

    pia.post(f"/requests/{rid}/acknowledge")
    assigned = pia.post(f"/requests/{rid}/assign", json={"assignee_ids": [api.people["paul"]]})
    assert assigned.json()["assignee_ids"] == [api.people["paul"]]
    wrong = pia.post(f"/requests/{rid}/assign", json={"assignee_ids": [api.people["lea"]]})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "assignee_not_in_department"
    paul.post(f"/requests/{rid}/start")
    assert pia.post(f"/requests/{rid}/deliver").json()["error"]["code"] == "not_assignee"
    assert paul.post(f"/requests/{rid}/deliver").json()["status"] == "delivered"
    assert api.as_(api.people["mona"]).post(f"/requests/{rid}/cancel", json={"reason": "x"}).status_code == 409


def test_queue_lists_by_needed_by_with_filters_and_cursors(api, clock):
    rita = api.as_(api.people["rita"])
    for days in (5, 2, 9, 3):
        rita.post("/requests", json=submit_body(needed_by=(START + timedelta(days=days)).isoformat(), title=f"in {days} days"))
        clock.advance(minutes=1)
    rita.post("/requests", json=submit_body(kind="legal_review"))
    pia = api.as_(api.people["pia"])
    page1 = pia.get("/requests", params={"department": "pricing", "first": 3}).json()
    page2 = pia.get("/requests", params={"department": "pricing", "first": 3, "after": page1["page_info"]["end_cursor"]}).json()
    titles = [r["title"] for r in page1["items"] + page2["items"]]
    assert titles == ["in 2 days", "in 3 days", "in 5 days", "in 9 days"]
    assert page1["total_count"] == 4 and page1["page_info"]["has_next_page"] and not page2["page_info"]["has_next_page"]
    mine = rita.get("/requests", params={"requester_id": api.people["rita"]}).json()
    assert mine["total_count"] == 5 and mine["items"][0]["kind"] == "legal_review"  # newest first
    assert pia.get("/requests", params={"status": "bogus"}).json()["error"]["code"] == "invalid_status"
    assert pia.get("/requests", params={"after": "garbage!"}).json()["error"]["code"] == "bad_cursor"


def test_timers_fire_once_per_occurrence_even_with_two_instances(api, settings, runtime, clock):
    rita = api.as_(api.people["rita"])
    rid = rita.post("/requests", json=submit_body(needed_by=(START + timedelta(hours=5)).isoformat())).json()["id"]
    api.as_(api.people["pia"]).post(f"/requests/{rid}/acknowledge")
    api.as_(api.people["pia"]).post(f"/requests/{rid}/request-info", json={"question": "Which currency?"})

    # A second instance of the service on the same database (as in a scaled deployment).
    other = build_runtime(runtime.settings, clock=clock)
    try:
        clock.advance(days=1)  # past needed-by, and 8 business hours after the question
        fired = [runtime.service.sweep(), other.service.sweep(), runtime.service.sweep()]
        assert sum(fired) == 2  # overdue + info_unanswered, each once

        clock.advance(days=7)  # 5 business days without a deal update
        assert runtime.service.sweep() + other.service.sweep() == 1
        assert runtime.service.sweep() == 0
    finally:
        other.producer.close()

    events = events_of(settings, 6)
    # Delivery is at-least-once (a relay may publish twice), so count distinct event ids.
    timer_events = {e.id: (e.type, d.occurrence) for e, d in events if e.type in ("request.overdue", "request.info_unanswered", "request.update_due")}
    assert sorted(timer_events.values()) == [("request.info_unanswered", 1), ("request.overdue", 1), ("request.update_due", 1)]
    timeline = rita.get(f"/requests/{rid}").json()["timeline"]
    assert [e["type"] for e in timeline].count("overdue") == 1


def test_readiness_and_health(api):
    assert api.as_(None).get("/healthz").json()["status"] == "ok"
    assert api.as_(None).get("/readyz").status_code == 200
