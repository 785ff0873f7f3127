"""Wiring of the points process: rules, store, the two scoring stages, relay, queries, app."""

from __future__ import annotations

from dataclasses import dataclass

from services.recognition.directory import Directory, DirectoryPersonDoc, directory_reader
from services.recognition.points.api import points_api
from services.recognition.points.applied import announce_applied, announce_changed_place
from services.recognition.points.config import STAGES, PointsSettings
from services.recognition.points import insights as insights_model
from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS, Insights
from services.recognition.points.applier import Applier
from services.recognition.points.queries import PointsQueries
from services.recognition.points.rebuild import read_topics
from services.recognition.points.state import TOPIC as STATE_TOPIC, PointsTable, state_reader
from services.recognition.points.rules import RuleSet, load_rules
from services.recognition.points.scorer import Scorer
from services.recognition.points.store import Store
from shared.auth import require_internal_token
from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.bus.outbox import OutboxRelay
from shared.calendar import BusinessCalendar, period_key
from shared.clock import Clock, clock_for
from shared.db import connect
from shared.events.schemas import awards_in
from shared.serve import ServiceRuntime
from shared.web import create_service_app, dependency_checks

SERVICE = "points"
# The points process's consumer groups and what they read: scoring, then applying the awards
# (the demo loader and the benchmarks wait for their lag to reach 0).
SCORE_GROUP, APPLY_GROUP = "points-score", "points-apply"
POINTS_GROUPS = {SCORE_GROUP: ("requests", "kudos"), APPLY_GROUP: ("points",)}
APPLY_GATHER = 3_000  # records (each a person's awards) one applier batch takes at most when behind (below)
APPLY_GATHER_BYTES = 2 * 1024 * 1024  # and their bytes: ~5,500 awards (a record holds 1 to AWARDS_PER_RECORD)
SCORE_GATHER = 5_000  # source events one scorer batch takes at most when behind
STATE_RESTORE_WAIT_S = 60.0  # how long the directory reader waits for the points state's restore
BATCH_WINDOW_MS = 900_000  # how long one scoring batch may take (kafka-python's max_poll_interval_ms)


@dataclass
class PointsRuntime(ServiceRuntime):
    rules: RuleSet = None
    store: Store = None
    scorer: Scorer = None
    applier: Applier = None
    queries: PointsQueries = None
    relay: OutboxRelay = None
    directory_reader: ConsumerRunner = None
    state_runner: ConsumerRunner = None
    score_runner: ConsumerRunner = None
    apply_runner: ConsumerRunner = None
    insights: Insights = None
    insights_runner: ConsumerRunner = None

    def stop(self) -> None:
        super().stop()
        self.store.table.close()


def build_runtime(settings: PointsSettings, clock: Clock | None = None) -> PointsRuntime:
    rules = load_rules(settings.rules_file)  # refuses a bad file with its line and reason
    clock = clock or clock_for(settings)
    calendar = BusinessCalendar.from_settings(settings)
    db = connect(settings, SERVICE)
    producer = EventProducer(settings, client_id=SERVICE)
    # People's totals and badge progress: in memory, restored from and written to their
    # changelog topic (state.py); the reader below restores it as the process starts.
    table = PointsTable(settings, producer)
    store = Store(db, table=table)
    store.ensure_indexes()
    store.upgrade()  # read models a store from before them lacks: one scan, the first time only
    if store.has_folded() or store.needs_ledger_fold():
        # An older store's totals, badge progress (in its collections) and ledger lists (from
        # its ledger): into the points state once, after reading what the changelog holds.
        table.load(data for _, data in read_topics(settings, [STATE_TOPIC])[0])
        store.fold_into_state()
        store.fold_ledger()
    DirectoryPersonDoc.ensure_indexes()
    directory = Directory()
    # The scorer publishes its awards itself before its consumer commits (scorer.py says why
    # that is as safe as an outbox); badges awarded go out through this relay.
    relay = OutboxRelay(producer, [store.badge_awards], poll_ms=settings.outbox_poll_ms, insert_only=[store.badge_awards],
                        journals=[store.badge_journal])
    scorer = Scorer(store, rules, calendar, directory, clock, publish=producer.publish_all)
    applier = Applier(store, rules, calendar, directory, clock, notify=relay.notify, notify_inserted=relay.notify_inserted)
    state_runner = state_reader(settings, table, producer)
    queries = PointsQueries(store, rules, calendar, directory, clock)
    insights = Insights(db, rules, calendar, directory, clock)
    insights.upgrade()  # person documents of an older store: folded into buckets once, offsets kept

    def on_person(envelope, data) -> None:
        before = directory.get(data.person_id)
        directory.apply(envelope, data)
        # The newest copy, whatever order the events came in.
        after = directory.get(data.person_id)
        if after is None:
            return
        if before is None:
            # New to us: only awards that came before the person (another topic) need fixing.
            # Their totals are in the points state: wait for its restore (as the process
            # starts, both readers load at once), unless its reader is not running at all.
            if state_runner.assigned.is_set():
                state_runner.caught_up.wait(STATE_RESTORE_WAIT_S)
            week = period_key(calendar, "week", clock.now())
            moved = store.totals_of(after.id, [week])[week] != 0
            shown = after.hidden
        else:
            moved = (before.department, before.role) != (after.department, after.role)
            # "Keep me off the leaderboards" turned on or off: the boards of now, the period
            # before and the one before that (movement) mark them, and their rankings follow.
            shown = before.hidden != after.hidden
        if (moved or shown) and "apply" in settings.stages:  # the boards are the applier's
            # Rare: totals by _id, a few boards by _id (conditional updates), no scan of history.
            changed = applier.person_changed(after, clock.now(), visibility=shown)
            # Live leaderboards (screens, portals) read their board again now, not at the next award.
            announce_changed_place(producer.publish_all, after.id, changed, clock)

    def on_source_events(deliveries) -> None:
        scorer.score_batch([d.envelope for d in deliveries])

    def on_awards(deliveries) -> None:
        announced: set[str] = set()

        def board_written(awards, keys) -> None:
            # A period's board has these awards now: its live leaderboards (gateway) refresh on
            # this notice, while the applier goes on with the other periods, badges and the ledger.
            announce_applied(producer.publish_all, awards, calendar, clock, keys)
            announced.update(a.entry_id for a in awards)

        # A record holds one person's awards (several, from one scorer batch): each is applied at
        # the record's partition and offset.
        items = [(award, str(d.partition), d.offset) for d in deliveries for award in awards_in(d.payload)]
        applier.apply_batch(items, on_boards=board_written)
        # The rest (awards applied before a crash, delivered again): announced before the runner
        # commits, so a crash in between sends it again (applied.py).
        announce_applied(producer.publish_all, [award for award, _, _ in items if award.entry_id not in announced],
                         calendar, clock)

    people = directory_reader(settings, directory, producer)
    people.handler = on_person
    # Both stages take a whole poll at once: a batch is a few bulk writes instead of many, and
    # each document a batch touches is written once, however many awards it takes. Behind (an
    # import, a restart), polls are large and the cost per award falls: 10k history kudos scored
    # in-process, applier batches of 1,000 -> 4,000 awards: FerretDB time 92 -> 41-53 s. Polls of
    # 5,000 awards held the process at 150-160 MB while a year was scored (target 150): 2,500. A
    # batch may take up to 15 minutes before the group gives the member's partitions to another
    # (at load average 30 a batch of 4,000 once outlasted kafka-python's default 5 minutes).
    # Behind, the applier gathered up to APPLY_GATHER awards (several polls, ~2.7 KB each held):
    # a batch's writes are per document (people's buckets, boards, ledger lists), so 10k history
    # kudos applied in batches of 10,000 awards took 15 s instead of 29 s (bench/scoring.py). On
    # the faster machine of 2026-11-30, 5,000 scored a year as fast (load + scoring 224-231 s,
    # 241 s at 10,000) and a batch holds half as much; the process still ended the year at
    # 144-150 MB (151.9 at 10,000): what it keeps then is not the last batch. Those batches
    # were rarely gathered (only after full polls); gathered from polls a tenth full, the points
    # process (apply, insights) ended the year at 163 MB with 5,000, 143-150 MB with 2,500,
    # 133.6 with 2,000 and 133.3 with 1,500 (thirteenth session): 2,000, polled as much at once.
    # Since insights runs beside the scorer (the points process applies only) and the scorer
    # stores nothing per event, the applier is the stage a backlog waits on: bigger batches write
    # fewer state records and board versions per award. The pipeline bench (100,000 events):
    # 2,000 1,870/s (the applier drained 14 s after the scorer), 3,000 1,928/s (11 s), 4,000
    # 2,074/s (7 s); the year bench's points process ended at 125, 133 and 142 MB (target 150):
    # 3,000 (seventeenth session; docs/performance.md).
    # The pipeline bench (40,000 events) moves with it, within its noise: 5,000 1,038-1,154/s,
    # 2,500 943-987/s, 2,000 858/s, 1,500 838/s.
    # (Those figures are of one record an award. Since the nineteenth session a record holds a
    # person's awards, 1 to 200: APPLY_GATHER counts records, and APPLY_GATHER_BYTES bounds what a
    # batch holds; polls of 1,000 gathering 3,000 records, ~8,500 awards a batch, were no faster
    # than these, docs/performance.md. A gathered award is ~2.6 KB of Python objects for ~0.5 KB
    # on the wire: at 4 MiB a batch held ~24 MB decoded, and the applier peaked at 150-153 MB
    # while a company-year was applied; at 2 MiB, 136 MB, twentieth session.)
    # The scorer gathers too (SCORE_GATHER): a batch's guards and request facts
    # are a few bulk writes whatever its size, and its awards one publish.
    # The applier and insights read only payloads: their deliveries drop the envelope's copy of
    # the data (payload_only), a third of what a gathered batch holds. The scorer reads only the
    # envelopes (their data as it came): its deliveries drop the typed payload (envelope_only).
    score_runner = ConsumerRunner(settings, group=SCORE_GROUP, topics=list(POINTS_GROUPS[SCORE_GROUP]),
                                  batch_handler=on_source_events, producer=producer, max_poll_records=1000, gather_records=SCORE_GATHER,
                                  max_poll_interval_ms=BATCH_WINDOW_MS, envelope_only=True)
    apply_runner = ConsumerRunner(settings, group=APPLY_GROUP, topics=list(POINTS_GROUPS[APPLY_GROUP]),
                                  batch_handler=on_awards, producer=producer, max_poll_records=APPLY_GATHER,
                                  gather_records=APPLY_GATHER, gather_bytes=APPLY_GATHER_BYTES,
                                  max_poll_interval_ms=BATCH_WINDOW_MS, payload_only=True)

    # Insights for managers (insights.py): a read model of its own, kept by its own group, so a
    # backlog there never holds up scoring (and the demo and benchmarks do not wait for it).
    # Behind, it takes up to GATHER events at once (several polls) and holds their changes, added
    # up per document, until FLUSH_EVENTS are held: then one write per touched document and the
    # commit, so a backlog costs a fraction of the writes (insights.py). Caught up, each batch
    # is written at once.
    insights_runner = ConsumerRunner(settings, group=INSIGHTS_GROUP, topics=list(INSIGHTS_TOPICS),
                                     batch_handler=insights.add, flush=insights.flush, flush_records=insights_model.FLUSH_EVENTS,
                                     producer=producer,
                                     max_poll_records=insights_model.POLL_RECORDS, gather_records=insights_model.GATHER,
                                     max_poll_interval_ms=BATCH_WINDOW_MS, payload_only=True,
                                     skip=insights.not_counted)

    def directory_loaded() -> None:
        if not people.caught_up.is_set():
            raise RuntimeError("the directory copy is still loading from the people topic")

    def state_loaded() -> None:
        if not state_runner.caught_up.is_set():
            raise RuntimeError("the points state is still being restored from its changelog")

    # Only a process that applies keeps the table (it writes it): scoring and insights never
    # read people's totals, and following the changelog cost the scoring process ~8 % of a core
    # while a backlog was applied, and a company's states in memory. A process without it
    # refuses the reads that need it (api.py); the gateway calls one that applies.
    keeps_table = "apply" in settings.stages
    checks = {**dependency_checks(settings, db), "directory": directory_loaded}
    if keeps_table:
        checks["points_state"] = state_loaded
    app = create_service_app(SERVICE, settings, checks)
    require_internal_token(app, settings.internal_token)
    app.extensions["points_queries"] = queries
    app.extensions["points_table_kept"] = keeps_table
    app.extensions["insights"] = insights
    app.extensions["clock"] = clock
    app.register_blueprint(points_api)
    # The stages this process runs (settings.points_stages; all by default). The relay sends the
    # badges the applier awards. The directory copy serves every process; the points state the
    # processes that apply.
    stages = {"score": [score_runner], "apply": [relay, apply_runner], "insights": [insights_runner]}
    workers = ([state_runner] if keeps_table else []) + [people] + [
        w for stage in STAGES if stage in settings.stages for w in stages[stage]]
    return PointsRuntime(
        settings=settings, app=app, producer=producer, workers=workers,
        rules=rules, store=store, scorer=scorer, applier=applier, queries=queries, relay=relay,
        directory_reader=people, state_runner=state_runner, score_runner=score_runner, apply_runner=apply_runner,
        insights=insights, insights_runner=insights_runner,
    )

