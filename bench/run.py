"""Inside Track benchmarks: `make bench` (not tests: they print figures and write a JSON file).

Starts its own stack (Kafka, FerretDB and the four services on bench ports, data in
var/bench), measures, stops it. Figures are medians of repeated runs where the measurement is
short; ratios are measured in the same run. The quick run (default) scores 2k events and a
1k-people board; BENCH_SCALE=full adds 10k and 100k events and 10k/100k-people boards (long).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL = os.environ.get("BENCH_SCALE") == "full"
PORTS = {"KAFKA": 29092, "KAFKA_CONTROLLER": 29093, "MONGO": 27019, "GATEWAY": 28000, "REQUESTS": 28001,
         "KUDOS": 28002, "POINTS": 28003, "NOTIFICATIONS": 28004, "POINTS_SCORE": 28005}
# "leaderboard": only the leaderboard-at-scale part (FerretDB alone); "ferretdb": only inserts against
# updates and a 2,000-person board (map against string) timed directly on FerretDB; "pipeline": only the points
# pipeline against its raw limit (BENCH_EVENTS=10000,100000 sets the sizes); "live": only the
# running system's kudos->screen latency, gateway overhead and memory; "year": a company-year
# through the services' own paths, portal reads at demo and year size, idle CPU (bench/year.py);
# "scoring": the points engine on a year of kudos history in-process, FerretDB time per collection
# (bench/scoring.py); "requests-import": the requests import in-process, its stages and FerretDB time per
# collection (bench/requests_import.py); "cards": only the card renders (no stack).
ONLY = os.environ.get("BENCH_ONLY")
# Points processes sharing the pipeline's work: the stack's two (points applies, points-score
# scores and keeps insights: ops/supervisor.py) and BENCH_POINTS_PROCESSES - 1 more beside them, each running every stage.
POINTS_PROCESSES = int(os.environ.get("BENCH_POINTS_PROCESSES", "1"))
for _name, _port in PORTS.items():  # ports and data folder may be overridden (a second bench beside another)
    os.environ.setdefault(f"INSIDETRACK_{_name}_PORT", str(_port))
PORTS = {_name: int(os.environ[f"INSIDETRACK_{_name}_PORT"]) for _name in PORTS}  # what the stack runs on
os.environ.setdefault("INSIDETRACK_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.update({
    "INSIDETRACK_LOG_LEVEL": "WARNING",
    # A fresh prefix per run; BENCH_NAME_PREFIX reuses a run's databases and topics (BENCH_YEAR_LOAD=0).
    "INSIDETRACK_NAME_PREFIX": os.environ.get("BENCH_NAME_PREFIX") or f"b{uuid.uuid4().hex[:6]}_",
    "INSIDETRACK_MONTHLY_ALLOWANCE": "1000",
    "INSIDETRACK_WEEKLY_CAP_PER_RECIPIENT": "100", "INSIDETRACK_RATE_LIMIT_PER_MINUTE": "100000",
})
sys.path.insert(0, str(ROOT))

import requests as http  # noqa: E402
# bench/, the script's own folder, is on the path: its modules import as they are (floor, year, ...).
from inprocess import cpu_seconds, stack_pids  # noqa: E402

from ops.infra import local  # noqa: E402
from ops.supervisor import SERVICES, Supervisor  # noqa: E402
from services.gateway.auth import issue_token  # noqa: E402
from services.gateway.config import GatewaySettings  # noqa: E402
from services.recognition.points.app import POINTS_GROUPS  # noqa: E402
from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS  # noqa: E402
from shared.bus.kafka import EventProducer, ensure_topics, group_lags  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import mongo_client  # noqa: E402
from shared.events import build_event  # noqa: E402

RESULTS: dict = {"measurements": {}}


def pct(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 2) if values else None


def record(name: str, **figures) -> None:
    RESULTS["measurements"][name] = figures
    print(f"  {name:<36} " + "  ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident size now (``VmHWM``: the largest it has been since it started)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# -- cards (no stack) ------------------------------------------------------------------------------

CARD_KINDS = {  # (giver, recipients, message): a typical card, and cards in the scripts of issue 23
    "latin": ("Pía Novák", ("Rita Okafor",), "Thanks for turning the Acme pricing around in a day!"),
    "cjk_arabic_emoji": ("李小龍 Li", ("فاطمة الزهراء",), "🎉 شكراً! 谢谢你 for the contract review 🙏☕"),
    "thai_devanagari_korean": ("สมชาย ใจดี", ("अनन्या शर्मा", "김민준"), "ขอบคุณมากครับ धन्यवाद 감사합니다 👍🏽"),
}


def bench_cards() -> None:
    """Card renders in this process (fonts loaded), per kind: cold (not on disk) and cached
    (CardStore from disk); and the first card of a new process (fonts opened, cmaps read)."""
    import tempfile

    from services.recognition.kudos import cards

    for kind, (giver, recipients, message) in CARD_KINDS.items():
        card = cards.CardData(giver, recipients, message, ("speed", "customer_first"), "coffee", "27 November 2026")
        cards.render_card(card)  # the faces this kind needs, opened once per process
        cold, cold_cpu = [], []
        for i in range(20):
            variant = cards.CardData(card.giver_name, card.recipient_names, f"{card.message} #{i}", card.values,
                                     card.gesture, card.date)
            t, c = time.perf_counter(), time.process_time()
            png = cards.render_card(variant)
            cold.append((time.perf_counter() - t) * 1000)
            cold_cpu.append((time.process_time() - c) * 1000)
        with tempfile.TemporaryDirectory() as folder:
            store = cards.CardStore(Path(folder))
            store.get("k1", card)
            cached = []
            for _ in range(200):
                t = time.perf_counter()
                store.get("k1", card)
                cached.append((time.perf_counter() - t) * 1000)
        record(f"cards_{kind}", cold_ms_p50=pct(cold, 50), cold_cpu_ms_p50=pct(cold_cpu, 50), cold_ms_min=pct(cold, 0),
               cached_ms_p50=pct(cached, 50), png_kb=round(len(png) / 1024, 1), target="cold <= 40 ms, cached <= 2 ms")
    first = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); from services.recognition.kudos import cards; "
         f"g, r, m = {CARD_KINDS['cjk_arabic_emoji']!r}; "
         "cards.render_card(cards.CardData(g, r, m, (), 'thanks', '1 December 2026')); "
         "print((time.perf_counter() - t) * 1000)"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    record("cards_first_in_a_new_process", ms=round(float(first.stdout.strip()), 1),
           note="imports, font files opened, cmaps read (CJK: 45k characters); once per process")


# -- FerretDB itself: the cost of the operations the pipeline is made of ----------------------------

def bench_ferretdb_ops(settings, docs: int = 5000, seconds: float = 6.0) -> None:
    """Inserts against updates by _id, in bulk commands of 100, timed directly on FerretDB: the
    evidence for what the pipeline can reach on it (docs/performance.md)."""
    from pymongo import UpdateOne

    with mongo_client(settings) as client:
        db = client[settings.database("ferretdb_ops")]
        client.drop_database(db.name)
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 2 or n < docs:
            db.inserted.insert_many([{"v": i, "pad": "x" * 200} for i in range(100)])
            n += 100
        inserts = n / (time.perf_counter() - t)
        db.counters.insert_many([{"_id": f"c{i}", "v": 0, "pad": "x" * 200} for i in range(docs)])
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < seconds:
            db.counters.bulk_write([UpdateOne({"_id": f"c{(n + j) % docs}"}, {"$inc": {"v": 1}}) for j in range(100)])
            n += 100
        updates = n / (time.perf_counter() - t)
        # A board of 2,000 people: its entries as a map of sub-documents (the boards before the
        # fourteenth session) against one JSON string (store.write_board), median of 20 each.
        entries = {f"p{i:05d}": {"p": i % 500 + 1, "d": "pricing", "r": "support"} for i in range(2000)}
        board_ms = {}
        for kind, value in (("map", entries), ("string", json.dumps(entries))):
            db.boards.insert_one({"_id": kind, "v": 0, "e": value})
            timings = {"write": [], "read": [], "one_inc": []}
            for i in range(20):
                c = time.perf_counter()
                db.boards.update_one({"_id": kind, "v": i}, {"$set": {"e": value}, "$inc": {"v": 1}})
                timings["write"].append((time.perf_counter() - c) * 1000)
                c = time.perf_counter()
                db.boards.find_one({"_id": kind})
                timings["read"].append((time.perf_counter() - c) * 1000)
            for i in range(20):
                c = time.perf_counter()
                db.boards.update_one({"_id": kind}, {"$inc": {"n": 1}})
                timings["one_inc"].append((time.perf_counter() - c) * 1000)
            board_ms[kind] = {name: pct(values, 50) for name, values in timings.items()}
        client.drop_database(db.name)
    record("ferretdb_ops", inserts_per_s=round(inserts), updates_by_id_per_s=round(updates),
           update_cost_in_inserts=round(inserts / updates, 1), note="bulk commands of 100, 200-byte documents")
    record("ferretdb_board_2000_people_ms", entries_as_map=board_ms["map"], entries_as_string=board_ms["string"],
           note="whole write, read, a one-field $inc: medians of 20")


# -- leaderboard at scale (direct on the points store) ---------------------------------------------

def bench_leaderboard_scale(settings) -> None:
    """Top-10 and "my rank" at 1k/10k(/100k) people with a year of boards and totals: from the
    ranking read model (after), and from the boards alone (before), medians."""
    from services.recognition.directory import Directory
    from services.recognition.points.store import Store, write_board
    from services.recognition.points.queries import PointsQueries, rankings_collection
    from services.recognition.points.ranking import Ranking
    from services.recognition.points.rules import load_rules
    from shared.calendar import BusinessCalendar, period_key
    from shared.clock import ManualClock
    from shared.db import connect, disconnect

    now = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    calendar = BusinessCalendar.from_settings(settings)
    departments = ["sales", "presales", "pricing", "legal", "order_desk", "marketing", "product", "customer_service"]
    roles = ["rep", "support", "manager"]
    sizes = os.environ.get("BENCH_PEOPLE")  # e.g. "100000": only these sizes
    year = os.environ.get("BENCH_YEAR", "1") != "0"  # 0: only this week's and last week's boards
    # 0: no board documents (a 100k-entry board does not insert within 30 s on a busy machine);
    # the ranking is built from the same entries, and the "before" figures are left out.
    with_boards = os.environ.get("BENCH_BOARDS", "1") != "0"
    for people in ([int(n) for n in sizes.split(",")] if sizes else [1000, 10_000, 100_000] if FULL else [1000]):
        db = connect(settings.model_copy(update={"name_prefix": settings.name_prefix + f"lb{people}_"}), "points")
        store = Store(db)
        store.ensure_indexes()
        ranking = Ranking(rankings_collection(store))
        week = period_key(calendar, "week", now)
        keys = [period_key(calendar, "week", now - timedelta(weeks=w)) for w in range(52)] + [
            period_key(calendar, "month", now - timedelta(days=30 * m)) for m in range(12)] + ["all"]
        keys = list(dict.fromkeys(keys)) if year else keys[:2]
        load, rebuild = 0.0, []
        # A year of boards, their rankings, and the totals of this week and the last (the ones
        # "my rank" and movement read by _id); the other boards make the store realistic.
        for n, key in enumerate(keys):
            entries = {f"p{i}": {"p": (i * 7919 + sum(map(ord, key))) % 500 + 1, "d": departments[i % 8], "r": roles[i % 3]}
                       for i in range(people)}
            t = time.perf_counter()
            if with_boards:
                write_board(store.boards, f"board:{key}", {}, entries, {})
            if n < 2:  # as the applier keeps them: the points state, in memory (state.py)
                store.table.write_totals(key, {pid: (e["p"], e["d"], e["r"]) for pid, e in entries.items()})
            load += time.perf_counter() - t
            t = time.perf_counter()
            ranking.rebuild(key, {"v": 1, "entries": entries})
            rebuild.append((time.perf_counter() - t) * 1000)

        def timed(fn, runs):
            out = []
            for i in range(runs):
                t = time.perf_counter()
                fn(i)
                out.append((time.perf_counter() - t) * 1000)
            return out

        args = (store, load_rules(), calendar, Directory(), ManualClock(now))
        trip = timed(lambda i: store.rankings.find_one({"_id": f"head:{week}"}, {"_id": 1}), 15)  # one read by _id: the floor
        queries = PointsQueries(*args)
        cold = timed(lambda i: PointsQueries(*args).leaderboard("week", first=10), 5)  # movement not remembered yet
        top = timed(lambda i: queries.leaderboard("week", first=10), 15)
        dept = timed(lambda i: queries.leaderboard("week", scope="department", department=departments[i % 8], first=10), 15)
        mine = timed(lambda i: queries.rank_of(week, {}, f"p{i * 7919 % people}"), 15)
        mine_low = timed(lambda i: queries.rank_of(week, {"role": "rep"}, f"p{(i * 3 + 3000) % people}"), 15)
        boards = PointsQueries(*args, ranking=Ranking(db["no_rankings"]))  # before: the boards alone
        runs = (5 if people <= 10_000 else 2) if with_boards else 0
        top_before = timed(lambda i: boards.leaderboard("week", first=10), runs)
        mine_before = timed(lambda i: boards.rank_of(week, {}, f"p{i * 37 % people}"), runs)
        record(f"leaderboard_{people}_people", read_by_id_ms_p50=pct(trip, 50), top10_cold_ms_p50=pct(cold, 50),
               top10_ms_p50=pct(top, 50), top10_department_ms_p50=pct(dept, 50),
               my_rank_ms_p50=pct(mine, 50), my_rank_role_ms_p50=pct(mine_low, 50),
               before_top10_ms_p50=pct(top_before, 50), before_my_rank_ms_p50=pct(mine_before, 50),
               rebuild_ms_p50=pct(rebuild, 50), boards=len(keys), load_s=round(load, 1),
               target="top-10 <= 10 ms, my-rank <= 20 ms at 100k")
        db.client.drop_database(db.name)
        disconnect()


# -- the running system -------------------------------------------------------------------------------

def seed(settings, gateway_url: str, people: int = 60) -> dict:
    """Import ``people`` people through the gateway (parts of 500 rows, under the body limit)
    and wait until the kudos and points services' directory copies hold them all."""
    with mongo_client(settings) as client:
        admin = client[settings.database("requests")]["people"].find_one({"email": "admin@example.com"})
    gs = load_settings(GatewaySettings)
    token = issue_token(gs, admin["_id"], admin["email"], "admin")
    rows = [f"p{i}@example.com,Person {i},{'rep' if i % 2 else 'support'},{'sales' if i % 2 else 'pricing'}" for i in range(people)]
    found = import_people(settings, gateway_url, token, rows)
    seeded = [found[f"p{i}@example.com"] for i in range(people)]
    return {"token": token, "people": seeded, "gateway_settings": gs}


def import_people(settings, gateway_url: str, token: str, rows: list[str]) -> dict[str, dict]:
    """Import people (CSV rows ``email,name,role,department``) through the gateway in parts of
    500 rows (under the body limit); wait until the kudos and points services' directory copies
    hold everyone. Returns the imported people's documents by email."""
    for start in range(0, len(rows), 500):
        part = rows[start:start + 500]
        answer = http.post(gateway_url + "/graphql", headers={"Authorization": f"Bearer {token}"}, timeout=120, json={
            "query": "mutation($c: String!) { importPeople(csv: $c) { created } }",
            "variables": {"c": "\n".join(["email,name,role,department"] + part)}}).json()
        if not answer.get("data") or answer["data"]["importPeople"]["created"] != len(part):
            raise RuntimeError(f"seeding people through the gateway failed: {answer}")
    emails = {row.split(",", 1)[0] for row in rows}
    with mongo_client(settings) as client:
        found = {d["email"]: d for d in client[settings.database("requests")]["people"].find() if d.get("email") in emails}
    # The kudos and points services each keep a copy of the directory from the people topic and
    # refuse callers they do not know yet: wait until both copies hold everyone.
    with mongo_client(settings) as client:
        everyone = client[settings.database("requests")]["people"].count_documents({})
        copies = [client[settings.database(service)]["directory"] for service in ("kudos", "points")]
        deadline = time.monotonic() + 300
        while any(copy.count_documents({}) < everyone for copy in copies):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the directory copies hold {[c.count_documents({}) for c in copies]} of {everyone}")
            time.sleep(0.5)
    return found


PIPELINE_PEOPLE = int(os.environ.get("BENCH_PIPELINE_PEOPLE", "2000"))


def extra_points_processes(count: int) -> list:
    """More points processes beside the stack's (BENCH_POINTS_PROCESSES - 1): they share the
    points consumer groups' partitions, as a scaled-out deployment does. Started and ready."""
    import subprocess

    from shared.config import PROJECT_ROOT

    procs = []
    for i in range(count):
        port = PORTS["NOTIFICATIONS"] + 10 + i
        env = {**os.environ, "INSIDETRACK_POINTS_PORT": str(port), "PYTHONPATH": str(PROJECT_ROOT)}
        procs.append((subprocess.Popen([sys.executable, "-m", "services.recognition.points"], env=env, cwd=PROJECT_ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port))
    deadline = time.monotonic() + 120
    for proc, port in procs:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except http.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("an extra points process did not become ready")
            time.sleep(0.2)
    return [proc for proc, _ in procs]


# The pipeline's support staff, spread over the departments that help reps.
SUPPORT_DEPARTMENTS = ("presales", "pricing", "legal", "order_desk", "marketing", "product", "customer_service")


def seed_pipeline_people(settings, gateway_url: str, token: str) -> dict[str, list]:
    """The pipeline's company, in the directory as a real one is (its people imported through
    the gateway, in every copy): PIPELINE_PEOPLE people, half reps in sales, half support staff
    over SUPPORT_DEPARTMENTS. Awards to people the directory does not know (ids made up by the
    bench, as before the twenty-second session) were looked up again in every batch, and
    ranked in no department or role. Returns the reps' ids and the staff's (id, department)
    pairs."""
    reps, staff = PIPELINE_PEOPLE // 2, PIPELINE_PEOPLE - PIPELINE_PEOPLE // 2
    departments = [SUPPORT_DEPARTMENTS[i % len(SUPPORT_DEPARTMENTS)] for i in range(staff)]
    rows = [f"pr{i}@example.com,Rep {i},rep,sales" for i in range(reps)]
    rows += [f"ps{i}@example.com,Support {i},support,{departments[i]}" for i in range(staff)]
    found = import_people(settings, gateway_url, token, rows)
    return {"reps": [found[f"pr{i}@example.com"]["_id"] for i in range(reps)],
            "staff": [(found[f"ps{i}@example.com"]["_id"], departments[i]) for i in range(staff)]}


def settle(pids: dict[str, int], quiet_cores: float = 0.15, timeout_s: float = 120.0) -> float:
    """Wait until the stack is quiet (under ``quiet_cores`` of CPU over two seconds in a row):
    the people just imported are applied by every process's directory reader one by one (a
    copy's count is reached when the first process wrote everyone), and that work must not be
    counted in the next measure. Returns the seconds waited."""
    start = time.monotonic()
    quiet = 0
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    while quiet < 2 and time.monotonic() - start < timeout_s:
        time.sleep(1.0)
        now = {name: cpu_seconds(pid) for name, pid in pids.items()}
        quiet = quiet + 1 if sum(now[k] - before[k] for k in now) < quiet_cores else 0
        before = now
    return round(time.monotonic() - start, 1)


def bench_pipeline(settings, n: int, pids: dict[str, int], people: dict[str, list]) -> None:
    producer = EventProducer(settings, client_id="bench")
    base = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    events, expected = [], 0
    # A company's mix (seed_pipeline_people): 1,000 reps and 1,000 support staff; each kudos a
    # pair seen about once in the run (the giver-to-receiver cap would zero repeated pairs), each
    # rep's giver and each supporter's acknowledgements (in their department) spread over everyone.
    reps, staff = people["reps"], people["staff"]
    for i in range(n):
        at = base + timedelta(seconds=i)
        if i % 2:
            actor, department = staff[(i * 7) % len(staff)]
            events.append(build_event("request.acknowledged", f"br{i}", {
                "request_id": f"br{i}", "requester_id": reps[i % len(reps)], "department": department,
                "actor_id": actor, "status": "acknowledged", "at": at,
                "business_hours_since_submitted": 1.0}, source="bench"))
            expected += 1
        else:
            giver = (i // 2) % len(reps)
            events.append(build_event("kudos.given", f"bk{i}", {
                "kudos_id": f"bk{i}", "giver_id": reps[giver],
                "recipient_ids": [staff[(giver + i // (2 * len(reps))) % len(staff)][0]],
                "message": "thanks", "values": [], "gesture": "thanks", "request_id": None, "at": at}, source="bench"))
            expected += 2  # kudos_received (maybe capped) + kudos_given (0 points, Grateful)
    begins = source_ends(settings)  # where this input begins (the floor below reads it again from there)
    bench_cpu = time.process_time()
    with mongo_client(settings) as client:
        ledger = client[settings.database("points")]["ledger"]
        before = ledger.count_documents({})
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t = time.perf_counter()
        for start in range(0, n, 2000):
            producer.publish_all(events[start:start + 2000])
        publish_s = time.perf_counter() - t  # the pipeline cannot finish before its input is in
        # Wait on the consumer groups' lag (cheap Kafka calls; counting a 100k ledger on FerretDB
        # is a scan that would compete with the pipeline), then check the ledger itself. Each
        # stage's group is watched on its own: when its lag reached 0 for good, and its largest
        # lag. The applier drains after the scorer whatever limits; if the scorer limits, the
        # applier's lag stays a batch or two and it drains right after (docs/performance.md).
        stages = {**POINTS_GROUPS, INSIGHTS_GROUP: INSIGHTS_TOPICS}
        drained: dict[str, float] = {}
        lag_max = dict.fromkeys(stages, 0)
        while True:
            while True:
                lags = group_lags(settings, stages)
                for group, lag in lags.items():
                    lag_max[group] = max(lag_max[group], lag)
                    if lag:
                        drained.pop(group, None)  # more came (the stage before it is still at work)
                    else:
                        drained.setdefault(group, round(time.perf_counter() - t, 1))
                if not any(lags[group] for group in POINTS_GROUPS):
                    break
                time.sleep(0.25)
                if time.perf_counter() - t > 3600:
                    raise TimeoutError("pipeline did not finish")
            done_at = time.perf_counter()
            if ledger.count_documents({}) >= before + expected:
                break
        pipeline_s = done_at - t
        # Where the machine's cores went during the run: each process's CPU time per event (the
        # bench's own publishing included, as "bench"), and the share of both cores busy.
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["bench"] = time.process_time() - bench_cpu
        # Insights is its own group and the rate does not wait for it, but its work is part of
        # an event's cost: a faster scorer can leave it behind at the end, its CPU not yet spent.
        # So the CPU an event is also taken once insights has caught up (and the floor and the
        # raw limit below run on a quiet stack).
        insights_s = None
        while time.perf_counter() - t < 3600:
            if not group_lags(settings, {INSIGHTS_GROUP: INSIGHTS_TOPICS})[INSIGHTS_GROUP]:
                insights_s = round(time.perf_counter() - t, 1)
                break
            time.sleep(0.25)
        cpu_caught_up = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu_caught_up["bench"] = cpu["bench"]
    producer.close()
    raw = raw_limit(settings, n)
    # The stack's floor on the same input: decode, repartition, a ledger entry per award, nothing
    # of ours (bench/floor.py); no pipeline on these parts does more events a second.
    import floor

    bare = floor.run(settings, n, expected, begins, pids, cpu_seconds)
    rate = n / pipeline_s
    record(f"points_pipeline_{n}", events=n, people=PIPELINE_PEOPLE, people_settle_s=people.get("settle_s"), points_processes=" | ".join(
               [f"{spec.name}: {dict(spec.env)['INSIDETRACK_POINTS_STAGES']}" for spec in SERVICES
                if spec.module == "services.recognition.points"] + ["all stages"] * (POINTS_PROCESSES - 1)),
           seconds=round(pipeline_s, 1), publish_s=round(publish_s, 1), events_per_s=round(rate),
           raw_events_per_s=round(raw), ratio_to_raw=round(rate / raw, 3),
           floor_events_per_s=bare["events_per_s"], ratio_to_floor=round(rate / bare["events_per_s"], 3),
           floor_cpu_ms_per_event=bare["cpu_ms_per_event"], floor_cpu_ms_per_event_all=bare["cpu_ms_per_event_all"],
           floor_cores_busy=bare["cores_busy"],
           cpu_ms_per_event={name: round(1000 * s / n, 3) for name, s in sorted(cpu.items(), key=lambda kv: -kv[1]) if s >= 0.05},
           cpu_ms_per_event_all=round(1000 * sum(cpu.values()) / n, 3),
           insights_caught_up_s=insights_s if insights_s is not None else "not within the hour",
           cpu_ms_per_event_with_insights=round(1000 * sum(cpu_caught_up.values()) / n, 3),
           cpu_ms_per_event_with_insights_by_process={
               name: round(1000 * s / n, 3) for name, s in sorted(cpu_caught_up.items(), key=lambda kv: -kv[1]) if s >= 0.05},
           cores_busy=round(sum(cpu.values()) / pipeline_s, 2), cores=os.cpu_count(),
           stage_drained_s={group: drained.get(group, f"behind by {lags[group]}") for group in stages},
           stage_lag_max=lag_max,
           target=">= 5000/s and >= 50% of raw")


def source_ends(settings) -> dict[str, int]:
    """The source topics' end offsets ("<topic>:<partition>" -> offset)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers)
    tps = [TopicPartition(settings.topic(t), p) for t in ("requests", "kudos") for p in consumer.partitions_for_topic(settings.topic(t)) or []]
    ends = {f"{tp.topic}:{tp.partition}": offset for tp, offset in consumer.end_offsets(tps).items()}
    consumer.close()
    return ends


def raw_limit(settings, n: int) -> float:
    """A bare consumer reading the same topics and inserting one document per event."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False, max_poll_records=2000)
    tps = [TopicPartition(settings.topic(t), p) for t in ("requests", "kudos")
           for p in consumer.partitions_for_topic(settings.topic(t)) or []]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    with mongo_client(settings) as client:
        coll = client[settings.database("raw_bench")]["events"]
        coll.drop()
        seen, t = 0, time.perf_counter()
        while seen < n:
            batch = [{"_id": f"{r.topic}:{r.partition}:{r.offset}", "v": r.value} for recs in consumer.poll(500).values() for r in recs]
            if batch:
                coll.insert_many(batch, ordered=False)
                seen += len(batch)
        elapsed = time.perf_counter() - t
        client.drop_database(coll.database.name)
    consumer.close()
    return seen / elapsed


GIVE = "mutation($to: [ID!]!, $m: String!) { giveKudos(input: {to: $to, message: $m}) { kudos { id } errors { code } } }"
MY_BOARD = "subscription { leaderboardChanged(period: WEEK) { me { points } } }"


def _ws_client(gateway_url: str, token: str):
    """A graphql-transport-ws connection, acknowledged."""
    from simple_websocket import Client as WsClient

    ws = WsClient(gateway_url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"])
    ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    if json.loads(ws.receive(10))["type"] != "connection_ack":
        raise RuntimeError("no connection_ack")
    return ws


def _subscribed(ws, op_id: str, query: str) -> None:
    """Subscribe, then ping: the pong comes after the subscribe was handled (it is live)."""
    ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
    ws.send(json.dumps({"type": "ping"}))
    while True:
        raw = ws.receive(10)
        if raw is None:
            raise RuntimeError("no pong after subscribe")
        if json.loads(raw).get("type") == "pong":
            return


class StageTap:
    """Reads the kudos, points and points-applied topics from now on (no group) and notes when
    each stage put out its event for a person: the broker's CreateTime of the record, in
    wall-clock milliseconds (the producers run on this machine)."""

    def __init__(self, settings):
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False)
        tps = [TopicPartition(settings.topic(t), p) for t in ("kudos", "points", "points-applied")
               for p in sorted(self.consumer.partitions_for_topic(settings.topic(t)) or ())]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)  # resolve "the end" now, before any kudos is sent
        self.seen: dict[tuple[str, str], float] = {}  # (stage, person) -> first time, ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(200).values():
                for record in records:
                    event = json.loads(record.value)
                    data = event["data"]
                    if event["type"] == "kudos.given":
                        people = data["recipient_ids"]
                    elif event["type"] == "points.awarded" and any(a["points"] > 0 for a in data.get("awards") or [data]):
                        people = [data["person_id"]]
                    elif event["type"] == "points.applied":
                        people = data["person_ids"]
                    else:
                        continue
                    for person in people:
                        self.seen.setdefault((event["type"], person), record.timestamp)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def bench_latency(settings, gateway_url: str, ctx: dict, n: int, rate_per_s: float = 5.0) -> None:
    """What a person sees: a kudos given through GraphQL -> the recipient's own points on their
    ``leaderboardChanged(period: WEEK) { me { points } }``, showing the +10. Each trial is a
    fresh giver and a fresh recipient (no pair cap, no allowance in the way); the recipient
    subscribes before the kudos is sent and the clock stops at the first message whose
    ``me.points`` has the award. A screen beside them times ``kudosGiven`` for every kudos."""
    people, gs = ctx["people"], ctx["gateway_settings"]
    watcher, pairs = people[0], [(people[1 + 2 * i], people[2 + 2 * i]) for i in range(n)]
    screen = _ws_client(gateway_url, issue_token(gs, watcher["_id"], watcher["email"], "support"))
    _subscribed(screen, "k", "subscription { kudosGiven { message } }")
    sent: dict[str, float] = {}
    kudos_lat: list[float] = []

    def listen_screen():
        while True:
            try:
                raw = screen.receive(timeout=15)
            except Exception:  # noqa: BLE001 - closed at the end
                return
            if raw is None:
                return
            now = time.perf_counter()
            message = json.loads(raw)
            if message.get("type") == "next" and message["id"] == "k":
                text = message["payload"]["data"]["kudosGiven"]["message"]
                if text in sent:
                    kudos_lat.append((now - sent[text]) * 1000)

    listener = threading.Thread(target=listen_screen, daemon=True)
    listener.start()
    tap = StageTap(settings)

    points_lat: list[float] = []
    stages: dict[str, list[float]] = {"giveKudos_answer": [], "kudos_relay": [], "scorer": [], "applier": [],
                                      "notice_to_message": []}
    timeline: list[tuple[str, float, float]] = []  # (recipient, sent wall ms, shown wall ms)
    problems: dict[str, int] = {}
    lock = threading.Lock()

    def problem(kind: str) -> None:
        with lock:
            problems[kind] = problems.get(kind, 0) + 1

    def trial(i: int, at: float) -> None:
        giver, recipient = pairs[i]
        try:
            ws = _ws_client(gateway_url, issue_token(gs, recipient["_id"], recipient["email"], "support"))
        except Exception:  # noqa: BLE001 - counted, the run goes on
            return problem("subscribe_failed")
        try:
            _subscribed(ws, "me", MY_BOARD)
            time.sleep(max(0.0, at - time.perf_counter()))  # the kudos leaves on its schedule
            message = f"bench kudos {i} {uuid.uuid4().hex[:6]}"
            giver_token = issue_token(gs, giver["_id"], giver["email"], "rep")
            wall = time.time() * 1000
            t = sent[message] = time.perf_counter()
            answer = http.post(gateway_url + "/graphql", timeout=30, headers={"Authorization": f"Bearer {giver_token}"},
                               json={"query": GIVE, "variables": {"to": [recipient["_id"]], "m": message}})
            with lock:
                stages["giveKudos_answer"].append((time.perf_counter() - t) * 1000)
            body = answer.json() if answer.status_code == 200 else {}
            if answer.status_code != 200 or body.get("errors") or body["data"]["giveKudos"]["errors"]:
                return problem(f"giveKudos_{answer.status_code}_{(body.get('errors') or body.get('data'))!s:.80}")
            deadline = t + 10
            while time.perf_counter() < deadline:
                raw = ws.receive(timeout=max(0.05, deadline - time.perf_counter()))
                if raw is None:
                    continue
                reply = json.loads(raw)
                if reply.get("type") == "next" and ((reply["payload"].get("data") or {}).get("leaderboardChanged") or {}).get("me", {}).get("points", 0) >= 10:
                    with lock:
                        points_lat.append((time.perf_counter() - t) * 1000)
                        timeline.append((recipient["_id"], wall, wall + points_lat[-1]))
                    return
            problem("points_not_shown_within_10s")
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            problem(f"trial_failed_{type(exc).__name__}")
        finally:
            ws.close()

    start = time.perf_counter() + 1.0
    with ThreadPoolExecutor(16) as pool:
        futures = []
        for i in range(n):
            at = start + i / rate_per_s
            time.sleep(max(0.0, at - 0.5 - time.perf_counter()))  # subscribe half a second ahead
            futures.append(pool.submit(trial, i, at))
        for future in futures:
            future.result()
    time.sleep(2)
    screen.close()
    tap.close()
    for person, sent_ms, shown_ms in timeline:  # where each trial's time went, stage by stage
        marks = [sent_ms] + [tap.seen.get((kind, person)) for kind in ("kudos.given", "points.awarded", "points.applied")] + [shown_ms]
        if None in marks:
            continue
        for stage, (a, b) in zip(("kudos_relay", "scorer", "applier", "notice_to_message"), zip(marks, marks[1:])):
            stages[stage].append(b - a)
    record("kudos_to_recipient_points_stages", trials=len(stages["kudos_relay"]),
           **{f"{stage}_p50_ms": pct(values, 50) for stage, values in stages.items()},
           **{f"{stage}_p95_ms": pct(values, 95) for stage, values in stages.items()},
           note="giveKudos_answer: the mutation's round trip; kudos_relay: sent -> kudos.given on Kafka; scorer: -> "
                "points.awarded; applier: -> points.applied; notice_to_message: -> the recipient's message (negative when "
                "the refresh of an earlier notice read the board after this award's board write, before its own notice)")
    record("kudos_to_recipient_points", kudos=n, rate_per_s=rate_per_s, arrived=len(points_lat),
           p50_ms=pct(points_lat, 50), p95_ms=pct(points_lat, 95), p99_ms=pct(points_lat, 99),
           max_ms=pct(points_lat, 100), problems=problems or None,
           target="p95 <= 300 ms (stretch 150)")
    record("kudos_to_kudosGiven", kudos=n, arrived=len(kudos_lat), p50_ms=pct(kudos_lat, 50),
           p95_ms=pct(kudos_lat, 95), p99_ms=pct(kudos_lat, 99), target="p95 <= 100 ms")


def load(fn, ok, clients: int = 20, seconds: float = 8.0) -> dict:
    """``clients`` threads calling ``fn`` for ``seconds``; ``ok(response)`` says whether an
    answer is right. Errors (a wrong status, GraphQL errors, an exception) are counted, never
    stop a client; throughput counts good answers only."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker():
        session = http.Session()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                response = fn(session)
                problem = ok(response)
            except Exception as exc:  # noqa: BLE001 - counted; the client goes on
                problem = type(exc).__name__
            elapsed = (time.perf_counter() - t) * 1000
            with lock:
                if problem:
                    errors[problem] = errors.get(problem, 0) + 1
                else:
                    latencies.append(elapsed)

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()  # a client that died of something else than a request says so here
    return {"rps": len(latencies) / seconds, "p50": pct(latencies, 50), "p99": pct(latencies, 99),
            "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors or None}


def graphql_ok(response) -> str | None:
    if response.status_code != 200:
        return f"status_{response.status_code}"
    body = response.json()
    if body.get("errors") or not body.get("data"):
        return f"graphql_errors: {str(body.get('errors'))[:80]}"
    return None


def http_ok(response) -> str | None:
    return None if response.status_code == 200 else f"status_{response.status_code}"


def bench_gateway(settings, gateway_url: str, ctx: dict) -> None:
    """The same read through the gateway (GraphQL) and straight to the service, 20 clients
    each: throughput and latency ratios."""
    person = ctx["people"][0]
    token = issue_token(ctx["gateway_settings"], person["_id"], person["email"], "support")
    auth = {"Authorization": f"Bearer {token}"}
    internal = {"X-Internal-Token": settings.internal_token, "X-Actor-Id": person["_id"]}
    cases = {
        "leaderboard": (
            lambda s: s.post(gateway_url + "/graphql", headers=auth, timeout=30, json={
                "query": "{ leaderboard(period: WEEK) { entries { rank points person { name } } me { rank } } }"}),
            lambda s: s.get(f"http://127.0.0.1:{PORTS['POINTS']}/leaderboard", headers=internal, timeout=30,
                            params={"period": "week", "first": 10, "me": person["_id"]})),
        "kudosFeed_50": (
            lambda s: s.post(gateway_url + "/graphql", headers=auth, timeout=30, json={
                "query": "{ kudosFeed(first: 50) { edges { node { message giver { name } recipients { name } } } } }"}),
            lambda s: s.get(f"http://127.0.0.1:{PORTS['KUDOS']}/kudos?first=50", headers=internal, timeout=30)),
    }
    for name, (via_gateway, direct) in cases.items():
        g = load(via_gateway, graphql_ok)
        d = load(direct, http_ok)
        record(f"gateway_{name}", clients=20, gateway_rps=round(g["rps"]), direct_rps=round(d["rps"]),
               throughput_ratio=round(d["rps"] / g["rps"], 2) if g["rps"] else None,
               gateway_p50_ms=g["p50"], direct_p50_ms=d["p50"],
               p50_ratio=round(g["p50"] / d["p50"], 2) if g["p50"] and d["p50"] else None,
               gateway_p99_ms=g["p99"], direct_p99_ms=d["p99"],
               p99_ratio=round(g["p99"] / d["p99"], 2) if g["p99"] and d["p99"] else None,
               gateway_errors=g["errors"], direct_errors=d["errors"],
               error_kinds={"gateway": g["error_kinds"], "direct": d["error_kinds"]} if g["errors"] or d["errors"] else None,
               target="gateway <= 1.5x direct (p50 latency and throughput)")


def main() -> int:
    settings = load_settings()
    print(f"Inside Track benchmarks ({'full' if FULL else 'quick'}), results in bench/results/", flush=True)
    RESULTS["machine"] = {"cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                          "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "kafka": "4.3.1 (KRaft, -Xmx512m)", "mongo": "FerretDB 1.24 on SQLite (serialized writes)"}
    RESULTS["started"] = datetime.now(timezone.utc).isoformat()
    if ONLY == "year":  # a company-year through the services' own paths (bench/year.py)
        import year

        RESULTS["sizes"] = {"people": year.PEOPLE, "kudos": year.KUDOS, "requests": year.REQUESTS, "demo": year.DEMO}
        year.run(settings, record, pct, rss_mb, PORTS)
        return write_results()
    if ONLY == "scoring":  # the points engine on a year of kudos, in-process (bench/scoring.py)
        import scoring

        scoring.run(settings, record, rss_mb)
        return write_results()
    if ONLY == "requests-import":  # the requests import of history, in-process (bench/requests_import.py)
        import requests_import

        requests_import.run(settings, record, rss_mb)
        return write_results()
    if ONLY in ("leaderboard", "ferretdb"):
        ferretdb = local.FerretDB(settings)
        ferretdb.up()
        try:
            bench_leaderboard_scale(settings) if ONLY == "leaderboard" else bench_ferretdb_ops(settings)
        finally:
            ferretdb.daemon.stop()
        return write_results()
    if ONLY not in ("pipeline", "live"):
        bench_cards()
    if ONLY == "cards":  # the card renders alone (no stack)
        return write_results()
    local.down(settings)
    local.wipe(settings)
    local.up(settings)
    ensure_topics(settings)
    services = Supervisor(settings)
    try:
        if ONLY not in ("pipeline", "live"):
            bench_ferretdb_ops(settings)
            bench_leaderboard_scale(settings)
        services.start_all(timeout=120)
        idle = {p.spec.name: rss_mb(p.proc.pid) for p in services.processes}
        gateway_url = f"http://127.0.0.1:{PORTS['GATEWAY']}"
        trials = 500 if FULL else 100
        ctx = seed(settings, gateway_url, people=1 + 2 * trials)  # a screen, then a fresh pair per trial
        sizes = [2_000] + ([10_000, 100_000] if FULL else [])
        if os.environ.get("BENCH_EVENTS"):
            sizes = [int(n) for n in os.environ["BENCH_EVENTS"].split(",")]
        extra = extra_points_processes(POINTS_PROCESSES - 1) if ONLY != "live" and POINTS_PROCESSES > 1 else []
        try:
            company = None
            if ONLY != "live":
                company = seed_pipeline_people(settings, gateway_url, ctx["token"])
                company["settle_s"] = settle(stack_pids(settings, services))
            for n in sizes if ONLY != "live" else []:
                bench_pipeline(settings, n, stack_pids(settings, services), company)
        finally:
            for proc in extra:
                proc.terminate()
                proc.wait(60)
        if ONLY != "pipeline":
            bench_latency(settings, gateway_url, ctx, trials)
            bench_gateway(settings, gateway_url, ctx)
        loaded = {p.spec.name: rss_mb(p.proc.pid) for p in services.processes}
        # The largest each was during the runs: "loaded" is after them (a process hands freed
        # memory back), and a batch's peak is what the machine must have.
        peak = {p.spec.name: rss_mb(p.proc.pid, "VmHWM") for p in services.processes}
        kafka_pid = local.KafkaBroker(settings).daemon.pid()
        record("memory_rss_mb", **{f"{k}_idle": v for k, v in idle.items()}, **{f"{k}_loaded": v for k, v in loaded.items()},
               **{f"{k}_peak": v for k, v in peak.items()},
               kafka_rss=rss_mb(kafka_pid) if kafka_pid else None, target="each Python service <= 150 MB under load (its peak)")
    finally:
        services.stop_all()
        local.down(settings)
    return write_results()


def write_results() -> int:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(RESULTS, indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
