"""The notifications process against real Kafka and FerretDB, delivering to a local receiver (a
small HTTP server in the test): exact bodies, signatures, retries, failures kept and visible,
auto-disable, no duplicates after a restart, order per request, private kudos never sent,
poison messages dead-lettered, admin-only API with typed errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.notifications.app import NOTIFICATIONS_GROUPS, build_runtime
from services.notifications.config import NotificationsSettings
from shared.bus.kafka import EventProducer, consumer_lag
from shared.clock import ManualClock
from shared.db import disconnect
from shared.events import build_event, dlq_topic, validate
from tests.conftest import wait_until
from tests.integration.helpers import headers, read_topic
from tests.integration.service_helpers import Client, serving

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SECRET = "receiver-shared-secret-0123456789"
PEOPLE = [
    ("p_admin", "Ada Admin", "admin", "sales", None),
    ("p_mona", "Mona Berg", "manager", "sales", None),
    ("p_rita", "Rita Okafor", "rep", "sales", "p_mona"),
    ("p_pia", "Pía Novák", "support", "pricing", None),
    ("p_lex", "Lex Tan", "support", "legal", None),
]


class Receiver:
    """A webhook receiver: records every POST (path, headers, exact body) and answers each path
    with the statuses scripted for it, in turn (200 once the script is used up)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.stalls: dict[str, list[bool]] = {}  # per path, in turn: hold the answer until released
        self.release = threading.Event()
        self.on_request = lambda: None  # called as each request arrives
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.on_request()
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    script = receiver.script.get(self.path) or []
                    status = script.pop(0) if script else 200
                    stalls = receiver.stalls.get(self.path) or []
                    stall = stalls.pop(0) if stalls else False
                if stall:
                    receiver.release.wait(30)  # the sender gives up first (its read timeout)
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender closed the connection meanwhile

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.received if r["path"] == path]


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def nsettings(settings) -> NotificationsSettings:
    return NotificationsSettings(**{**settings.model_dump(), "webhook_allow_http": True, "webhook_backoff_ms": 20,
                                    "webhook_max_attempts": 3, "webhook_disable_after": 2,
                                    "webhook_read_timeout_s": 5, "public_url": "https://it.example.com"})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def publish(settings, clock):
    producer = EventProducer(settings, client_id="test-notifications")

    def send(type_: str, subject: str, data: dict) -> str:
        clock.advance(minutes=1)
        envelope = build_event(type_, subject, data, source="test", clock=clock)
        producer.publish_all([envelope])
        return envelope.id

    for pid, name, role, department, manager in PEOPLE:
        send("person.upserted", pid, {"person_id": pid, "email": f"{pid}@example.com", "name": name, "role": role,
                                      "department": department, "manager_id": manager})
    yield send
    producer.close()


@contextmanager
def running(nsettings, clock):
    runtime = build_runtime(nsettings, clock=clock)
    runtime.start_background()
    try:
        with serving(runtime.app) as url:
            assert wait_until(lambda: Client(url, nsettings.internal_token).get("/readyz").status_code == 200, 60)
            assert wait_until(runtime.deliver_runner.assigned.is_set, 60)
            yield runtime, Client(url, nsettings.internal_token, "p_admin")
    finally:
        runtime.stop()
        disconnect()


def hook(client: Client, receiver: Receiver, path: str, **fields) -> dict:
    answer = client.post("/webhooks", json={"url": receiver.url + path, "secret": SECRET, **fields})
    assert answer.status_code == 201, answer.text
    assert "secret" not in answer.json()["webhook"] and answer.json()["generated_secret"] is None
    return answer.json()["webhook"]


def request_base(request_id: str, status: str, actor: str = "p_rita") -> dict:
    return {"request_id": request_id, "requester_id": "p_rita", "department": "pricing", "actor_id": actor,
            "status": status, "at": T0.isoformat()}


def submitted(request_id: str) -> dict:
    return {**request_base(request_id, "submitted"), "kind": "pricing", "title": "Price the Acme renewal",
            "customer": "Acme", "details_length": 120, "needed_by": "2026-12-01T16:00:00Z", "priority": "normal",
            "notice_business_hours": 20.0, "brief_complete": True}


def kudos(kudos_id: str, private: bool = False, to: str = "p_pia") -> dict:
    return {"kudos_id": kudos_id, "giver_id": "p_rita", "recipient_ids": [to], "message": "Thank you for the fast quote!",
            "values": ["speed"], "gesture": "coffee", "at": T0.isoformat(), "private": private}


def signed(record: dict) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), record["body"], hashlib.sha256).hexdigest()
    return record["headers"]["X-InsideTrack-Signature"] == expected


def test_a_slack_webhook_gets_exactly_the_signed_messages(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        slack = hook(admin, receiver, "/slack", events=["kudos_given", "request_submitted", "request_overdue"])
        publish("kudos.given", "k_1", kudos("k_1"))
        publish("kudos.given", "k_2", kudos("k_2", private=True))  # never sent
        publish("request.submitted", "r_1", submitted("r_1"))
        publish("request.acknowledged", "r_1", {**request_base("r_1", "acknowledged", "p_pia"),
                                                 "business_hours_since_submitted": 1.0})  # not subscribed
        publish("request.overdue", "r_1", {**request_base("r_1", "acknowledged", "p_pia"), "occurrence": 1,
                                            "due_at": "2026-12-01T16:00:00Z"})
        publish("kudos.given", "k_3", kudos("k_3"))  # the marker: everything before it was handled
        assert wait_until(lambda: len(receiver.at("/slack")) == 4, 60), receiver.received

        got = receiver.at("/slack")
        assert all(signed(r) for r in got)
        assert all(r["headers"]["Content-Type"] == "application/json; charset=utf-8" for r in got)
        bodies = [json.loads(r["body"]) for r in got]
        kudos_body = next(b for b in bodies if "k_1" in json.dumps(b))
        assert kudos_body == {
            "text": "☕ Rita Okafor thanked Pía Novák: “Thank you for the fast quote!”",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "☕ Rita Okafor thanked Pía Novák: “Thank you for the fast quote!”"}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Values*\nspeed"}]},
                {"type": "image", "image_url": "https://it.example.com/cards/k_1.thumb.png", "alt_text": "Kudos card"},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "Inside Track · kudos.given"}]},
            ]}
        texts = [b["text"] for b in bodies]
        # One request's events arrive in the order they happened.
        assert texts.index("📥 Rita Okafor asked pricing for help: “Price the Acme renewal” for Acme") < texts.index(
            "⏰ “Price the Acme renewal” for Rita Okafor is overdue (was due 2026-12-01 16:00 UTC)")
        assert not any("k_2" in json.dumps(b) for b in bodies)
        ids = [r["headers"]["X-InsideTrack-Delivery"] for r in got]
        assert len(set(ids)) == 4
        assert sorted(r["headers"]["X-InsideTrack-Event"] for r in got) == [
            "kudos_given", "kudos_given", "request_overdue", "request_submitted"]

        page = admin.get(f"/webhooks/{slack['id']}/deliveries", params={"first": 10}).json()
        assert page["total_count"] == 4 and {d["status"] for d in page["items"]} == {"delivered"}
        assert {d["id"] for d in page["items"]} == set(ids)


def test_retries_then_a_failure_kept_visible_and_the_webhook_disabled(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        flaky = hook(admin, receiver, "/flaky", events=["kudos_given"])
        broken = hook(admin, receiver, "/broken", events=["kudos_given"], format="json")
        receiver.script["/flaky"] = [500, 503]  # the third attempt is answered
        receiver.script["/broken"] = [500] * 3 + [302]  # three attempts fail, then a redirect (not followed)
        first = publish("kudos.given", "k_1", kudos("k_1"))
        second = publish("kudos.given", "k_2", kudos("k_2"))
        assert wait_until(lambda: admin.get(f"/webhooks/{broken['id']}").json()["enabled"] is False
                          and len(receiver.at("/flaky")) == 4, 60), receiver.received

        assert [len(receiver.at("/flaky")), len(receiver.at("/broken"))] == [4, 4]
        # The same delivery (id, body, signature) each attempt.
        attempts = receiver.at("/flaky")[:3]
        assert len({(r["headers"]["X-InsideTrack-Delivery"], r["body"]) for r in attempts}) == 1
        assert json.loads(receiver.at("/broken")[0]["body"])["id"] == first  # JSON: the event's envelope
        deliveries = admin.get(f"/webhooks/{broken['id']}/deliveries").json()["items"]
        assert [(d["event_id"], d["status"], d["attempts"], d["response_status"]) for d in deliveries] == [
            (second, "failed", 1, 302), (first, "failed", 3, 500)]
        assert deliveries[0]["error"] == "HTTP 302: redirects are not followed"
        flaky_page = admin.get(f"/webhooks/{flaky['id']}/deliveries").json()["items"]
        assert [(d["status"], d["attempts"]) for d in flaky_page] == [("delivered", 1), ("delivered", 3)]

        state = admin.get(f"/webhooks/{broken['id']}").json()
        assert state["enabled"] is False and state["failures"] == 2
        assert state["disabled_reason"] == ("disabled after 2 failed deliveries in a row; the last: "
                                            "HTTP 302: redirects are not followed")
        publish("kudos.given", "k_3", kudos("k_3"))
        assert wait_until(lambda: len(receiver.at("/flaky")) == 5, 60)
        assert len(receiver.at("/broken")) == 4  # disabled: nothing more
        # Switched on again by an admin: deliveries resume.
        assert admin.post(f"/webhooks/{broken['id']}", json={"enabled": True}).json()["webhook"]["disabled_reason"] is None
        publish("kudos.given", "k_4", kudos("k_4"))
        assert wait_until(lambda: len(receiver.at("/broken")) == 5, 60)


def test_no_duplicates_after_a_restart_and_order_per_request(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        hook(admin, receiver, "/ops", events=["request_submitted", "request_info_requested", "request_delivered",
                                              "request_closed"], department="pricing")
        hook(admin, receiver, "/legal", events=["request_submitted"], department="legal")  # never concerned
        receiver.script["/ops"] = [500]  # the first message is retried; the rest wait behind it
        publish("request.submitted", "r_1", submitted("r_1"))
        publish("request.info_requested", "r_1", {**request_base("r_1", "waiting_on_rep", "p_pia"), "question": "Which term?"})
        assert wait_until(lambda: len(receiver.at("/ops")) == 3, 60)
        before = [r["headers"]["X-InsideTrack-Delivery"] for r in receiver.at("/ops")]
        # A redelivered event (the consumer's at-least-once) sends nothing again.
        envelope = build_event("request.submitted", "r_1", submitted("r_1"), source="test", clock=clock)
        runtime.deliverer.handle(envelope, validate(envelope))
        assert len(receiver.at("/ops")) == 4  # a new event id is a new delivery ...
        runtime.deliverer.handle(envelope, validate(envelope))
        assert len(receiver.at("/ops")) == 4  # ... the same one is not

    with running(nsettings, clock) as (runtime, admin):  # a restart: same group, same database
        publish("request.delivered", "r_1", {**request_base("r_1", "delivered", "p_pia"), "assignee_ids": ["p_pia"],
                                              "priority": "normal", "rush": False, "needed_by": "2026-12-01T16:00:00Z",
                                              "on_time": True, "notice_business_hours": 20.0})
        publish("request.closed", "r_1", {**request_base("r_1", "closed"), "outcome": "won",
                                           "business_hours_since_delivered": 2.0})
        assert wait_until(lambda: len(receiver.at("/ops")) == 6, 60)
        ids = [r["headers"]["X-InsideTrack-Delivery"] for r in receiver.at("/ops")]
        assert ids[:3] == before and len(set(ids)) == 5  # the retried one twice, nothing else again
        texts = [json.loads(r["body"])["text"] for r in receiver.at("/ops")]
        order = [t.split(" ")[0] for t in texts[1:3] + texts[4:]]
        assert order == ["📥", "❓", "✅", "🔁"]
        assert receiver.at("/legal") == []


def test_a_person_the_people_copy_learns_of_after_the_event_is_still_named(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        hook(admin, receiver, "/new", events=["kudos_given"])
        publish("kudos.given", "k_1", kudos("k_1", to="p_new"))  # the new hire's record is not read yet
        assert not wait_until(lambda: receiver.at("/new"), 1)  # held, not sent naming nobody
        publish("person.upserted", "p_new", {"person_id": "p_new", "email": "new@example.com", "name": "Nia New",
                                             "role": "support", "department": "legal"})
        assert wait_until(lambda: len(receiver.at("/new")) == 1, 60)
        assert json.loads(receiver.at("/new")[0]["body"])["text"].startswith("☕ Rita Okafor thanked Nia New:")


def test_poison_goes_to_the_dead_letter_topic_and_delivery_goes_on(settings, nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        hook(admin, receiver, "/all", events=["kudos_given", "badge_earned"])
        producer = EventProducer(settings, client_id="poison")
        try:
            producer.send_raw(settings.topic("kudos"), b"k_x", b"{not json", [])
        finally:
            producer.close()
        publish("badge.awarded", "p_pia", {"person_id": "p_pia", "badge": "clutch", "name": "Clutch", "tier": "bronze",
                                           "evidence_event_ids": ["e_1"], "at": T0.isoformat()})
        assert wait_until(lambda: len(receiver.at("/all")) == 1, 60)
        assert json.loads(receiver.at("/all")[0]["body"])["text"] == "🏅 Pía Novák earned the Clutch badge (bronze)"
        dead = [r for r in read_topic(settings, dlq_topic(settings.topic("kudos")), 1)
                if headers(r)["dlq.group"] == settings.topic("notifications-deliver")]
        assert dead and headers(dead[0])["dlq.reason"].startswith("invalid event")


def test_only_admins_manage_webhooks_and_bad_input_gets_a_typed_error(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        rita = admin.as_("p_rita")
        assert rita.get("/webhooks").json()["error"]["code"] == "admin_only"
        assert rita.post("/webhooks", json={"url": receiver.url, "events": ["kudos_given"]}).status_code == 403
        assert admin.as_("p_nobody").get("/webhooks").json()["error"]["code"] == "unknown_actor"
        assert admin.get("/webhooks", params={"public": "true"}).json()["error"]["code"] == "admin_only"  # a screen token
        refused = admin.post("/webhooks", json={"url": "not a url", "events": ["kudos_given"]})
        assert (refused.status_code, refused.json()) == (400, {"error": {
            "code": "invalid_url", "message": "url must be an absolute https:// URL", "field": "url"}})
        assert admin.post("/webhooks", json={"url": receiver.url, "events": ["party"]}).json()["error"]["code"] == "unknown_event"
        created = admin.post("/webhooks", json={"url": receiver.url + "/x", "events": ["kudos_given"], "format": "teams"}).json()
        assert len(created["generated_secret"]) == 48  # no secret given: one is made, shown this once
        listed = admin.get("/webhooks").json()["items"]
        assert [w["id"] for w in listed] == [created["webhook"]["id"]] and "secret" not in listed[0]
        assert admin.post(f"/webhooks/{created['webhook']['id']}", json={"events": []}).json()["error"]["code"] == "no_events"
        assert admin.call("DELETE", f"/webhooks/{created['webhook']['id']}").status_code == 200
        assert admin.get(f"/webhooks/{created['webhook']['id']}").status_code == 404
        assert admin.get("/webhooks").json()["items"] == []


def test_a_stop_during_a_retry_pause_leaves_the_delivery_for_the_next_start(nsettings, clock, publish, receiver):
    patient = nsettings.model_copy(update={"webhook_backoff_ms": 60_000})  # a pause the stop must cut short
    with running(patient, clock) as (runtime, admin):
        slack = hook(admin, receiver, "/slow", events=["kudos_given"])
        receiver.script["/slow"] = [503]
        publish("kudos.given", "k_1", kudos("k_1"))
        assert wait_until(lambda: len(receiver.at("/slow")) == 1, 60)
        assert wait_until(lambda: admin.get(f"/webhooks/{slack['id']}/deliveries").json()["items"][0]["attempts"] == 1, 30)
    # Stopped in the pause: not retried, not given up, not committed.
    with running(nsettings, clock) as (runtime, admin):
        assert wait_until(lambda: len(receiver.at("/slow")) == 2, 60)
        [delivery] = admin.get(f"/webhooks/{slack['id']}/deliveries").json()["items"]
        assert wait_until(lambda: admin.get(f"/webhooks/{slack['id']}/deliveries").json()["items"][0]["status"] == "delivered", 30)
        [delivery] = admin.get(f"/webhooks/{slack['id']}/deliveries").json()["items"]
        assert (delivery["attempts"], delivery["response_status"]) == (2, 200)
        first, second = receiver.at("/slow")
        assert first["headers"]["X-InsideTrack-Delivery"] == second["headers"]["X-InsideTrack-Delivery"]
        assert first["body"] == second["body"]


def test_the_supervisor_runs_the_process_and_sigterm_stops_it_cleanly(settings):
    from ops.supervisor import SERVICES, Supervisor
    from tests.integration.service_helpers import free_port

    port = free_port()
    local = settings.model_copy(update={"notifications_port": port})
    env = {"INSIDETRACK_KAFKA_PORT": str(settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(settings.mongo_port),
           "INSIDETRACK_NAME_PREFIX": settings.name_prefix, "INSIDETRACK_VAR_DIR": str(settings.var_dir),
           "INSIDETRACK_NOTIFICATIONS_PORT": str(port), "INSIDETRACK_ENV": "test"}
    supervisor = Supervisor(local, [s for s in SERVICES if s.name == "notifications"], env=env)
    logfile = supervisor.processes[0].logfile
    logged_before = logfile.stat().st_size if logfile.exists() else 0
    supervisor.start_all(timeout=90)  # waits for /readyz: Mongo, Kafka, the people copy, the consumer
    [process] = supervisor.processes
    assert Client(process.url, settings.internal_token).get("/healthz").json() == {"service": "notifications", "status": "ok"}
    # It runs on the C allocator with two heaps at most (the supervisor's SERVICE_ENV says why).
    environ = dict(v.split("=", 1) for v in Path(f"/proc/{process.proc.pid}/environ").read_text().split("\0") if "=" in v)
    assert (environ.get("PYTHONMALLOC"), environ.get("MALLOC_ARENA_MAX")) == ("malloc", "2")
    supervisor.stop_all()  # SIGTERM, then waits
    assert process.proc.returncode == 0
    assert '"msg": "stopped"' in logfile.read_bytes()[logged_before:].decode()


def test_a_receiver_that_does_not_answer_in_time_is_tried_again_within_the_retry_window(nsettings, clock, publish, receiver):
    """The read timeout cuts a hung receiver short, and the delivery is tried again; the retry
    window bounds the attempts as well as their number (the process's monotonic clock is the
    test's: each answer "takes" 10 s on it, so nothing depends on this machine's speed)."""
    quick = nsettings.model_copy(update={"webhook_read_timeout_s": 0.5, "webhook_max_attempts": 5,
                                         "webhook_retry_window_s": 15, "webhook_disable_after": 10})
    with running(quick, clock) as (runtime, admin):
        hung = hook(admin, receiver, "/hung", events=["kudos_given"])
        receiver.stalls["/hung"] = [True]  # the first attempt gets no answer in time
        publish("kudos.given", "k_1", kudos("k_1"))
        assert wait_until(lambda: admin.get(f"/webhooks/{hung['id']}/deliveries").json()["items"][:1]
                          and admin.get(f"/webhooks/{hung['id']}/deliveries").json()["items"][0]["status"] == "delivered", 60)
        delivery = admin.get(f"/webhooks/{hung['id']}/deliveries").json()["items"][0]
        assert (delivery["attempts"], delivery["response_status"]) == (2, 200)
        assert len(receiver.at("/hung")) == 2 and signed(receiver.at("/hung")[1])

        assert admin.call("DELETE", f"/webhooks/{hung['id']}").status_code == 200
        seconds = [0.0]
        runtime.deliverer.monotonic = lambda: seconds[0]
        receiver.on_request = lambda: seconds.__setitem__(0, seconds[0] + 10)
        window = hook(admin, receiver, "/window", events=["kudos_given"])
        receiver.script["/window"] = [500] * 5
        publish("kudos.given", "k_2", kudos("k_2"))
        assert wait_until(lambda: (admin.get(f"/webhooks/{window['id']}/deliveries").json()["items"][:1] or [{}])[0]
                          .get("status") == "failed", 60)
        failed = admin.get(f"/webhooks/{window['id']}/deliveries").json()["items"][0]
        # The first attempt ends at 10 s (a pause, then a second), the second at 20 s: a third would
        # start past the 15 s window, though 5 attempts are allowed.
        assert (failed["attempts"], failed["response_status"], failed["error"]) == (2, 500, "HTTP 500")
        assert len(receiver.at("/window")) == 2


def test_webhooks_only_to_the_allowed_hosts_when_a_list_is_set(nsettings, clock, publish, receiver):
    listed = nsettings.model_copy(update={"webhook_allowed_hosts": "hooks.example.com,*.webhook.office.com"})
    with running(listed, clock) as (runtime, admin):
        refused = admin.post("/webhooks", json={"url": receiver.url + "/x", "events": ["kudos_given"]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "host_not_allowed", refused.text
        assert refused.json()["error"]["field"] == "url"
        for url in ("https://hooks.example.com/services/T0/B0/x", "https://acme.webhook.office.com/webhookb2/x"):
            assert admin.post("/webhooks", json={"url": url, "events": ["kudos_given"]}).status_code == 201, url
        assert admin.post("/webhooks", json={"url": "https://hooks.example.com.evil.test/x",
                                             "events": ["kudos_given"]}).status_code == 400
        assert len(admin.get("/webhooks").json()["items"]) == 2


def test_nothing_about_a_hidden_person_reaches_a_channel(nsettings, clock, publish, receiver):
    with running(nsettings, clock) as (runtime, admin):
        hook(admin, receiver, "/team", events=["kudos_given", "badge_earned"])
        publish("person.upserted", "p_lex", {"person_id": "p_lex", "email": "p_lex@example.com", "name": "Lex Tan",
                                             "role": "support", "department": "legal", "hidden": True})
        assert wait_until(lambda: runtime.deliverer.people.get("p_lex") is not None
                          and runtime.deliverer.people.get("p_lex").hidden, 30)
        publish("kudos.given", "k_1", kudos("k_1", to="p_lex"))
        publish("badge.awarded", "p_lex", {"person_id": "p_lex", "badge": "clutch", "name": "Clutch", "tier": "bronze",
                                           "evidence_event_ids": ["e_1"], "at": T0.isoformat()})
        publish("kudos.given", "k_2", kudos("k_2"))
        assert wait_until(lambda: len(receiver.at("/team")) == 1, 60)
        # Every event taken by the delivery group (committed after it is handled), the others too.
        assert wait_until(lambda: consumer_lag(nsettings, NOTIFICATIONS_GROUPS) == 0, 60)
        assert len(receiver.at("/team")) == 1
        assert "k_2" in json.loads(receiver.at("/team")[0]["body"])["blocks"][2]["image_url"]
        assert not any("Lex" in r["body"].decode() for r in receiver.received)
