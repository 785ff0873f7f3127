"""`BENCH_ONLY=requests-import make bench`: the requests import of history, in-process.

``import-requests``' own handler (``RequestsService.import_history``) on the bench's FerretDB,
no Kafka (the import's publish is a list) and no HTTP: ``BENCH_IMPORT_REQUESTS`` lifecycles
(default 4,000, the year bench's generator) for ``BENCH_IMPORT_PEOPLE`` people (2,000), in
parts of ``BENCH_IMPORT_PART`` rows (2,000, about what fits the services' 1 MiB body limit).
Prints rows/s, the time of each stage of a part, and FerretDB's time per command and
collection (pymongo's command monitoring): where a part's time goes.
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from datetime import datetime, timezone

from inprocess import ferretdb_timed

REQUESTS = int(os.environ.get("BENCH_IMPORT_REQUESTS", "4000"))
PEOPLE = int(os.environ.get("BENCH_IMPORT_PEOPLE", "2000"))
PART = int(os.environ.get("BENCH_IMPORT_PART", "2000"))


def _parts(text: str, rows: int) -> list[str]:
    """The CSV in parts of ``rows`` rows, each with the header (what ``send_file`` sends)."""
    lines = text.splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    return [header + "".join(body[i:i + rows]) for i in range(0, len(body), rows)]


def run(settings, record, rss_mb) -> None:
    import year  # the year bench's generators (bench/ is on the path)
    from services.requests import documents, handlers, history
    from services.requests.config import RequestsSettings
    from services.requests.readmodels import RequestReadModels
    from services.requests.repository import Repository
    from shared.calendar import BusinessCalendar
    from shared.clock import SystemClock
    from shared.config import load_settings
    from shared.db import connect, disconnect

    rs = load_settings(RequestsSettings)
    stages: dict[str, float] = defaultdict(float)

    def timed(owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                stages[stage] += time.perf_counter() - t

        setattr(owner, name, wrapper)

    with ferretdb_timed(settings) as timings:
        db = connect(rs, "requests")
        db.client.drop_database(db.name)
        documents.ensure_indexes()
        repo = Repository()
        clock = SystemClock()
        published: list = []
        service = handlers.RequestsService(repo=repo, clock=clock, calendar=BusinessCalendar.from_settings(rs),
                                           publish=published.extend)
        repo.read_models.ensure_built(clock.now())
        admin = service.ensure_admin(rs.admin_email)
        rows = year.people_rows(PEOPLE)
        report = service.import_people(admin.id, year.people_csv(rows))
        assert not report["errors"], report["errors"][:3]
        known, _ = repo.directory.snapshot()
        with_ids = [{**r, "id": known[r["email"]].id} for r in rows]
        text = year.requests_csv(with_ids, REQUESTS, datetime.now(timezone.utc), random.Random(2026))

        timed(history, "parse_csv", "replay (parse_csv)")
        timed(repo.requests, "insert_many", "insert requests")
        timed(RequestReadModels, "project_imported", "lists, timers, cards")
        timed(RequestReadModels, "follow_newer", "versions read back")
        timed(service, "_record_import_events", "events recorded")
        timed(service, "_publish_imported", "publish (a list here), records emptied")
        timings.take()  # from here on
        imported = events = 0
        part_s = []
        t0 = time.perf_counter()
        for part in _parts(text, PART):
            t = time.perf_counter()
            answer = service.import_history(admin.id, part)
            part_s.append(round(time.perf_counter() - t, 1))
            imported += answer["imported"]
            events += answer["events"]
            assert not answer["errors"], answer["errors"][:3]
        elapsed = time.perf_counter() - t0
        by_op, _ = timings.take()
        db_s = sum(s for _, s in by_op.values())
        top = sorted(by_op.items(), key=lambda kv: -kv[1][1])[:12]
        record("requests_import_in_process", requests=REQUESTS, people=PEOPLE, part=PART, imported=imported, events=events,
               seconds=round(elapsed, 1), requests_per_s=round(imported / elapsed), part_s=part_s,
               stages_s={k: round(v, 1) for k, v in stages.items()}, ferretdb_s=round(db_s, 1),
               loadavg_1m=round(os.getloadavg()[0], 1), rss_mb=rss_mb(os.getpid()),
               ferretdb_top={key: [n, round(s, 2)] for key, (n, s) in top})
        db.client.drop_database(db.name)
        disconnect()
