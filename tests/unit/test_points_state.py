"""The points state table (services/recognition/points/state.py): which copy of a person wins,
and when the applier must wait for its reader. Pure logic: no Kafka, no database."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from services.recognition.points.state import PersonState, PointsTable
from shared.bus.consumer import Delivery
from shared.events import build_event
from shared.events.schemas import PointsState


def delivery(state: PersonState, partition: int, offset: int) -> Delivery:
    data = PointsState(**state.record())
    return Delivery(build_event("points.state", state.person_id, state.record(), source="points"), data, "points-state",
                    partition, offset)


def test_a_copy_older_than_the_one_held_changes_nothing():
    table = PointsTable()
    table.write([PersonState("pia", totals={"all": [10, "pricing", "support"]})])
    newer = table.get("pia").copy()
    newer.totals["all"] = [20, "pricing", "support"]
    table.write([newer])
    assert table.get("pia").n == 2 and table.get("pia").points("all") == 20
    # The reader's late copy of the first write (n=1) arrives after the second: ignored.
    table.apply([delivery(PersonState("pia", n=1, totals={"all": [10, "pricing", "support"]}), 0, 0)])
    assert table.get("pia").points("all") == 20
    # Another writer's newer copy (after a rebalance) wins.
    table.apply([delivery(PersonState("pia", n=3, totals={"all": [35, "pricing", "support"]}), 0, 1)])
    assert table.get("pia").points("all") == 35
    assert table.key_totals("all") == {"pia": 35} and table.totals_of("nobody", ["all"]) == {"all": 0}


def test_the_state_a_batch_changes_is_a_copy_until_written():
    table = PointsTable()
    table.write([PersonState("li", totals={"2026-W48": [5, "legal", "support"]}, progress={"badges": {"clutch": {"hits": [1]}}})])
    copy = table.get("li").copy()
    copy.totals["2026-W48"][0] = 99
    copy.applied["0"] = 7
    assert table.get("li").points("2026-W48") == 5 and table.get("li").applied == {}
    assert table.totals_with_scope("li", ["2026-W48", "2026-W47"]) == {
        "2026-W48": {"points": 5, "department": "legal", "role": "support"},
        "2026-W47": {"points": 0, "department": None, "role": None}}
    assert table.progress_of("li") == {"badges": {"clutch": {"hits": [1]}}}


def test_the_applier_waits_only_for_records_another_writer_put_in_the_changelog():
    ends = {0: 0, 1: 0}
    table = PointsTable(end_offsets=lambda: dict(ends))
    table.ensure_current(timeout=1)  # an empty changelog: nothing to wait for

    # Another process wrote partition 1 up to offset 3 (a rebalance gave us its people).
    ends[1] = 4
    with pytest.raises(TimeoutError):
        table.ensure_current(timeout=0)
    table.apply([delivery(PersonState("rita", n=1, totals={"all": [5, "sales", "rep"]}), 1, 2)])
    with pytest.raises(TimeoutError):
        table.ensure_current(timeout=0)  # offset 3 not read yet
    done = []
    waiter = threading.Thread(target=lambda: (table.ensure_current(timeout=600), done.append(True)))
    waiter.start()
    table.apply([delivery(PersonState("rita", n=2, totals={"all": [15, "sales", "rep"]}), 1, 3)])
    waiter.join()
    assert done == [True] and table.get("rita").points("all") == 15


def test_the_reader_passes_records_this_process_wrote_without_decoding_them_and_reads_the_rest():
    class Producer:  # the broker's acknowledgements: each record's partition and offset
        def __init__(self):
            self.next = {0: 0, 1: 0}

        def publish_all(self, events):
            metas = []
            for event in events:
                partition = 0 if event.subject < "m" else 1
                metas.append(SimpleNamespace(partition=partition, offset=self.next[partition]))
                self.next[partition] += 1
            return metas

    def message(partition, offset):
        return SimpleNamespace(partition=partition, offset=offset)

    ends = {0: 0, 1: 0}
    producer = Producer()
    table = PointsTable(producer=producer, end_offsets=lambda: dict(ends))
    table.write([PersonState("ana", totals={"all": [5, "sales", "rep"]}), PersonState("zoe", totals={"all": [7, "legal", "rep"]})])
    table.write([PersonState("ben", totals={"all": [3, "sales", "rep"]})])
    # ana at 0:0, ben at 0:1 and zoe at 1:0 are this process's: passed, and counted as read.
    assert [table.own_record(message(0, 0)), table.own_record(message(0, 1)), table.own_record(message(1, 0))] == [True] * 3
    # Another writer's record after them (a rebalance) is read: not this process's.
    ends.update({0: 3, 1: 1})
    producer.next[0] = 3
    assert table.own_record(message(0, 2)) is False
    with pytest.raises(TimeoutError):
        table.ensure_current(timeout=0)  # 0:2 is not in the table yet
    table.apply([delivery(PersonState("ann", n=1, totals={"all": [9, "sales", "rep"]}), 0, 2)])
    table.ensure_current(timeout=0)
    assert table.key_totals("all") == {"ana": 5, "ben": 3, "zoe": 7, "ann": 9}
    # A record read before its write was acknowledged here (decoded then) is let go once the
    # reader is past it: what stays listed is only what is still ahead of the reader.
    table.write([PersonState("cat", totals={"all": [1, "sales", "rep"]}), PersonState("dan", totals={"all": [2, "sales", "rep"]})])
    assert table.own_record(message(0, 4)) is True  # 0:3 (cat) was read before: passed over
    assert list(table._own[0]) == [] and table.own_record(message(0, 3)) is False
