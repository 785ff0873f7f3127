"""Fault scenarios on the real stack: crashes, restarts, outages and poison, each ending with
the points ledger compared with the expected one exactly (nothing lost, nothing counted twice).

The same scenarios run small in the default test run (tests/integration/test_faults.py) and
large behind ``make chaos`` (tests/integration/chaos/). Sizes and patience come from the
environment, so a slow machine can be given more time without touching the code:

* ``CHAOS_EVENTS``: events in the kill-mid-burst run of ``make chaos`` (default 20000);
* ``CHAOS_STREAM_EVENTS``: events in the other ``make chaos`` streams (default 2000);
* ``CHAOS_FAST_EVENTS``: events in the default run's burst (default 150);
* ``CHAOS_TIMEOUT_S``: how long the ledger may take to become exact (default 1800);
* ``CHAOS_OUTAGE_S``: how long FerretDB stays down (default 10).

Expected ledgers are computed independently of the points process: from the rules by
construction (every synthetic acknowledgement within the SLA earns its actor exactly one +5
entry, whose id is derived from the event id), or, for the load through the gateway, by
re-scoring the same topics into a fresh database with the rebuild.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests as http

from services.recognition.points.app import POINTS_GROUPS
from services.recognition.points.insights import INSIGHTS_GROUP
from services.recognition.points.state import read_table
from services.recognition.points.store import entry_id
from shared.bus.kafka import EventProducer, admin_client, consumer_lag
from shared.config import Settings
from shared.db import mongo_client
from shared.events import Envelope, build_event, dlq_topic
from shared.events.envelope import MAX_EVENT_BYTES
from tests.conftest import wait_until
from tests.integration.gateway_system import start_service
from tests.integration.helpers import headers, read_topic
from tests.integration.service_helpers import Client, free_port

def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def timeout_s() -> float:
    return float(env_int("CHAOS_TIMEOUT_S", 1800))


# -- synthetic history, scored by construction ---------------------------------------------------

MON = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
SUPPORT = ("pia", "li", "ahmed", "sven", "noor")
ACK_RULE, ACK_POINTS = "acknowledged_within_sla", 5


def person_events(ids=SUPPORT, role: str = "support", department: str = "pricing") -> list[Envelope]:
    return [build_event("person.upserted", pid, {"person_id": pid, "email": f"{pid}@example.com", "name": pid.title(),
                                                  "role": role, "department": department}, source="requests")
            for pid in ids]


@dataclass
class Expected:
    """The ledger the rules say the events must give: entry id -> (person, points)."""

    ledger: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for person, points in self.ledger.values():
            out[person] = out.get(person, 0) + points
        return {person: points for person, points in out.items() if points}  # no totals for 0-point entries


def acknowledgements(n: int, tag: str = "a", actors=SUPPORT) -> tuple[list[Envelope], Expected]:
    """``n`` requests acknowledged within the SLA, each by one support person: +5 each, once."""
    events, expected = [], Expected()
    for i in range(n):
        actor = actors[i % len(actors)]
        rid = f"{tag}{i}"
        event = build_event("request.acknowledged", rid, {
            "request_id": rid, "requester_id": "rita", "department": "pricing", "actor_id": actor,
            "status": "acknowledged", "at": MON + timedelta(seconds=i), "business_hours_since_submitted": 1.0,
        }, source="requests")
        events.append(event)
        expected.ledger[entry_id(event.id, ACK_RULE, actor)] = (actor, ACK_POINTS)
    return events, expected


# -- reading the points database ----------------------------------------------------------------

class PointsDb:
    """Reads the points process's database; every read survives the database being down."""

    def __init__(self, settings: Settings, database: str | None = None, table=None):
        self.settings = settings
        self.table = table  # the totals to read instead of the changelog's (a rebuild's, not published)
        self.client = mongo_client(settings.model_copy(update={"mongo_timeout_ms": 2000}))
        self.db = self.client[database or settings.database("points")]

    def close(self) -> None:
        self.client.close()

    def count(self) -> int:
        try:
            return self.db.ledger.count_documents({})
        except Exception:  # noqa: BLE001 - down for the moment: no progress
            return -1

    def ledger(self) -> dict[str, tuple[str, int]]:
        return {d["_id"]: (d["person_id"], d["points"]) for d in self.db.ledger.find({}, {"person_id": 1, "points": 1})}

    def ledger_with_rules(self) -> dict[str, tuple[str, str, int]]:
        return {d["_id"]: (d["person_id"], d["rule"], d["points"])
                for d in self.db.ledger.find({}, {"person_id": 1, "rule": 1, "points": 1})}

    def totals(self, key: str = "all") -> dict[str, int]:
        """Everyone's points in a period as the points state's changelog holds them."""
        if self.table is not None:
            return self.table.key_totals(key)
        try:
            return read_table(self.settings).key_totals(key)
        except Exception:  # noqa: BLE001 - Kafka down for the moment: no answer yet
            return {}


def diff(expected: Expected, ledger: dict, totals: dict) -> str:
    missing = set(expected.ledger) - set(ledger)
    extra = set(ledger) - set(expected.ledger)
    wrong = {k for k in set(ledger) & set(expected.ledger) if ledger[k] != expected.ledger[k]}
    return (f"ledger {len(ledger)} of {len(expected.ledger)} entries: {len(missing)} missing, {len(extra)} unexpected, "
            f"{len(wrong)} different; totals {totals} vs expected {expected.totals}")


def poll_interval(n: int) -> float:
    """Seconds between looks at the ledger: counting it scans it on FerretDB, so a big ledger
    is looked at less often (the test must not be what slows the points process down), but at
    least every 2 s: at 10 s a 20,000-event burst was scored to its end between two looks, and
    the kill "mid-burst" came after the work was done."""
    return min(2.0, max(0.2, n / 2000))


def wait_exact(points: PointsDb, expected: Expected, timeout: float) -> float:
    """Wait until the ledger and the all-time totals are exactly the expected ones; return
    the seconds it took. Fails with what differs."""
    started = time.monotonic()
    deadline = started + timeout
    last = ""
    while time.monotonic() < deadline:
        if points.count() >= len(expected.ledger):
            try:
                ledger, totals = points.ledger(), points.totals()
            except Exception as exc:  # noqa: BLE001 - the database is down for the moment
                last = repr(exc)
            else:
                if ledger == expected.ledger and totals == expected.totals:
                    return time.monotonic() - started
                last = diff(expected, ledger, totals)
        time.sleep(max(1.0, poll_interval(len(expected.ledger))))
    raise AssertionError(f"the ledger did not become exact within {timeout:.0f}s: {last or points.count()}")


# -- Kafka: consumer group lag ------------------------------------------------------------------

def points_lag(settings: Settings) -> int:
    return consumer_lag(settings, POINTS_GROUPS)


def settle(settings: Settings, points: PointsDb, expected: Expected, timeout: float = 120) -> None:
    """Once exact, wait until the points consumers have committed everything, then check again:
    a late redelivery (a rebalance, a replay after a restart) must change nothing."""
    assert wait_until(lambda: points_lag(settings) == 0, timeout=timeout, interval=1.0), (
        f"points consumers still lag by {points_lag(settings)} messages")
    time.sleep(2)
    ledger, totals = points.ledger(), points.totals()
    assert ledger == expected.ledger and totals == expected.totals, diff(expected, ledger, totals)


# -- service processes ---------------------------------------------------------------------------

class Fleet:
    """Real service processes (``python -m services...``) a test starts; all stopped at the end."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None):
        self.settings = settings
        self.env = dict(env or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, module: str, kind: str, env: dict[str, str] | None = None,
              ports: dict[str, int] | None = None) -> int:
        """Start ``module`` as ``name``; ``kind`` names its port setting; return its port."""
        port = free_port()
        self.procs[name] = start_service(module, self.settings, {**(ports or {}), kind: port}, {**self.env, **(env or {})})
        self.ports[name] = port
        return port

    def points(self, name: str, env: dict[str, str] | None = None) -> int:
        return self.start(name, "services.recognition.points", "points", env)

    def wait_ready(self, *names: str, timeout: float = 90) -> None:
        for name in names or list(self.procs):
            assert wait_until(lambda: readiness(self.ports[name])[0] == 200, timeout=timeout, interval=0.2), (
                f"{name} did not become ready: {readiness(self.ports[name])}")

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    def stop_all(self) -> None:
        running = [p for p in self.procs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def readiness(port: int) -> tuple[int | None, dict]:
    """``/readyz`` of the process on ``port``: (status, body), or (None, {}) if it does not answer."""
    try:
        answer = http.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        return answer.status_code, answer.json()
    except (http.RequestException, ValueError):
        return None, {}


def reports_down(port: int, dependency: str) -> bool:
    status, body = readiness(port)
    return status == 503 and body["checks"][dependency]["ok"] is False


# -- scenarios -----------------------------------------------------------------------------------

@dataclass
class Figures:
    """What a run measured, for the report (docs/reliability.md)."""

    events: int
    ledger_at_fault: int = 0  # ledger entries when the fault struck
    seconds_to_exact: float = 0.0
    notes: dict = field(default_factory=dict)

    def print(self, scenario: str) -> None:
        print(f"\nCHAOS {scenario}: events={self.events} ledger_at_fault={self.ledger_at_fault} "
              f"exact_after_s={self.seconds_to_exact:.1f} {self.notes}")


def points_killed_mid_burst(settings: Settings, producer, n: int, processes: int = 1) -> Figures:
    """``processes`` points processes in one group read a burst of ``n`` events, published in
    chunks while they work; one is killed (-9) once a third of the ledger is written, the burst
    goes on, a new process is started. The ledger must end exactly as the rules say."""
    import threading

    producer.publish_all(person_events())
    events, expected = acknowledgements(n)
    points = PointsDb(settings)
    chunk = max(1, n // 40)
    burst_error: list[BaseException] = []

    def burst() -> None:
        try:
            for start in range(0, n, chunk):
                producer.publish_all(events[start:start + chunk])
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            burst_error.append(exc)

    with Fleet(settings) as fleet:
        try:
            names = [f"points{i}" for i in range(1, processes + 1)]
            for name in names:
                fleet.points(name)
            fleet.wait_ready(*names)
            started = time.monotonic()
            publisher = threading.Thread(target=burst, daemon=True)
            publisher.start()
            assert wait_until(lambda: points.count() >= max(1, n // 3), timeout_s(), poll_interval(n)), (
                f"no progress: {points.count()} ledger entries")
            fleet.kill9(names[0])
            killed_at = points.count()
            fleet.points("replacement")
            fleet.wait_ready("replacement")
            publisher.join(timeout_s())
            assert not burst_error, burst_error
            wait_exact(points, expected, timeout_s())
            figures = Figures(events=n, ledger_at_fault=killed_at, seconds_to_exact=time.monotonic() - started,
                              notes={"processes": processes})
            settle(settings, points, expected)
            assert killed_at < len(expected.ledger), "the kill came after the work was done: it proved nothing"
            return figures
        finally:
            points.close()


def kudos_killed_between_write_and_publish(settings: Settings, producer) -> Figures:
    """The kudos process dies (SIGKILL) right after the one write that stored a kudos and its
    ``kudos.given`` event, before the outbox relay published it. After a restart the event is
    published; a second copy (what a crash between publish and removal gives) changes nothing:
    the recipient's ledger has exactly one +10 for it."""

    producer.publish_all(person_events(("pia",)) + person_events(("rita",), role="rep", department="sales"))
    client = mongo_client(settings)
    kudos_db = client[settings.database("kudos")]
    points = PointsDb(settings)
    topic = settings.topic("kudos")
    with Fleet(settings) as fleet:
        try:
            # The relay only looks when told (or at start): nothing publishes behind the fault's back.
            port = fleet.start("kudos", "services.recognition.kudos", "kudos",
                               env={"INSIDETRACK_FAULT_CRASH_AFTER_STATE_WRITE": "true", "INSIDETRACK_OUTBOX_POLL_MS": "60000"})
            fleet.wait_ready("kudos")
            api = Client(f"http://127.0.0.1:{port}", settings.internal_token, "rita")
            try:
                answer = api.post("/kudos", json={"to": ["pia"], "message": "Thanks for the pricing!"})
                raise AssertionError(f"the process answered instead of dying: {answer.status_code} {answer.text}")
            except http.ConnectionError:
                pass  # it died mid-request, as arranged
            assert fleet.procs["kudos"].wait(10) == -signal.SIGKILL

            [stored] = list(kudos_db.kudos.find())
            assert stored["outbox_pending"] is True and len(stored["outbox"]) == 1  # the state and its event, written
            assert read_topic(settings, topic, 1, timeout=3) == []  # and nothing published

            fleet.start("kudos-again", "services.recognition.kudos", "kudos")
            fleet.wait_ready("kudos-again")
            [record] = read_topic(settings, topic, 1, timeout=30)
            event = Envelope.from_bytes(record.value)
            assert event.id == stored["outbox"][0]["id"] and event.subject == stored["_id"]
            assert wait_until(lambda: kudos_db.kudos.find_one({"_id": stored["_id"]})["outbox"] == [], timeout=30)
            assert read_topic(settings, topic, 2, timeout=3)[1:] == []  # published once

            producer.publish_all([event])  # a duplicate, as a relay crash after publishing would give
            fleet.points("points")
            expected = Expected({entry_id(event.id, "kudos_received", "pia"): ("pia", 10),
                                 entry_id(event.id, "kudos_given", "rita"): ("rita", 0)})  # towards Grateful
            seconds = wait_exact(points, expected, timeout_s())
            settle(settings, points, expected)
            assert kudos_db.allowances.find_one()["used"] == 1  # the allowance was spent once
            return Figures(events=1, seconds_to_exact=seconds, notes={"copies_on_topic": 2})
        finally:
            points.close()
            client.close()


def poison(settings: Settings, producer, good: list[Envelope]) -> dict[str, bytes]:
    """Send the four kinds of poison to the requests topic, between good events, keyed like them."""
    topic = settings.topic("requests")
    template = good[0].to_dict()
    key = good[0].key
    bad_body = {**template, "id": "poison-body", "data": {**template["data"], "business_hours_since_submitted": "soon"}}
    future = {**template, "id": "poison-version", "schemaversion": 99}
    padding = "x" * (MAX_EVENT_BYTES + 1)
    oversized = {**template, "id": "poison-size", "data": {**template["data"], "note": padding}}
    messages = {
        "unparseable": b"\xff\xfe not an event",
        "invalid body": Envelope.from_dict(bad_body).to_bytes(),
        "unknown version": Envelope.from_dict(future).to_bytes(),
        "oversized": Envelope.from_dict(oversized).to_bytes(),
    }
    raw = producer._producer  # bytes a well-behaved producer refuses to send
    third = len(good) // 3
    producer.publish_all(good[:third])
    for value in messages.values():
        raw.send(topic, key=key, value=value).get(timeout=30)
    producer.publish_all(good[third:])
    return messages


def poison_in_a_live_stream(settings: Settings, producer, n: int = 30) -> Figures:
    """Poison among good events, read by a real points process: each poison ends in
    ``requests.dlq`` with its reason, once per group that reads it, and every good event is
    scored exactly once."""
    producer.publish_all(person_events())
    events, expected = acknowledgements(n, tag="g")
    messages = poison(settings, producer, events)
    points = PointsDb(settings)
    with Fleet(settings) as fleet:
        try:
            fleet.points("points")
            seconds = wait_exact(points, expected, timeout_s())
            settle(settings, points, expected)
        finally:
            points.close()
    # Each group of the points process that reads the requests topic dead-letters each poison
    # once: the scorer and the insights read model.
    groups = {settings.topic(INSIGHTS_GROUP), settings.topic("points-score")}
    dead = read_topic(settings, dlq_topic(settings.topic("requests")), len(messages) * len(groups))
    assert len(dead) == len(messages) * len(groups), [headers(r)["dlq.reason"] for r in dead]
    by_group: dict[str, dict[bytes, dict]] = {}
    for record in dead:
        by_group.setdefault(headers(record)["dlq.group"], {})[record.value] = headers(record)
    assert set(by_group) == groups
    for by_value in by_group.values():
        reasons = {kind: by_value[value]["dlq.reason"] for kind, value in messages.items()}
        assert "unparseable JSON" in reasons["unparseable"]
        assert "business_hours_since_submitted" in reasons["invalid body"]
        assert "unknown schema version 99" in reasons["unknown version"]
        assert "exceeds" in reasons["oversized"]
    return Figures(events=n, seconds_to_exact=seconds, notes={"dead_lettered": len(dead)})


# -- the broker and the database go away --------------------------------------------------------

def _outage_fleet(fleet: Fleet) -> tuple[int, int]:
    """A points and a kudos process, ready; return their ports."""
    points_port = fleet.points("points")
    kudos_port = fleet.start("kudos", "services.recognition.kudos", "kudos")
    fleet.wait_ready()
    return points_port, kudos_port


def _still_running(fleet: Fleet) -> None:
    exited = {name: p.returncode for name, p in fleet.procs.items() if p.poll() is not None}
    assert not exited, f"processes gave up instead of retrying: {exited}"


def _wait_reported_down(ports: tuple[int, ...], dependency: str) -> None:
    """Every process on ``ports`` answers /readyz 503 naming ``dependency`` (within 30 s)."""
    assert wait_until(lambda: all(reports_down(port, dependency) for port in ports), 30), [readiness(p) for p in ports]


def _wait_ready_again(ports: tuple[int, ...]) -> None:
    """Every process on ``ports`` is ready again by itself (within 120 s)."""
    assert wait_until(lambda: all(readiness(port)[0] == 200 for port in ports), 120, 0.5), [readiness(p) for p in ports]


def broker_restart_mid_stream(stack_settings: Settings, settings: Settings, producer, n: int,
                              outage_s: float = 5) -> Figures:
    """The Kafka broker stops in the middle of a stream and starts again. While it is down the
    services report it on /readyz and keep retrying (a kudos given meanwhile is stored and
    published later); they recover by themselves; the ledger ends exact."""
    from ops.infra.local import KafkaBroker

    producer.publish_all(person_events() + person_events(("rita",), role="rep", department="sales"))
    events, expected = acknowledgements(n, tag="k")
    broker = KafkaBroker(stack_settings)
    points = PointsDb(settings)
    with Fleet(settings) as fleet:
        try:
            points_port, kudos_port = _outage_fleet(fleet)
            half = n // 2
            producer.publish_all(events[:half])
            assert wait_until(lambda: points.count() >= max(1, n // 8), timeout_s(), poll_interval(n))
            # kafka-python 3.0 leaks a socket per refused reconnect, which this test process turns
            # into errors: no Kafka client of ours stays open while the broker is away.
            producer.close()
            stopped_at = points.count()
            started = time.monotonic()
            broker.daemon.stop()
            _wait_reported_down((points_port, kudos_port), "kafka")
            # A kudos given while the broker is away: stored with its event, published later.
            api = Client(f"http://127.0.0.1:{kudos_port}", settings.internal_token, "rita")
            given = api.post("/kudos", json={"to": ["pia"], "message": "Thanks, even with Kafka down"})
            assert given.status_code == 201, given.text
            time.sleep(outage_s)
            _still_running(fleet)
            broker.up()
            down_s = time.monotonic() - started
            _wait_ready_again((points_port, kudos_port))
            recovered_s = time.monotonic() - started
            producer = EventProducer(settings, client_id="chaos")
            producer.publish_all(events[half:])
            producer.close()
            [kudos_event] = [Envelope.from_bytes(r.value) for r in read_topic(settings, settings.topic("kudos"), 1, timeout=60)]
            expected.ledger[entry_id(kudos_event.id, "kudos_received", "pia")] = ("pia", 10)
            expected.ledger[entry_id(kudos_event.id, "kudos_given", "rita")] = ("rita", 0)
            wait_exact(points, expected, timeout_s())
            settle(settings, points, expected)
            _still_running(fleet)
            return Figures(events=n + 1, ledger_at_fault=stopped_at, seconds_to_exact=time.monotonic() - started,
                           notes={"broker_down_s": round(down_s, 1), "ready_again_after_s": round(recovered_s, 1)})
        finally:
            points.close()


def database_outage_mid_stream(stack_settings: Settings, settings: Settings, producer, n: int, outage_s: float) -> Figures:
    """FerretDB stops for ``outage_s`` seconds in the middle of a stream. The services report
    it on /readyz, keep retrying (nothing is dead-lettered for an outage), recover by
    themselves; the ledger ends exact."""
    from ops.infra.local import FerretDB

    producer.publish_all(person_events())
    events, expected = acknowledgements(n, tag="m")
    database = FerretDB(stack_settings)
    points = PointsDb(settings)
    with Fleet(settings) as fleet:
        try:
            points_port, kudos_port = _outage_fleet(fleet)
            producer.publish_all(events)
            assert wait_until(lambda: points.count() >= max(1, n // 8), timeout_s(), poll_interval(n))
            stopped_at = points.count()
            started = time.monotonic()
            database.daemon.stop()
            _wait_reported_down((points_port, kudos_port), "mongo")
            time.sleep(max(0.0, outage_s - (time.monotonic() - started)))
            _still_running(fleet)
            database.up()
            down_s = time.monotonic() - started
            _wait_ready_again((points_port, kudos_port))
            recovered_s = time.monotonic() - started
            wait_exact(points, expected, timeout_s())
            settle(settings, points, expected)
            _still_running(fleet)
            assert read_topic(settings, dlq_topic(settings.topic("requests")), 1, timeout=2) == []  # an outage is no poison
            return Figures(events=n, ledger_at_fault=stopped_at, seconds_to_exact=time.monotonic() - started,
                           notes={"database_down_s": round(down_s, 1), "ready_again_after_s": round(recovered_s, 1)})
        finally:
            points.close()


# -- the scaling model: several processes per service ------------------------------------------

REPS = tuple(f"rep{i:02d}" for i in range(1, 9))
SUPPORT_STAFF = tuple(f"sup{i:02d}" for i in range(1, 7))
GIVE = ('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks for the help!", gesture: COFFEE}) '
        '{ kudos { id } errors { code } } }')


def _people_csv() -> str:
    rows = ["email,name,role,department,title,manager_email"]
    rows += [f"{r}@example.com,Rep {r},rep,sales,Account Executive," for r in REPS]
    rows += [f"{s}@example.com,Support {s},support,pricing,Pricing Analyst," for s in SUPPORT_STAFF]
    return "\n".join(rows) + "\n"


def _partitions(settings: Settings, logical: list[str]) -> dict[str, int]:
    admin = admin_client(settings)
    try:
        return {t["name"]: len(t["partitions"])
                for t in admin.describe_topics([settings.topic(n) for n in logical])}
    finally:
        admin.close()


def _quiet(settings: Settings) -> bool:
    """No event waiting anywhere: no outbox pending in any service, no consumer lag in points."""
    client = mongo_client(settings)
    try:
        for service in ("requests", "kudos", "points"):
            db = client[settings.database(service)]
            if any(db[name].count_documents({"outbox_pending": True}) for name in db.list_collection_names()):
                return False
    finally:
        client.close()
    return points_lag(settings) == 0


def expected_by_rebuild(settings: Settings) -> PointsDb:
    """Score every event now on the topics in a fresh database, with the rebuild."""
    from services.recognition.directory import Directory
    from services.recognition.points.config import PointsSettings
    from services.recognition.points.rebuild import rebuild
    from services.recognition.points.rules import load_rules
    from shared.db import connect, disconnect

    fresh = settings.model_copy(update={"name_prefix": settings.name_prefix + "expected_"})
    db = connect(fresh, "points")
    try:
        report = rebuild(settings, db, load_rules(PointsSettings().rules_file), Directory(), publish=False)
    finally:
        disconnect()
    return PointsDb(settings, fresh.database("points"), table=report.state)


def scaling_model(settings: Settings, load: int) -> Figures:
    """Topics with 6 partitions; two gateways, two kudos, three points processes (and one
    requests process) against one Kafka and one FerretDB; a load of giveKudos and request
    lifecycles through both gateways; one points process killed (-9) mid-stream and another
    started. The ledger must equal the rebuild's, entry by entry, and the totals too."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from services.gateway.auth import issue_token
    from services.gateway.config import GatewaySettings
    from shared.bus.kafka import ensure_topics
    from tests.integration.gateway_system import GraphQL
    from tests.integration.test_gateway import LIFECYCLE, SUBMIT, brief

    wide = settings.model_copy(update={"topic_partitions": 6})
    ensure_topics(wide)  # the test's topics grow from 3 to 6 partitions before any event
    logical = ["people", "requests", "kudos", "points", "badges"]
    # the controller has them at once; a broker's metadata may answer with the old count for a moment
    assert wait_until(lambda: set(_partitions(settings, logical).values()) == {6}, 30, 0.5), _partitions(settings, logical)
    env = {"INSIDETRACK_TOPIC_PARTITIONS": "6", "INSIDETRACK_RATE_LIMIT_PER_MINUTE": "100000"}
    with Fleet(settings, env) as fleet:
        requests_port = fleet.start("requests", "services.requests", "requests")
        kudos_ports = [fleet.start(f"kudos{i}", "services.recognition.kudos", "kudos") for i in (1, 2)]
        points_ports = [fleet.points(f"points{i}") for i in (1, 2, 3)]
        fleet.wait_ready(timeout=180)
        gateways = [fleet.start(f"gateway{i}", "services.gateway", "gateway",
                                ports={"requests": requests_port, "kudos": kudos_ports[i - 1], "points": points_ports[i - 1]})
                    for i in (1, 2)]
        fleet.wait_ready(timeout=180)
        urls = [f"http://127.0.0.1:{port}" for port in gateways]
        gateway_settings = GatewaySettings(**settings.model_dump())
        with mongo_client(settings) as client:
            admin = client[settings.database("requests")]["people"].find_one({"email": "admin@example.com"})
        as_admin = GraphQL(urls[0], issue_token(gateway_settings, admin["_id"], admin["email"], "admin"))
        imported = as_admin('mutation($csv: String!) { importPeople(csv: $csv) { created errors { code } } }',
                            {"csv": _people_csv()}).json()
        assert imported["data"]["importPeople"]["created"] == len(REPS) + len(SUPPORT_STAFF), imported
        listed = as_admin("{ people(first: 100) { edges { node { id email role } } } }").json()
        people = {e["node"]["email"].split("@")[0]: e["node"] for e in listed["data"]["people"]["edges"]}

        def as_(name: str, via: int) -> GraphQL:
            p = people[name]
            return GraphQL(urls[via % 2], issue_token(gateway_settings, p["id"], p["email"], p["role"].lower()))

        for via in (0, 1):  # both kudos processes have read the directory
            for name in (REPS[-1], SUPPORT_STAFF[-1]):
                assert wait_until(lambda: as_(name, via)("{ me { kudosAllowance { left } } }").json()["data"]["me"]["kudosAllowance"],
                                  timeout=60)

        def give(k: int) -> str | None:
            giver, to = REPS[k % len(REPS)], SUPPORT_STAFF[(k // len(REPS)) % len(SUPPORT_STAFF)]
            body = as_(giver, k)(GIVE, {"to": [people[to]["id"]]}).json()
            return None if body.get("data", {}).get("giveKudos", {}).get("errors") == [] else f"give {k}: {body}"

        def lifecycle(j: int) -> str | None:
            rep, helper = REPS[j % len(REPS)], SUPPORT_STAFF[j % len(SUPPORT_STAFF)]
            created = as_(rep, j)(SUBMIT, {"input": brief(title=f"Price deal {j}")}).json()
            rid = created["data"]["submitRequest"]["request"]["id"]
            for step, who in (("acknowledge", helper), ("start", helper), ("update", rep), ("deliver", helper), ("close", rep)):
                body = as_(who, j + len(step))(LIFECYCLE[step], {"id": rid}).json()
                result = next(iter((body.get("data") or {}).values()), None)
                if not result or result.get("errors"):
                    return f"{step} {j}: {body}"
            return None

        # Within the rules' limits, so nothing is refused: each rep gives each support person at
        # most 3 kudos (weekly cap), at most 18 in all (monthly allowance 20).
        kudos_count = min(load, len(REPS) * len(SUPPORT_STAFF) * 3)
        tasks = [(give, k) for k in range(kudos_count)] + [(lifecycle, j) for j in range(max(1, load // 4))]
        tasks.sort(key=lambda t: t[1] % 7)  # interleave kinds
        started = time.monotonic()
        failures, done = [], 0
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(fn, arg) for fn, arg in tasks]
            for future in as_completed(futures):
                done += 1
                failures.append(future.result())
                if done == len(tasks) // 2:
                    fleet.kill9("points3")  # mid-stream: half the load is in, the scoring behind it
                    fleet.points("points4")
        failures = [f for f in failures if f]
        assert not failures, failures[:5]
        load_s = time.monotonic() - started
        assert wait_until(lambda: _quiet(settings) and _quiet(settings), timeout=timeout_s(), interval=2.0), "never quiet"
        live = PointsDb(settings)
        expected = expected_by_rebuild(settings)
        try:
            ledger, wanted = live.ledger_with_rules(), expected.ledger_with_rules()
            assert ledger == wanted, (len(ledger), len(wanted), set(ledger) ^ set(wanted))
            assert live.totals() == expected.totals()
            rules = [rule for _, rule, _ in ledger.values()]
            assert rules.count("kudos_received") == kudos_count
            assert rules.count("closed_the_loop") == max(1, load // 4)
        finally:
            live.close()
            expected.close()
        return Figures(events=len(tasks), seconds_to_exact=time.monotonic() - started,
                       notes={"ledger_entries": len(ledger), "load_s": round(load_s, 1), "kudos": kudos_count,
                              "lifecycles": max(1, load // 4)})
