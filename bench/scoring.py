"""`BENCH_ONLY=scoring make bench`: the points engine on a year of kudos history, in-process.

Both scoring stages (Scorer, then Applier, as the live consumers run them, in batches of their
poll sizes) on a fresh points database of the bench's FerretDB: ``BENCH_SCORING_KUDOS`` kudos
(default 10,000) between ``BENCH_SCORING_PEOPLE`` people (2,000), spread over the past year in
time order (as an import publishes them). No Kafka: what it measures is the engine and its
writes. Prints awards/s and FerretDB's time per command and collection, which says where a
batch's time goes (pymongo's command monitoring).
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone

from inprocess import ferretdb_timed

KUDOS = int(os.environ.get("BENCH_SCORING_KUDOS", "10000"))
PEOPLE = int(os.environ.get("BENCH_SCORING_PEOPLE", "2000"))
SCORE_BATCH = int(os.environ.get("BENCH_SCORING_SCORE_BATCH", "1000"))  # the scorer's max_poll_records
APPLY_BATCH = int(os.environ.get("BENCH_SCORING_APPLY_BATCH", "10000"))  # the applier's, behind (points.app.APPLY_GATHER)
# The days the kudos are spread over, up to "now": 365 is a year of history (awards of past
# periods add to "all" only); 3 is live work (this week's, month's, quarter's and all-time totals).
SPAN_DAYS = float(os.environ.get("BENCH_SCORING_SPAN_DAYS", "365"))


def run(settings, record, rss_mb) -> None:
    from services.recognition.directory import Directory, DirectoryPersonDoc
    from services.recognition.points.config import PointsSettings
    from services.recognition.points.applier import Applier
    from services.recognition.points.scorer import Scorer
    from services.recognition.points.store import Store
    from services.recognition.points.rules import load_rules
    from shared.calendar import BusinessCalendar
    from shared.clock import ManualClock
    from shared.config import load_settings
    from shared.db import connect, disconnect
    from shared.events import build_event
    from shared.events.schemas import PersonAwards, awards_in
    from shared.memory import release_free_memory

    ps = load_settings(PointsSettings)
    with ferretdb_timed(settings) as timings:
        db = connect(ps, "points")
        db.client.drop_database(db.name)
        people = [f"u{i:05d}" for i in range(PEOPLE)]
        DirectoryPersonDoc._get_collection().insert_many([
            {"_id": p, "email": f"{p}@example.com", "name": p, "role": "rep" if i % 3 == 0 else "support",
             "department": ("sales", "pricing", "legal")[i % 3], "active": True} for i, p in enumerate(people)])
        store = Store(db)
        store.ensure_indexes()
        rules, calendar = load_rules(ps.rules_file), BusinessCalendar.from_settings(ps)
        now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
        clock, published = ManualClock(now), []
        scorer = Scorer(store, rules, calendar, Directory(), clock, publish=published.extend)
        applier = Applier(store, rules, calendar, Directory(), clock)
        rng, start = random.Random(2026), now - timedelta(days=SPAN_DAYS)
        events = []
        for i in range(KUDOS):
            at = start + timedelta(seconds=i * SPAN_DAYS * 86400 / KUDOS)
            giver, recipient = rng.sample(people, 2)
            events.append(build_event("kudos.given", f"k{i}", {
                "kudos_id": f"k{i}", "giver_id": giver, "recipient_ids": [recipient], "message": "thanks", "values": [],
                "gesture": "thanks", "request_id": None, "at": at}, source="bench", clock=ManualClock(at)))
        timings.take()  # from here on
        ferretdb_cpu = timings.ferretdb_cpu_s()
        rss_start = rss_peak = rss_mb(os.getpid())
        scoring = applying = 0.0
        offset = 0
        t0 = time.perf_counter()
        applied = 0
        for s in range(0, len(events), SCORE_BATCH):
            t = time.perf_counter()
            scorer.score_batch(events[s:s + SCORE_BATCH])
            scoring += time.perf_counter() - t
            last = s + SCORE_BATCH >= len(events)
            # The applier's batches: what it gathers when behind (APPLY_BATCH), the rest at the end.
            while len(published) - applied >= APPLY_BATCH or (last and applied < len(published)):
                t = time.perf_counter()
                items = []
                records = published[applied:applied + APPLY_BATCH]
                for envelope in records:
                    items += [(award, "0", offset) for award in awards_in(PersonAwards.model_validate(envelope.data))]
                    offset += 1
                applied += len(records)
                applier.apply_batch(items)
                rss_peak = max(rss_peak, rss_mb(os.getpid()))
                applying += time.perf_counter() - t
        elapsed = time.perf_counter() - t0
        rss_end = rss_mb(os.getpid())
        release_free_memory()
        rss_trimmed = rss_mb(os.getpid())
        by_op, _ = timings.take()
        db_s = sum(s for _, s in by_op.values())
        top = sorted(by_op.items(), key=lambda kv: -kv[1][1])[:12]
        record("scoring_history_in_process" if SPAN_DAYS >= 365 else "scoring_live_in_process", kudos=KUDOS, people=PEOPLE, span_days=SPAN_DAYS, awards=len(published), seconds=round(elapsed, 1),
               awards_per_s=round(len(published) / elapsed), score_s=round(scoring, 1), apply_s=round(applying, 1),
               ferretdb_s=round(db_s, 1), ferretdb_cpu_s=round(timings.ferretdb_cpu_s() - ferretdb_cpu, 1), loadavg_1m=round(os.getloadavg()[0], 1),
               rss_mb={"start": rss_start, "peak": rss_peak, "end": rss_end, "end_trimmed": rss_trimmed},
               batches={"score": SCORE_BATCH, "apply": APPLY_BATCH},
               ferretdb_top={key: [n, round(s, 2)] for key, (n, s) in top})
        db.client.drop_database(db.name)
        disconnect()
