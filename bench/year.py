"""`BENCH_ONLY=year make bench`: a company-year through the services' own code paths (issue 17).

On the bench's own stack (bench/run.py: its ports, var/bench): the demo company is loaded as
`make up` loads it (GraphQL on the demo clock), the portal reads are timed through the gateway
("demo size"); then a year is added and the same reads are timed again ("year size"):

- people: `import-people`'s own path (``POST /people/admin``, then ``POST /people/import`` of the
  CSV as the admin, services/requests/importer.py), so the requests service's relay publishes them;
- kudos: `import-kudos`'s own path (``send_file``: ``POST /kudos/import`` in parts, as the admin),
  dated over the past 12 months;
- requests: `import-requests`'s own path (``send_file``: ``POST /requests/import`` in parts, as the
  admin) of full lifecycles dated over the past 12 months (submit, acknowledge, start, sometimes
  ask/answer and a deal update, deliver, close with outcomes in turn; ~3 % cancelled, 1 % in the
  last days left open at some stage): the service replays each row through its domain at the
  row's times, stores a part in bulk and publishes its events (services/requests/history.py);
  ``requests_import_s`` is the import's time, ``requests_published_s`` until the requests topic
  holds every event it reported.

Then it waits for the points service to score everything (consumer lag 0), times the reads,
measures each process's CPU over 60 s with no traffic (from /proc/<pid>/stat) and each
service's RSS. Sizes: BENCH_YEAR_PEOPLE (2000), BENCH_YEAR_KUDOS (50000),
BENCH_YEAR_REQUESTS (20000), BENCH_YEAR_SAMPLES (100 timed reads per kind), BENCH_YEAR_IDLE_S
(60), BENCH_YEAR_DEMO=0 to skip the demo company (its reads are then timed on an empty company).
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import requests as http

from inprocess import cpu_seconds, stack_pids

PEOPLE = int(os.environ.get("BENCH_YEAR_PEOPLE", "2000"))
KUDOS = int(os.environ.get("BENCH_YEAR_KUDOS", "50000"))
REQUESTS = int(os.environ.get("BENCH_YEAR_REQUESTS", "20000"))
SAMPLES = int(os.environ.get("BENCH_YEAR_SAMPLES", "100"))
IDLE_S = float(os.environ.get("BENCH_YEAR_IDLE_S", "60"))
DEMO = os.environ.get("BENCH_YEAR_DEMO", "1") != "0"
# BENCH_YEAR_LOAD=0: no new company; start the stack on the data var/bench already holds (a year
# loaded by an earlier run) and measure the reads, idle CPU and RSS; the demo-size figures for
# the ratios come from an earlier results file (BENCH_YEAR_DEMO_RESULTS=bench/results/<time>.json).
LOAD = os.environ.get("BENCH_YEAR_LOAD", "1") != "0"
REBUILD = os.environ.get("BENCH_YEAR_REBUILD", "1") != "0"  # time rebuild-points on the year, last (stops points)
SEED = 2026

FIRST = ("Ana", "Ben", "Chloe", "Dev", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kemal", "Lena", "Mateo",
         "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen", "Yara", "Zoe")
LAST = ("Andersen", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ivanova", "Jensen", "Kowalski",
        "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Varga", "Weber", "Yilmaz")
SUPPORT_DEPARTMENTS = ("presales", "pricing", "legal", "order_desk", "marketing", "product", "customer_service")
KIND_OF = {"presales": "presales_technical", "pricing": "pricing", "legal": "legal_review", "order_desk": "order_entry",
           "marketing": "marketing", "product": "customization", "customer_service": "post_sale_service"}
GESTURES = ("thanks", "coffee", "lunch", "flowers", "high_five")
VALUES = ("customer_first", "teamwork", "ownership", "speed", "integrity")
OUTCOMES_CYCLE = ("won", "lost", "no_decision", "won", "not_applicable")

# The portal reads, through the gateway. Each takes (person, context) and returns (query, variables).
READS: dict[str, Callable[[dict, dict], tuple[str, dict]]] = {
    "kudosFeed_company": lambda p, c: (
        "{ kudosFeed(first: 20) { totalCount edges { node { message giver { name } recipients { name } } } } }", {}),
    "kudosFeed_person": lambda p, c: (
        "query($p: ID) { kudosFeed(personId: $p, direction: RECEIVED, first: 20) { totalCount edges { node { message giver { name } } } } }",
        {"p": p["id"]}),
    "requests_department_open": lambda p, c: (
        "query($d: Department) { requests(filter: {department: $d, open: true}, first: 20) "
        "{ totalCount edges { node { number title status neededBy requester { name } } } } }",
        {"d": c["department"].upper()}),
    "my_requests": lambda p, c: (
        "query($r: ID) { requests(filter: {requesterId: $r}, first: 20) { totalCount edges { node { number title status } } } }",
        {"r": p["id"]}),
    "request_with_timeline": lambda p, c: (
        "query($id: ID!) { request(id: $id) { number status requester { name } assignees { name } "
        "timeline { at type text actor { name } } } }", {"id": c["request_id"]}),
    "people_search": lambda p, c: (
        "query($s: String) { people(search: $s, first: 20) { totalCount edges { node { name email department } } } }",
        {"s": c["search"]}),
    "me": lambda p, c: (
        "{ me { name points(period: WEEK) rank(period: WEEK) monthPoints: points(period: MONTH) "
        "badges { name earned progress } kudosAllowance { left } rushShare { share } } }", {}),
    "leaderboard_with_me": lambda p, c: (
        "{ leaderboard(period: WEEK) { totalCount entries { rank points movement person { name } } me { rank points } } }", {}),
    # The portal's insights page (services/gateway/static/portal/pages/insights.js), this month:
    # a manager for their team, an admin for everyone (every person's document of the period).
    "insights_manager": lambda p, c: (INSIGHTS_QUERY, {"p": "MONTH"}),
    "insights_admin": lambda p, c: (INSIGHTS_QUERY, {"p": "MONTH"}),
}
INSIGHTS_QUERY = (  # the page's first view: 50 reps and 50 people nobody thanked, with the counts
    "query($p: Period!, $d: Department) { insights(period: $p, department: $d) { period key "
    "departments { department requestsReceived acknowledged delivered ackMedianHours ackP90Hours deliverMedianHours "
    "deliverP90Hours onTimeShare rushShare rushShortNoticeShare infoLoopsPerRequest closedLoopShare } "
    "reps { person { id name } score requests rushShare completeBriefShare dealUpdates weeksWithDealUpdate } "
    "repsCount repsPageInfo { hasNextPage endCursor } "
    "recognition { people gaveShare receivedShare kudosPerPerson topValues { value count } "
    "unrecognized { id name title department } unrecognizedCount unrecognizedPageInfo { hasNextPage endCursor } } } }")
# The reads whose page is fuller at year size (20 items) than at demo size (1-6), once more with
# a page of 3 at both sizes: what the history costs, apart from what a fuller page costs.
for _name in ("kudosFeed_person", "requests_department_open", "my_requests"):
    READS[f"{_name}_page3"] = (lambda build: lambda p, c: (build(p, c)[0].replace("first: 20", "first: 3"), build(p, c)[1]))(READS[_name])
# A manager's insights likewise: their team is 19 at year size and ~9 in the demo, so the first
# view lists twice the reps and people; with 3 of each at both sizes, what history costs.
READS["insights_manager_page3"] = lambda p, c: (
    INSIGHTS_QUERY.replace("insights(period: $p, department: $d)", "insights(period: $p, department: $d, repsFirst: 3, unrecognizedFirst: 3)"),
    {"p": "MONTH"})
# The same manager at both sizes: a demo-company manager, whose team and answer the year does not
# change (its 2,000 people have managers of their own), so the ratio is the cost of the year's
# history and company beside it, nothing else. And an admin's with pages of 3: their answer at
# year size otherwise lists 50 of 2,000 reps and people against the demo's few.
READS["insights_same_team"] = READS["insights_manager"]
READS["insights_admin_page3"] = READS["insights_manager_page3"]
# All time as well: this month (the page's first view) holds what happened since the 1st, so on
# the 1st of a month it holds a few hours at either size, and its cost depends on the date; all
# time holds the whole history (the year at year size), whatever the date: the most a read sums.
for _name in [n for n in READS if n.startswith("insights_")]:
    READS[f"{_name}_all"] = (lambda build: lambda p, c: (build(p, c)[0], {**build(p, c)[1], "p": "ALL"}))(READS[_name])
# Which role a read is made as (a support person reads their department's queue; a manager with
# reports reads their team's insights).
READ_ROLE = {"requests_department_open": "support", "my_requests": "rep", "me": "rep",
             "requests_department_open_page3": "support", "my_requests_page3": "rep",
             "insights_manager": "team_manager", "insights_manager_page3": "team_manager", "insights_admin": "admin",
             "insights_same_team": "demo_team_manager", "insights_admin_page3": "admin"}


READ_ROLE.update({f"{name}_all": role for name, role in READ_ROLE.items() if name.startswith("insights_")})


def _time_in_year(rng: random.Random, now: datetime, days: float = 365) -> datetime:
    """A moment in the past ``days`` (weekdays, 8:00-17:00 UTC), at least a day before now."""
    while True:
        at = now - timedelta(days=1 + rng.random() * (days - 1))
        at = at.replace(hour=8 + rng.randrange(9), minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)
        if at.weekday() < 5 and at < now - timedelta(hours=20):
            return at


def people_rows(n: int) -> list[dict]:
    """A company of ``n``: about half reps (sales), 45 % support across the other departments,
    5 % managers (each department has some), each managing the 19 people after them (a manager
    reports to nobody), each with a name from a small pool (search hits)."""
    rows = []
    for i in range(n):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]} {i}"
        if i % 20 == 0:
            role, department = "manager", ("sales",) + SUPPORT_DEPARTMENTS
            department = department[(i // 20) % len(department)]
        elif i % 20 <= 10:
            role, department = "rep", "sales"
        else:
            role, department = "support", SUPPORT_DEPARTMENTS[i % len(SUPPORT_DEPARTMENTS)]
        manager = "" if i % 20 == 0 else f"year{i - i % 20}@example.com"
        rows.append({"email": f"year{i}@example.com", "name": name, "role": role, "department": department,
                     "manager_email": manager})
    return rows


def people_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "role", "department", "title", "manager_email", "active"])
    for r in rows:
        writer.writerow([r["email"], r["name"], r["role"], r["department"], "", r.get("manager_email", ""), "true"])
    return out.getvalue()


def kudos_csv(rows: list[dict], n: int, now: datetime, rng: random.Random) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["created_at", "giver_email", "recipient_emails", "message", "gesture", "values"])
    emails = [r["email"] for r in rows]
    stamps = sorted(_time_in_year(rng, now) for _ in range(n))
    for i, at in enumerate(stamps):
        giver = rng.choice(emails)
        recipients = {rng.choice(emails) for _ in range(1 if i % 5 else 2)} - {giver}
        if not recipients:
            recipients = {emails[(emails.index(giver) + 1) % len(emails)]}
        writer.writerow([at.isoformat(), giver, ";".join(sorted(recipients)), f"Thanks for the help with deal {i}, much appreciated!",
                         GESTURES[i % len(GESTURES)], VALUES[i % len(VALUES)] if i % 3 else ""])
    return out.getvalue()


def requests_csv(people: list[dict], n: int, now: datetime, rng: random.Random) -> str:
    """``n`` request lifecycles dated over the past year, as an ``import-requests`` file: each
    submitted by a rep to a department, worked by one of its support people (acknowledge,
    start, sometimes a question and its answer or a deal update, deliver, close with outcomes
    in turn); ~3 % cancelled after acknowledging; 1 % in the last few days, left open at some
    stage. Steps that would fall after ``now`` are left out (the request stays open there)."""
    reps = [p for p in people if p["role"] == "rep"]
    support: dict[str, list[dict]] = {}
    for p in people:
        if p["role"] == "support":
            support.setdefault(p["department"], []).append(p)
    departments = [d for d in SUPPORT_DEPARTMENTS if support.get(d)]
    rows = []
    for i in range(n):
        department = departments[i % len(departments)]
        recent = i % 100 == 0  # 1 %: in the last few days, left open at some stage
        at = now - timedelta(hours=2 + rng.random() * 70) if recent else _time_in_year(rng, now)
        rows.append(_lifecycle(i, at, department, rng.choice(reps), rng.choice(support[department]),
                               (i // 100) % 4 if recent else None, now))
    rows.sort(key=lambda r: r["submitted_at"])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REQUEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})
    return out.getvalue()


REQUEST_COLUMNS = ("submitted_at", "requester_email", "kind", "title", "details", "customer", "needed_by", "deal_name",
                   "deal_value", "commitment", "priority", "rush_reason", "assignee_emails", "acknowledged_at",
                   "started_at", "info_requested_at", "info_question", "info_answered_at", "info_answer",
                   "deal_update_at", "deal_update", "delivered_at", "closed_at", "outcome", "cancelled_at",
                   "cancel_reason")


def _lifecycle(i: int, at: datetime, department: str, rep: dict, worker: dict, stop: int | None, now: datetime) -> dict:
    """One row: the brief, then the steps up to ``stop`` (0 submitted, 1 acknowledged, 2 in
    progress, 3 delivered; None: to the end), each a fixed time after submission."""
    priority = ("normal", "normal", "high", "rush")[i % 4]
    rush = priority == "rush"
    row = {"submitted_at": at, "requester_email": rep["email"], "kind": KIND_OF[department],
           "title": f"Deal {i}: {department} help", "customer": f"Customer {i % 300}", "deal_name": f"Deal {i}",
           "details": f"Customer {i % 300} needs {department} support on a renewal; volumes, terms and timing are in "
                      f"the CRM notes, decision expected next week.",
           "deal_value": 1000.0 * (1 + i % 50), "priority": priority,
           "rush_reason": "the customer decides tomorrow" if rush else "",
           "needed_by": at + timedelta(days=1 if rush else 4)}
    steps: list[tuple[int, float, dict]] = []  # (stage it belongs to, minutes after submission, cells)
    steps.append((1, 30, {"assignee_emails": worker["email"], "acknowledged_at": None}))
    if i % 33 == 7:
        steps.append((1, 40, {"cancelled_at": None, "cancel_reason": "the customer went another way"}))
    else:
        steps.append((2, 60, {"started_at": None}))
        if i % 10 == 0:
            steps.append((2, 90, {"info_requested_at": None, "info_question": "Which volumes should the quote assume?"}))
            steps.append((2, 150, {"info_answered_at": None, "info_answer": "Volumes as in the CRM note: 500 seats."}))
        if i % 6 == 0:
            steps.append((2, 200, {"deal_update_at": None, "deal_update": "Customer call went well, waiting on legal."}))
        steps.append((3, 300 if rush else 60 * 20, {"delivered_at": None}))
        steps.append((4, 400 if rush else 60 * 26, {"closed_at": None, "outcome": OUTCOMES_CYCLE[i % len(OUTCOMES_CYCLE)]}))
    for stage, minutes, cells in steps:
        when = at + timedelta(minutes=minutes)
        if (stop is not None and stage > stop) or when > now:
            break  # left open here
        row.update({k: when if v is None else v for k, v in cells.items()})
    return row


# -- measuring ----------------------------------------------------------------------------------

def with_children(pid: int) -> list[int]:
    """The process and its children (the gateway's gunicorn worker, which runs its live readers,
    is a child of the master the supervisor started)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return [pid, *kids]


class CpuMeter:
    """CPU seconds of each process (and its children) since the last :meth:`lap`: where the
    load's and the scoring's time goes (two cores: a process at one core is the limit)."""

    def __init__(self, pids: dict[str, int]):
        self.groups = {name: with_children(pid) for name, pid in pids.items()}
        self.last, self.at = self._now(), time.perf_counter()

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in group if Path(f"/proc/{p}").exists()) for name, group in self.groups.items()}

    def lap(self, digits: int = 1) -> dict[str, float]:
        """Each process's CPU since the last lap, in % of one core, and the lap's seconds."""
        now, at = self._now(), time.perf_counter()
        wall = at - self.at
        used = {name: round(100 * (now[name] - self.last[name]) / wall, digits) for name in now}
        self.last, self.at = now, at
        return {**used, "seconds": round(wall, 1)}


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each service's CPU (its process and children) over ``seconds`` of no traffic, in % of one core."""
    meter = CpuMeter(pids)
    time.sleep(seconds)
    used = meter.lap(digits=2)
    used.pop("seconds")
    return used


def time_reads(gateway_url: str, token_for: Callable[[dict], str], actors: dict[str, list[dict]], contexts: list[dict],
               samples: int, pct) -> dict[str, dict]:
    """p50/p95 of each portal read through the gateway, sequential, with varied actors and
    arguments; every answer is checked (HTTP 200, data, no GraphQL errors).

    The reads take turns (one of each kind, then the next round), so something else the machine
    does for a moment (a timer, a relay's poll, a collection) falls on every kind alike, not on
    a run of one kind."""
    session = http.Session()
    kinds = {name: {"latencies": [], "errors": 0, "first_error": None, "items": []} for name in READS}
    for i in range(samples + 3):
        for name, build in READS.items():
            pool = actors[READ_ROLE.get(name, "any")]
            if not pool or not contexts:
                continue  # nobody to read as (no demo company)
            kind = kinds[name]
            person = pool[(i * 7919) % len(pool)]
            context = contexts[i % len(contexts)]
            if name.startswith("requests_department_open"):
                context = {**context, "department": person["department"]}
            if name == "request_with_timeline" and context.get("requester"):
                person = context["requester"]  # a request exists only for who may see it (docs/security.md)
            query, variables = build(person, context)
            t = time.perf_counter()
            try:
                response = session.post(gateway_url + "/graphql", json={"query": query, "variables": variables},
                                         headers={"Authorization": f"Bearer {token_for(person)}"}, timeout=30)
                elapsed = (time.perf_counter() - t) * 1000
                body = response.json() if response.status_code == 200 else {}
                ok = response.status_code == 200 and not body.get("errors") and body.get("data") and all(
                    v is not None for v in body["data"].values())
                problem = None if ok else f"{response.status_code} {str(body.get('errors') or response.text)[:200]}"
            except (http.RequestException, ValueError) as exc:
                elapsed, problem, body = (time.perf_counter() - t) * 1000, repr(exc), {}
            if i < 3:
                continue  # warm-up: connections, parsed-query caches
            kind["latencies"].append(elapsed)
            kind["items"].append(_items(body.get("data")) if not problem else 0)
            if problem:
                kind["errors"] += 1
                kind["first_error"] = kind["first_error"] or problem
    results = {}
    for name, kind in kinds.items():
        latencies, items = kind["latencies"], kind["items"]
        if not latencies:
            results[name] = {"p50_ms": None, "p95_ms": None, "n": 0, "errors": 0}
            continue
        # How much an answer held (list elements, nested ones too): a person's page at demo size
        # holds their few items, at year size a full page of 20, and its cost is per item.
        results[name] = {"p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95), "n": len(latencies),
                         "errors": kind["errors"], "items_mean": round(sum(items) / len(items), 1),
                         "loadavg_1m": round(os.getloadavg()[0], 1),  # the machine is shared: how busy it was
                         **({"first_error": kind["first_error"]} if kind["first_error"] else {})}
    return results


def _items(value) -> int:
    """The list elements in a GraphQL answer, nested ones too."""
    if isinstance(value, list):
        return len(value) + sum(_items(v) for v in value)
    if isinstance(value, dict):
        return sum(_items(v) for v in value.values())
    return 0


def _actors(settings) -> tuple[dict[str, list[dict]], list[dict]]:
    """People to read as (by role), and contexts: a rep, a request id, a search word."""
    import mongoengine

    from shared.db import connect

    connect(settings, "requests", alias="bench-year-actors")
    db = mongoengine.get_db("bench-year-actors")
    # Bench-side reads, once per size (not timed): who to act as, which requests to open.
    people = [{"id": d["_id"], "email": d["email"], "role": d["role"], "department": d["department"],
               "manager_id": d.get("manager_id")}
              for d in db["people"].find({"active": True}, {"email": 1, "role": 1, "department": 1, "manager_id": 1})]
    recent = [(d["_id"], d.get("requester_id")) for d in db["requests"].find({}, {"_id": 1, "requester_id": 1}).limit(2000)]
    mongoengine.disconnect("bench-year-actors")
    rng = random.Random(SEED)
    managers = {p["manager_id"] for p in people if p.get("manager_id")}
    by_role = {"any": [p for p in people if p["role"] != "admin"], "rep": [p for p in people if p["role"] == "rep"],
               "support": [p for p in people if p["role"] == "support"], "admin": [p for p in people if p["role"] == "admin"],
               "team_manager": [p for p in people if p["id"] in managers],
               "demo_team_manager": [p for p in people if p["id"] in managers and not p["email"].startswith("year")]}
    searches = ["ana", "berg", "okafor", "pia", "sven", "weber", "novak", "rosa", "mateo", "year1"]
    if not by_role["rep"]:
        return by_role, []
    by_id = {p["id"]: p for p in people}
    contexts = []
    for i in range(50):
        rep = rng.choice(by_role["rep"])  # drawn in the same order as before
        request_id, requester_id = rng.choice(recent) if recent else ("none", None)
        contexts.append({"rep": rep, "request_id": request_id, "requester": by_id.get(requester_id),
                         "search": searches[i % len(searches)], "department": "pricing"})
    return by_role, contexts


def wait_insights(settings, timeout: float) -> float:
    """Seconds until the insights read model (the points process's own group) has caught up
    too: the reads and the idle figures are taken with nothing left to do."""
    from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS
    from shared.bus.kafka import consumer_lag

    t = time.perf_counter()
    deadline = t + timeout
    while consumer_lag(settings, {INSIGHTS_GROUP: INSIGHTS_TOPICS}) != 0:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"insights still catching up after {timeout:.0f} s")
        time.sleep(1)
    return time.perf_counter() - t


def wait_scored(settings, timeout: float) -> float:
    """Seconds until the points process has nothing left (lag 0 several checks in a row)."""
    from ops.demo.loader import wait_for_points

    t = time.perf_counter()
    if not wait_for_points(settings, timeout=timeout, quiet_checks=5):
        raise TimeoutError(f"points still scoring after {timeout:.0f} s")
    return time.perf_counter() - t - 4  # the quiet checks after the last message


def run(settings, record, pct, rss_mb, ports: dict) -> None:
    from services.gateway.auth import issue_token
    from services.gateway.config import GatewaySettings
    from services.requests.importer import import_through_service
    from shared.auth import internal_headers
    from shared.bus.kafka import ensure_topics
    from shared.config import load_settings
    from shared.csvimport import send_file
    from ops.demo.start import load_demo_company, prepare_first_start
    from ops.infra import local
    from ops.supervisor import Supervisor

    # The ports the services run on: bench/run.py's defaults unless INSIDETRACK_<NAME>_PORT moved
    # them (a second bench beside another), so the calls below reach this bench's services.
    ports = {name: int(os.environ.get(f"INSIDETRACK_{name}_PORT", port)) for name, port in ports.items()}
    gs = load_settings(GatewaySettings)
    tokens: dict[str, str] = {}

    def token_for(person: dict) -> str:
        if person["id"] not in tokens:
            tokens[person["id"]] = issue_token(gs, person["id"], person["email"], person["role"])
        return tokens[person["id"]]

    local.down(settings)
    if LOAD:
        local.wipe(settings)
        for path in (settings.var_dir / "demo" / "state.json", settings.var_dir / "demo" / "clock.json"):
            path.unlink(missing_ok=True)
    local.up(settings)
    ensure_topics(settings)
    env = prepare_first_start(settings) if DEMO and LOAD else {}
    services = Supervisor(settings, env=env)
    requests_url = f"http://127.0.0.1:{ports['REQUESTS']}"
    gateway_url = f"http://127.0.0.1:{ports['GATEWAY']}"
    try:
        services.start_all(timeout=180)
        admin = http.post(requests_url + "/people/admin", headers=internal_headers(settings.internal_token, None), timeout=30).json()
        if not LOAD:
            return _measure_existing(settings, services, gateway_url, token_for, record, pct, rss_mb)
        if DEMO:
            t = time.perf_counter()
            info = load_demo_company(settings, gateway_url, token_for(admin), token_for, say=lambda line: print("   ", line, flush=True),
                                     between=lambda: None, stop=lambda: False)
            record("year_demo_load", seconds=round(time.perf_counter() - t), **{k: info.get(k) for k in ("people", "requests", "kudos")})
        # As at year size: nothing left to score or to fold into insights while the reads are timed.
        wait_scored(settings, timeout=600)
        wait_insights(settings, timeout=600)
        actors, contexts = _actors(settings)
        demo_reads = time_reads(gateway_url, token_for, actors, contexts, SAMPLES, pct)
        for name, figures in demo_reads.items():
            record(f"year_read_demo_{name}", **figures)

        # -- the year --------------------------------------------------------------------------
        rng = random.Random(SEED)
        now = datetime.now(timezone.utc)
        rows = people_rows(PEOPLE)
        meter = CpuMeter(stack_pids(settings, services))
        started = time.perf_counter()
        t = time.perf_counter()
        _, report = import_through_service(requests_url, settings.internal_token, people_csv(rows))
        people_s = time.perf_counter() - t
        if report["errors"]:
            raise RuntimeError(f"import-people refused rows: {report['errors'][:3]}")
        with_ids = _people_ids(settings, rows)
        # The recognition processes learn the people from the people topic before their kudos.
        _wait_known(settings, ports, admin, with_ids)
        t = time.perf_counter()
        text = kudos_csv(rows, KUDOS, now, rng)
        kudos_report = send_file(f"http://127.0.0.1:{ports['KUDOS']}", "/kudos/import", internal_headers(settings.internal_token, None), text,
                                 settings_admin_email(), say=lambda line: None)
        kudos_s = time.perf_counter() - t
        text = requests_csv(with_ids, REQUESTS, now, rng)
        published_before = _topic_end(settings, "requests")
        t = time.perf_counter()
        requests_report = send_file(requests_url, "/requests/import", internal_headers(settings.internal_token, None), text,
                                    settings_admin_email(),
                                    say=lambda line: print(f"    {time.perf_counter() - t:6.1f} s  {line}", flush=True))
        requests_s = time.perf_counter() - t
        _wait_published(settings, published_before + requests_report["events"])
        published_s = time.perf_counter() - t
        load_s = time.perf_counter() - started
        record("year_load_cpu_percent", **meter.lap(), note="each process's CPU over the load, % of one core")
        record("year_load", people=PEOPLE, kudos=KUDOS, requests=REQUESTS, people_import_s=round(people_s, 1),
               kudos_import_s=round(kudos_s, 1), kudos_imported=kudos_report["imported"], kudos_rejected=kudos_report["rejected"],
               requests_import_s=round(requests_s, 1), requests_published_s=round(published_s, 1),
               requests_imported=requests_report["imported"], requests_rejected=requests_report["rejected"],
               request_events=requests_report["events"],
               load_s=round(load_s, 1), loadavg_1m=round(os.getloadavg()[0], 1),
               requests_driver="import-requests (POST /requests/import in parts)")
        if requests_report["errors"]:
            print("    refused, e.g.:", *[f"line {e['line']}: {e['code']}: {e['message']}" for e in requests_report["errors"][:5]],
                  sep="\n      ")
        scoring_s = wait_scored(settings, timeout=3600)
        record("year_scoring_cpu_percent", **meter.lap(), note="each process's CPU from the load's end to scored, % of one core")
        insights_s = wait_insights(settings, timeout=3600)
        record("year_scoring", scoring_after_load_s=round(scoring_s, 1), load_and_scoring_s=round(load_s + scoring_s, 1),
               insights_after_scoring_s=round(insights_s, 1), target="load + scoring <= 600 s")

        _measure_year(settings, services, gateway_url, token_for, demo_reads, record, pct, rss_mb)
    finally:
        services.stop_all()
        local.down(settings)


def _topic_end(settings, topic: str) -> int:
    """Events on ``topic`` so far (the sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, client_id="bench-year-offsets")
    try:
        name = settings.topic(topic)
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _wait_published(settings, events: int, timeout: float = 3600) -> None:
    """Until the requests topic holds ``events`` (the requests service's relay has published
    what the import stored; read from Kafka's offsets, no scan of the requests)."""
    deadline = time.monotonic() + timeout
    while _topic_end(settings, "requests") < events:
        if time.monotonic() > deadline:
            raise TimeoutError(f"requests still unpublished after {timeout:.0f} s")
        time.sleep(1)


def settings_admin_email() -> str:
    from services.requests.config import RequestsSettings
    from shared.config import load_settings

    return load_settings(RequestsSettings).admin_email


def _people_ids(settings, rows: list[dict]) -> list[dict]:
    """The imported people with their ids (the requests service's directory, by email)."""
    import mongoengine

    from shared.db import connect

    connect(settings, "requests", alias="bench-year-ids")
    db = mongoengine.get_db("bench-year-ids")
    by_email = {d["email"]: d["_id"] for d in db["people"].find({"email": {"$regex": "^year"}}, {"email": 1})}  # bench-side, once
    mongoengine.disconnect("bench-year-ids")
    return [{**r, "id": by_email[r["email"]]} for r in rows]


def _wait_known(settings, ports: dict, admin: dict, people: list[dict], timeout: float = 300) -> None:
    """Until the kudos and points services know the last imported person (their directory copies)."""
    last = people[-1]["id"]
    headers = internal_headers_for(settings, last)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kudos = http.get(f"http://127.0.0.1:{ports['KUDOS']}/allowance/{last}", headers=headers, timeout=10)
        points = http.get(f"http://127.0.0.1:{ports['POINTS']}/people/{last}/summary", headers=headers, timeout=10)
        if kudos.status_code == 200 and points.status_code == 200:
            return
        time.sleep(0.5)
    raise TimeoutError("the recognition services did not learn the imported people")


def internal_headers_for(settings, actor_id: str) -> dict:
    from shared.auth import internal_headers

    return internal_headers(settings.internal_token, actor_id)


def _measure_year(settings, services, gateway_url, token_for, demo_reads: dict, record, pct, rss_mb) -> None:
    actors, contexts = _actors(settings)
    year_reads = time_reads(gateway_url, token_for, actors, contexts, SAMPLES, pct)
    for name, figures in year_reads.items():
        demo_p95 = (demo_reads.get(name) or {}).get("p95_ms")
        record(f"year_read_{name}", **figures, demo_p95_ms=demo_p95,
               ratio_to_demo=round(figures["p95_ms"] / demo_p95, 2) if demo_p95 and figures["p95_ms"] else None,
               target="same page size as at demo size: not a target, what history costs" if "_page3" in name
               else "same people as at demo size: p95 <= 1.5x demo p95 (what history costs)"
               if name.startswith("insights_same_team") else "p95 <= 50 ms and <= 1.5x demo p95")
    time.sleep(5)
    idle = idle_cpu(stack_pids(settings, services), IDLE_S)
    quiet_total = round(sum(v for k, v in idle.items() if k != "kafka"), 2)
    record("year_idle_cpu_percent", **idle, ferretdb_and_services=quiet_total, seconds=IDLE_S,
           target="FerretDB + all services <= 5 % of one core")
    record("year_rss_mb", **{p.spec.name: max(rss_mb(pid) for pid in with_children(p.proc.pid)) for p in services.processes},
           **{f"{p.spec.name}_peak": max(rss_mb(pid, "VmHWM") for pid in with_children(p.proc.pid)) for p in services.processes},
           target="each service's largest process <= 150 MB (now, after the year; _peak: the largest it was, loading it)")
    if REBUILD:
        _measure_rebuild(services, record, rss_mb)


def _measure_rebuild(services, record, rss_mb) -> None:
    """`insidetrack rebuild-points` on the year: the points process stopped, every source event
    re-scored into fresh collections and swapped in (what a rules change costs)."""
    from services.recognition.directory import Directory, DirectoryPersonDoc
    from services.recognition.points.config import PointsSettings
    from services.recognition.points.rebuild import rebuild
    from services.recognition.points.rules import load_rules
    from shared.config import load_settings
    from shared.db import connect, disconnect

    points = next(p for p in services.processes if p.spec.name == "points")
    others = [p for p in services.processes if p.spec.module == points.spec.module and p is not points]  # points-score
    for process in (points, *others):
        process.stop()
    ps = load_settings(PointsSettings)
    db = connect(ps, "points")
    try:
        DirectoryPersonDoc.ensure_indexes()
        t = time.perf_counter()
        report = rebuild(ps, db, load_rules(ps.rules_file), Directory())
        record("year_rebuild_points", seconds=round(time.perf_counter() - t, 1), events=report.events, awards=report.awards,
               people_in_state=len(report.state), loadavg_1m=round(os.getloadavg()[0], 1), target="<= 120 s")
    finally:
        disconnect()
    # The points process started again on the rebuilt year: ready once it has read its state
    # (the points-state changelog) and the directory back (its /readyz), then its RSS.
    t = time.perf_counter()
    points.start()
    while not points.ready():
        if time.perf_counter() - t > 300:
            raise TimeoutError("the points process did not become ready after the rebuild")
        time.sleep(0.1)
    for process in others:
        process.start()
    record("year_points_restore", seconds_to_ready=round(time.perf_counter() - t, 1), rss_mb=rss_mb(points.proc.pid),
           target="<= 10 s; RSS <= 150 MB")


def _measure_existing(settings, services, gateway_url, token_for, record, pct, rss_mb) -> None:
    """BENCH_YEAR_LOAD=0: the stack on var/bench as it is; whatever is still unscored first."""
    import json
    from pathlib import Path

    import mongoengine

    from shared.db import connect

    demo_reads = {}
    if os.environ.get("BENCH_YEAR_DEMO_RESULTS"):
        earlier = json.loads(Path(os.environ["BENCH_YEAR_DEMO_RESULTS"]).read_text())["measurements"]
        demo_reads = {k.removeprefix("year_read_demo_"): v for k, v in earlier.items() if k.startswith("year_read_demo_")}
    connect(settings, "requests", alias="bench-year-size")
    db = mongoengine.get_db("bench-year-size")
    number = (db["counters"].find_one({"_id": "requests"}) or {}).get("seq")
    mongoengine.disconnect("bench-year-size")
    from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS
    from shared.bus.kafka import consumer_lag

    insights_behind = consumer_lag(settings, {INSIGHTS_GROUP: INSIGHTS_TOPICS})
    t = time.perf_counter()
    scoring_s = wait_scored(settings, timeout=3600)
    wait_insights(settings, timeout=3600)
    elapsed = time.perf_counter() - t
    record("year_existing", requests_numbered=number, scoring_left_s=round(scoring_s, 1),
           start_to_scored_s=round(elapsed, 1), insights_behind_at_start=insights_behind,
           insights_caught_up_after_s=round(elapsed, 1),
           insights_events_per_min=round(insights_behind / elapsed * 60) if insights_behind and elapsed else None)
    _measure_year(settings, services, gateway_url, token_for, demo_reads, record, pct, rss_mb)
