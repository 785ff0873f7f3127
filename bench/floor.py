"""The floor of this stack (issue 18): the least any points pipeline does per event, built from
the stack's parts alone (kafka-python, orjson, pymongo, FerretDB) with nothing of ours.

Run by the pipeline bench right after the pipeline, on the same input (bench/run.py,
``floor_limit``), so its figure is measured in the same run. Two processes, as the pipeline
runs on two cores:

- ``score`` reads the source topics, decodes each event and makes its awards (a kudos: its
  giver and each recipient; any other event: its actor), publishes them keyed by person (the
  repartition every per-person state needs: one person's awards in one partition) and commits;
- ``apply`` reads the awards, adds them to each person's total in memory, inserts one ledger
  entry per award (its id the award's, traceable to the source event), publishes one changelog
  record per person touched in the batch, and commits.

Nothing else: no rules, caps or guards, no scored-event records, no badges, boards, rankings,
ledger pages or insights; no schema validation. Every part left out only makes it faster, so a
pipeline with the product's work does less than this on the same machine.

``python bench/floor.py score|apply <events or awards> <run suffix>``: prints ``ready`` once
its consumer is assigned, waits for a line on stdin, works until it has taken that many
records, then prints its CPU seconds and exits.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.bus.kafka import BATCH_BYTES, LINGER_MS  # noqa: E402  (the producer's settings, as the services')
from shared.config import load_settings  # noqa: E402
from shared.db import mongo_client  # noqa: E402

AWARDS_TOPIC, STATE_TOPIC = "floor_awards", "floor_state"  # each run's own (a suffix: run())
SOURCE_TOPICS = ("requests", "kudos")
POLL_RECORDS = 2_000
STALL_S = 120.0


def _consumer(settings, group: str, topics, start: dict[str, int] | None = None):
    """Assigned every partition of ``topics``, from ``start`` ("<topic>:<partition>" -> offset)
    or the beginning."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, group_id=group, enable_auto_commit=False,
                             max_poll_records=POLL_RECORDS)
    tps = [TopicPartition(settings.topic(t), p) for t in topics for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or ())]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, (start or {}).get(f"{tp.topic}:{tp.partition}", 0))
    return consumer


def _producer(settings):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", enable_idempotence=True,
                         linger_ms=LINGER_MS, batch_size=BATCH_BYTES)


def score(settings, events: int, run: str) -> None:
    start = orjson.loads(os.environ["FLOOR_START"])
    consumer, producer = _consumer(settings, run + "score", SOURCE_TOPICS, start), _producer(settings)
    topic = settings.topic(AWARDS_TOPIC + run)
    cpu = _ready()
    taken, stalled = 0, _Stall()
    while taken < events:
        polled = consumer.poll(timeout_ms=500)
        stalled.check(bool(polled), "score", taken, events)
        for records in polled.values():
            for record in records:
                event = orjson.loads(record.value)
                data = event["data"]
                people = ([(data["giver_id"], 0), *((r, 10) for r in data["recipient_ids"])] if event["type"] == "kudos.given"
                          else [(data.get("actor_id") or data.get("requester_id"), 5)])
                for i, (person, points) in enumerate(people):
                    producer.send(topic, key=person.encode(), value=orjson.dumps({
                        "id": f"{event['id']}:{i}", "person": person, "points": points,
                        "source": event["id"], "type": event["type"], "at": data["at"]}))
                taken += 1
        producer.flush()
        consumer.commit()
    _done(producer, consumer, cpu)


def apply(settings, awards: int, run: str) -> None:
    consumer, producer = _consumer(settings, run + "apply", [AWARDS_TOPIC + run]), _producer(settings)
    state_topic = settings.topic(STATE_TOPIC + run)
    totals: dict[str, int] = {}
    with mongo_client(settings) as client:
        ledger = client[settings.database("floor" + run)]["ledger"]
        cpu = _ready()
        taken, stalled = 0, _Stall()
        while taken < awards:
            batch = [record for records in consumer.poll(timeout_ms=500).values() for record in records]
            stalled.check(bool(batch), "apply", taken, awards)
            if not batch:
                continue
            entries, touched = [], set()
            for record in batch:
                award = orjson.loads(record.value)
                person = award["person"]
                totals[person] = totals.get(person, 0) + award["points"]
                touched.add(person)
                entries.append({"_id": award["id"], "person_id": person, "points": award["points"],
                                "source_event_id": award["source"], "at": award["at"],
                                "src": f"{record.partition}:{record.offset}"})
            ledger.insert_many(entries, ordered=False)
            for person in touched:
                producer.send(state_topic, key=person.encode(), value=orjson.dumps({"person": person, "total": totals[person]}))
            producer.flush()
            consumer.commit()
            taken += len(batch)
        _done(producer, consumer, cpu)
        client.drop_database(ledger.database.name)


class _Stall:
    """Ends a stage that has had nothing to read for STALL_S (its input never came)."""

    def __init__(self):
        self.since = time.monotonic()

    def check(self, progressed: bool, stage: str, taken: int, wanted: int) -> None:
        if progressed:
            self.since = time.monotonic()
        elif time.monotonic() - self.since > STALL_S:
            sys.exit(f"the floor's {stage} stage read nothing for {STALL_S:.0f} s ({taken} of {wanted})")


def _ready() -> float:
    """Tell the bench this stage is connected and assigned, wait for its go; the CPU time then."""
    print("ready", flush=True)
    sys.stdin.readline()
    return time.process_time()


def _done(producer, consumer, cpu_at_go: float) -> None:
    producer.close()
    consumer.close()
    print(f"cpu {time.process_time() - cpu_at_go:.3f}", flush=True)


def run(settings, events: int, awards: int, start: dict[str, int], pids: dict[str, int], cpu_seconds) -> dict:
    """Both stages as processes on the ``events`` source events from ``start`` (where the
    pipeline's input began: "<topic>:<partition>" -> offset), which make ``awards`` awards;
    returns events/s and CPU per event (the two stages, FerretDB and Kafka)."""
    from kafka.admin import NewTopic

    from shared.bus.kafka import admin_client

    run = f"_{uuid.uuid4().hex[:6]}"  # this run's topics, groups and database (a bench may run several sizes)
    topics = [settings.topic(name + run) for name in (AWARDS_TOPIC, STATE_TOPIC)]
    admin = admin_client(settings)
    admin.create_topics([NewTopic(name, settings.topic_partitions, settings.topic_replication_factor) for name in topics])
    try:
        return _measure(settings, events, awards, start, pids, cpu_seconds, run)
    finally:
        admin.delete_topics(topics)
        admin.close()


def _measure(settings, events: int, awards: int, start: dict[str, int], pids: dict[str, int], cpu_seconds, run: str) -> dict:
    import subprocess

    procs = {stage: subprocess.Popen([sys.executable, __file__, stage, str(count), run], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, "FLOOR_START": orjson.dumps(start).decode()})
             for stage, count in (("score", events), ("apply", awards))}
    try:
        for stage, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the floor's {stage} stage did not start")
        before = {name: cpu_seconds(pid) for name, pid in pids.items() if name in ("ferretdb", "kafka")}
        t = time.perf_counter()
        for proc in procs.values():
            proc.stdin.write("go\n")
            proc.stdin.flush()
        lines = {stage: proc.stdout.readline().split() for stage, proc in procs.items()}  # each stage's last word: done
        seconds = time.perf_counter() - t
        cpu = {name: cpu_seconds(pids[name]) - s for name, s in before.items()}
        for stage, proc in procs.items():
            if proc.wait(timeout=600) != 0 or lines[stage][:1] != ["cpu"]:
                raise RuntimeError(f"the floor's {stage} stage failed")
            cpu[f"floor-{stage}"] = float(lines[stage][1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {"events_per_s": round(events / seconds), "seconds": round(seconds, 1),
            "cpu_ms_per_event": {name: round(1000 * s / events, 3) for name, s in sorted(cpu.items(), key=lambda kv: -kv[1])},
            "cpu_ms_per_event_all": round(1000 * sum(cpu.values()) / events, 3), "cores_busy": round(sum(cpu.values()) / seconds, 2)}


if __name__ == "__main__":
    stage, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {"score": score, "apply": apply}[stage](load_settings(), count, prefix)
