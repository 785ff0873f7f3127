"""How the scorer puts awards on the points topic (services/recognition/points/scorer.py): one
record per person, holding that person's awards in order, never more than AWARDS_PER_RECORD.
Pure logic: the records are built, nothing is sent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.recognition.points.scorer import Scorer
from shared.clock import ManualClock
from shared.events import decode
from shared.events.schemas import AWARDS_PER_RECORD, awards_in

NOW = datetime(2026, 11, 30, 9, tzinfo=timezone.utc)


def award(n: int, person: str, rule: str = "kudos_received") -> dict:
    return {"entry_id": f"e{n}", "person_id": person, "points": 10, "rule": rule, "reason": "Kudos received",
            "source_event_id": f"k{n}", "source_event_type": "kudos.given", "at": NOW + timedelta(seconds=n)}


def test_a_batchs_awards_go_out_as_one_record_per_person_in_order_and_split_when_many():
    scorer = Scorer(store=None, rules=None, calendar=None, directory=None, clock=ManualClock(NOW))
    many = AWARDS_PER_RECORD + 5
    awards = [award(0, "pia"), award(1, "li", "kudos_given"), award(2, "pia", "closed_the_loop")]
    awards += [award(10 + n, "rita") for n in range(many)]
    records = list(scorer._events(iter(awards)))
    read = [(e.subject, decode(e.to_bytes())[1]) for e in records]
    assert [(subject, [a.entry_id for a in awards_in(data)]) for subject, data in read] == [
        ("pia", ["e0", "e2"]), ("li", ["e1"]),
        ("rita", [f"e{10 + n}" for n in range(AWARDS_PER_RECORD)]), ("rita", [f"e{10 + n}" for n in range(AWARDS_PER_RECORD, many)])]
    assert read[0][1].rules == ["closed_the_loop", "kudos_received"]
    assert all(e.type == "points.awarded" and e.schemaversion == 2 for e in records)
    assert list(scorer._events(iter([]))) == []


def test_awards_too_large_for_one_record_go_out_in_several_in_order():
    """A person's awards with long reasons (or many counterparts) can be over the largest event
    (MAX_EVENT_BYTES) before AWARDS_PER_RECORD: they are split in halves, every award sent once,
    in order; an award that is not valid is still refused."""
    from shared.events import MAX_EVENT_BYTES, InvalidEvent

    scorer = Scorer(store=None, rules=None, calendar=None, directory=None, clock=ManualClock(NOW))
    long_reason = "x" * 4000
    awards = [{**award(n, "pia"), "reason": long_reason} for n in range(150)]  # ~600 KB in one record
    records = list(scorer._events(iter(awards)))
    assert len(records) > 1 and all(len(e.to_bytes()) <= MAX_EVENT_BYTES for e in records)
    assert [a.entry_id for e in records for a in awards_in(decode(e.to_bytes())[1])] == [f"e{n}" for n in range(150)]
    with pytest.raises(InvalidEvent, match="points"):
        list(scorer._events(iter([{**award(0, "pia"), "points": -1}, award(1, "pia")])))
