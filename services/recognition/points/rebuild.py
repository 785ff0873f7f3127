"""Re-score all history: read the topics from the start into fresh collections, then swap.

Used after a rules change (`insidetrack rebuild-points`). Source events from ``requests`` and
``kudos`` are read from the beginning, put in time order, scored and applied in this process
(awards are not re-published: history is re-scored, not re-announced), into collections named
``<name>__rebuild``; then each replaces its live twin. Run it while the points process is
stopped; when it starts again it carries on from where its consumer groups were, and every
award it meets again is already in the rebuilt ledger, so nothing counts twice.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from pymongo.database import Database
from pymongo.errors import OperationFailure

from services.recognition.directory import Directory
from services.recognition.points.applier import Applier
from services.recognition.points.domain import event_time
from services.recognition.points.scorer import Scorer
from services.recognition.points.state import TOPIC as STATE_TOPIC, PointsTable, publish_all_states
from services.recognition.points.store import Store
from services.recognition.points.rules import RuleSet
from shared.calendar import BusinessCalendar
from shared.clock import Clock, clock_for
from shared.config import Settings
from shared.events import Envelope, InvalidEvent, decode
from shared.bus.kafka import EventProducer
from shared.events.schemas import PointsAwarded, PointsState, PersonUpserted

log = logging.getLogger(__name__)
SUFFIX = "__rebuild"
NOT_IMPLEMENTED = 238  # the server's error code for an option it does not support


@dataclass
class RebuildReport:
    events: int
    awards: int
    skipped: int
    seconds: float
    state: PointsTable | None = field(default=None, repr=False)  # the rebuilt totals and badge progress


def read_topics(settings: Settings, topics: list[str], timeout: float = 120) -> tuple[list[tuple[Envelope, object]], int]:
    """Every valid event now in ``topics`` (all partitions, from the start); and how many
    messages were not valid events (they sit in the dead-letter topics already)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False, max_poll_records=2000)
    try:
        partitions = [TopicPartition(settings.topic(t), p) for t in topics
                      for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        events, skipped = [], 0
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError("reading the topics took too long")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset >= ends[TopicPartition(record.topic, record.partition)]:
                        continue
                    try:
                        events.append(decode(record.value))
                    except InvalidEvent:
                        skipped += 1
        return events, skipped
    finally:
        consumer.close()


# Events scored and awards applied per bulk, in time order like the live stages' polls (larger:
# each document a batch touches is written once, and the rebuilt collections start empty).
SCORE_BATCH = 10000
REBUILD_BATCH = 50000


def rebuild(settings: Settings, db: Database, rules: RuleSet, directory: Directory,
            clock: Clock | None = None, publish: bool = True) -> RebuildReport:
    """Re-score history into ``db``; with ``publish``, the rebuilt totals and badge progress
    become the points state (its changelog); without, they are only in the report (a rebuild
    into another database, to compare)."""
    # Python's cycle collector off for the run: it scanned the year's events and awards held in
    # memory again and again as they grew (12 % of the rebuild's CPU in a profile of a company-
    # year); what the run builds is freed by reference counting, and it collects once at the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _rebuild(settings, db, rules, directory, clock, publish)
    finally:
        if enabled:
            gc.enable()
        gc.collect()


def _rebuild(settings: Settings, db: Database, rules: RuleSet, directory: Directory,
             clock: Clock | None, publish: bool) -> RebuildReport:
    started = time.monotonic()
    clock = clock or clock_for(settings)  # the points process's own clock (the demo's, in a demo)
    calendar = BusinessCalendar.from_settings(settings)

    people, _ = read_topics(settings, ["people"])
    for envelope, data in people:
        if isinstance(data, PersonUpserted):
            directory.apply(envelope, data)

    events, skipped = read_topics(settings, ["requests", "kudos"])
    events.sort(key=lambda pair: (event_time(pair[0]), pair[0].time, pair[0].id))

    store = Store(db, suffix=SUFFIX)  # people's totals and badge progress: in its table, in memory until the swap
    store.drop()  # its indexes are made after the swap: an index kept up to date on each insert slows a bulk load
    scorer = Scorer(store, rules, calendar, directory, clock)  # publishes nothing
    applier = Applier(store, rules, calendar, directory, clock, publish=False)
    seq = 0
    seen: set[str] = set()
    pending: list[tuple[PointsAwarded, str, int]] = []
    envelopes = [envelope for envelope, _ in events if not (envelope.id in seen or seen.add(envelope.id))]
    for start in range(0, len(envelopes), SCORE_BATCH):
        # Scored in batches as the live scorer's polls are (same awards as one at a time, tests
        # show): a guard, a request's facts, a submission day is written once per batch.
        for doc in scorer.score_batch(envelopes[start:start + SCORE_BATCH]):
            for award in doc["awards"]:
                seq += 1
                pending.append((PointsAwarded.model_validate(award), "rebuild", seq))
        if len(pending) >= REBUILD_BATCH:
            applier.apply_batch(pending)
            pending = []
    applier.apply_batch(pending)
    store.mark_upgraded()  # its read models were built by the write path itself
    swap(db, store)
    if publish:
        publish_state(settings, store.table)
    report = RebuildReport(events=len(seen), awards=seq, skipped=skipped, seconds=round(time.monotonic() - started, 2),
                           state=store.table)
    log.info("points rebuilt", extra={"events": report.events, "awards": report.awards, "skipped": report.skipped,
                                      "seconds": report.seconds, "people": len(store.table)})
    return report


def publish_state(settings: Settings, table: PointsTable) -> int:
    """Make the rebuilt totals and badge progress the points state: each person's record
    numbered after the one the changelog holds, and an empty one for a person it has that the
    rebuild gave nothing (state.publish_all_states); the points process restores it on start."""
    before: dict[str, int] = {}
    for _, data in read_topics(settings, [STATE_TOPIC])[0]:
        if isinstance(data, PointsState):
            before[data.person_id] = max(before.get(data.person_id, 0), data.n)
    producer = EventProducer(settings, client_id="points-rebuild")
    try:
        return publish_all_states(producer, table.people(), before)
    finally:
        producer.close()


def swap(db: Database, rebuilt: Store) -> None:
    """Replace each live collection by its rebuilt twin (the points process is stopped)."""
    written = set(db.list_collection_names())
    for name in Store.NAMES:
        source = name + rebuilt.suffix
        if source not in written:
            db[name].drop()  # the rebuild wrote nothing there: the live one goes empty too
            continue
        try:
            db.client.admin.command("renameCollection", f"{db.name}.{source}", to=f"{db.name}.{name}", dropTarget=True)
        except OperationFailure as exc:
            if exc.code == NOT_IMPLEMENTED:
                # FerretDB 1.24 renames, but not over an existing collection: drop it first.
                db[name].drop()
                db.client.admin.command("renameCollection", f"{db.name}.{source}", to=f"{db.name}.{name}")
                continue
            # No renameCollection on this server: copy instead.
            db[name].drop()
            batch = []
            for doc in db[source].find():
                batch.append(doc)
                if len(batch) == 1000:
                    db[name].insert_many(batch)
                    batch = []
            if batch:
                db[name].insert_many(batch)
            db[source].drop()
    for name in (*Store.FOLDED, *Store.OLD_LISTS):  # an older store's totals, progress and lists: superseded
        db[name].drop()
    Store(db).ensure_indexes()
