import json
from datetime import datetime, timezone

import pytest

from shared.bus.outbox import merge_update, outbox_update, with_outbox
from shared.events import (
    MAX_EVENT_BYTES,
    TOPICS,
    Envelope,
    InvalidEvent,
    build_event,
    decode,
    registered_types,
    topic_of,
)

PERSON = {"person_id": "p1", "email": "a@example.com", "name": "Łucja Ōtani", "role": "rep", "department": "sales"}


def test_built_event_has_the_envelope_attributes_and_survives_the_wire(clock):
    event = build_event("person.upserted", "p1", PERSON, source="requests", clock=clock)
    envelope, data = decode(event.to_bytes())
    assert envelope == event
    assert (envelope.type, envelope.source, envelope.subject, envelope.schemaversion) == ("person.upserted", "requests", "p1", 1)
    assert envelope.time == clock.now()
    assert data.name == "Łucja Ōtani"
    wire = json.loads(event.to_bytes())
    assert wire["specversion"] == "1.0" and wire["time"].endswith("Z")


def test_each_event_has_a_unique_id(clock):
    ids = {build_event("person.upserted", "p1", PERSON, source="t", clock=clock).id for _ in range(100)}
    assert len(ids) == 100


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "unparseable JSON"),
        (b"\xff\xfe", "unparseable JSON"),
        (b"[1, 2]", "not a JSON object"),
        (None, "tombstone"),
        (json.dumps({"id": "x"}).encode(), "lacks specversion"),
        (b"x" * (MAX_EVENT_BYTES + 1), "exceeds"),
    ],
)
def test_unreadable_messages_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(raw)


def _wire(clock, **changes):
    event = build_event("person.upserted", "p1", PERSON, source="t", clock=clock).to_dict()
    event.update(changes)
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"type": "person.exploded"}, "unknown event type"),
        ({"schemaversion": 7}, "unknown schema version 7"),
        ({"time": "yesterday"}, "not RFC 3339"),
        ({"time": "2026-01-01T10:00:00"}, "no timezone"),
        ({"subject": ""}, "subject must be a non-empty string"),
        ({"data": {**PERSON, "role": "wizard"}}, "data.role"),
        ({"data": {**PERSON, "extra": 1}}, "data.extra"),
    ],
)
def test_invalid_envelopes_and_bodies_are_refused_with_a_reason(clock, changes, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(_wire(clock, **changes))


def test_every_event_type_travels_on_a_known_topic():
    specs = registered_types()
    assert {s.topic for s in specs} == set(TOPICS)
    assert topic_of("person.upserted") == "people" and TOPICS["people"].compacted
    assert topic_of("kudos.given") == "kudos" and topic_of("badge.awarded") == "badges"


def test_outbox_update_merges_with_the_state_change(clock):
    event = build_event("person.upserted", "p1", PERSON, source="t", clock=clock)
    update = merge_update({"$set": {"name": "x"}, "$inc": {"version": 1}}, [event])
    assert update["$set"] == {"name": "x", "outbox_pending": True}
    assert update["$push"]["outbox"]["$each"][0]["id"] == event.id
    assert update["$inc"] == {"version": 1}
    with pytest.raises(ValueError):
        merge_update({"$set": {"outbox_pending": False}}, [event])
    assert with_outbox({"_id": 1}, [])["outbox_pending"] is False
    assert outbox_update([event])["$push"]["outbox"]["$each"][0]["time"].endswith("Z")


def test_envelope_times_must_be_timezone_aware():
    with pytest.raises(ValueError):
        Envelope(id="1", type="t", source="s", time=datetime(2026, 1, 1), subject="s", data={}).to_bytes()
    aware = Envelope(id="1", type="t", source="s", time=datetime(2026, 1, 1, tzinfo=timezone.utc), subject="s", data={})
    assert Envelope.from_bytes(aware.to_bytes()) == aware


def test_event_ids_are_random_uuids_unique_in_a_process_and_across_a_fork():
    import os
    import uuid as uuidlib

    from shared.events.envelope import new_event_id

    ids = [new_event_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert {uuidlib.UUID(i).version for i in ids} == {4} and {uuidlib.UUID(i).variant for i in ids} == {uuidlib.RFC_4122}
    # A forked child (a server's worker) does not repeat its parent's ids.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child != new_event_id() and uuidlib.UUID(child).version == 4


class _SentRecords:
    """Stands in for kafka-python's producer: keeps what was sent."""

    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": dict(headers or [])})


def _producer():
    from shared.bus.kafka import EventProducer
    from shared.config import load_settings

    producer = object.__new__(EventProducer)  # no broker: its client is replaced
    producer.settings, producer._producer = load_settings(env={}), _SentRecords()
    return producer


AWARD = {"entry_id": "e1", "person_id": "sup1", "points": 10, "rule": "kudos_received", "reason": "Thanked",
         "source_event_id": "k1", "source_event_type": "kudos.given", "at": datetime(2026, 11, 30, 9, tzinfo=timezone.utc)}


def awards_of(*rules: str, person: str = "sup1") -> dict:
    """A person's awards record (points.awarded v2): one award per rule given."""
    awards = [{**AWARD, "entry_id": f"e-{i}", "person_id": person, "rule": rule} for i, rule in enumerate(rules)]
    return {"person_id": person, "awards": awards, "rules": sorted(set(rules))}


def test_a_persons_awards_travel_with_their_rules_as_a_header_and_insights_passes_rules_it_does_not_count_undecoded(clock):
    from types import SimpleNamespace

    from services.recognition.points.insights import Insights
    from services.recognition.points.rules import DEFAULT_RULES, load_rules

    producer = _producer()
    producer.publish(build_event("points.awarded", "sup1", awards_of("kudos_received", "kudos_given"), source="points", clock=clock))
    producer.publish(build_event("points.awarded", "sup1", awards_of("kudos_received", "closed_the_loop"), source="points", clock=clock))
    kudos = build_event("kudos.given", "k1", {"kudos_id": "k1", "giver_id": "rep1", "recipient_ids": ["sup1"], "message": "thanks", "gesture": "thanks",
                                              "at": clock.now()}, source="kudos", clock=clock)
    producer.publish(kudos)
    received, mixed, given = producer._producer.sent
    assert received["headers"] == {"ce_type": b"points.awarded", "ce_id": received["headers"]["ce_id"],
                                   "data_rules": b"kudos_given,kudos_received"}
    assert mixed["headers"]["data_rules"] == b"closed_the_loop,kudos_received" and "data_rules" not in given["headers"]

    insights = Insights({"insights": None, "insight_requests": None}, load_rules(DEFAULT_RULES), calendar=None, directory=None)
    as_read = [SimpleNamespace(topic="points", headers=list(r["headers"].items()), value=r["value"]) for r in (received, mixed, given)]
    # Kudos received and given are not part of the internal-selling score; closing the loop is
    # (so a record with it is decoded, whatever else it holds); a kudos is no award.
    assert [insights.not_counted(m) for m in as_read] == [True, False, False]
    # A version-1 record (one award, its rule as ``data_rule``) from before is passed by the same
    # way; one without a header at all is decoded and looked at.
    assert insights.not_counted(SimpleNamespace(topic="points", headers=[("ce_type", b"points.awarded"), ("data_rule", b"kudos_received")],
                                                value=b"{}")) is True
    assert insights.not_counted(SimpleNamespace(topic="points", headers=[("ce_type", b"points.awarded")], value=received["value"])) is False


def test_a_persons_awards_record_holds_only_their_awards_and_names_every_rule(clock):
    with pytest.raises(InvalidEvent, match="the record's person's"):
        build_event("points.awarded", "sup1", {**awards_of("kudos_received"), "person_id": "sup2"}, source="points", clock=clock)
    with pytest.raises(InvalidEvent, match="rules lists"):
        build_event("points.awarded", "sup1", {**awards_of("kudos_received", "closed_the_loop"), "rules": ["kudos_received"]},
                    source="points", clock=clock)
    with pytest.raises(InvalidEvent, match="awards"):
        build_event("points.awarded", "sup1", {"person_id": "sup1", "awards": [], "rules": ["kudos_received"]}, source="points", clock=clock)
    # What a consumer reads from either version: the awards, in order.
    from shared.events import decode
    from shared.events.schemas import awards_in

    record = build_event("points.awarded", "sup1", awards_of("kudos_received", "closed_the_loop"), source="points", clock=clock)
    assert [a.rule for a in awards_in(decode(record.to_bytes())[1])] == ["kudos_received", "closed_the_loop"]
    from shared.events.envelope import make_envelope

    older = make_envelope("points.awarded", "sup1", {**AWARD, "at": AWARD["at"].isoformat()}, source="points", clock=clock, schemaversion=1)
    assert [a.entry_id for a in awards_in(decode(older.to_bytes())[1])] == ["e1"]


def test_an_event_is_validated_once_as_built_and_one_made_by_hand_is_validated_before_it_is_sent(clock, monkeypatch):
    from shared.events import registry
    from shared.events.envelope import make_envelope

    checks = []
    real = registry._check
    monkeypatch.setattr(registry, "_check", lambda spec, data: checks.append(spec.type) or real(spec, data))
    producer = _producer()
    producer.publish(build_event("points.awarded", "sup1", awards_of("kudos_received"), source="points", clock=clock))
    assert checks == ["points.awarded"]  # built: validated; sent: not again
    bad = make_envelope("points.awarded", "sup1", {**AWARD, "at": AWARD["at"].isoformat(), "points": -5}, source="points", clock=clock,
                        schemaversion=1)
    with pytest.raises(InvalidEvent, match="points"):
        producer.publish(bad)
    assert len(producer._producer.sent) == 1  # the bad one was not sent
    # A consumer's copy without its data is no longer the validated event.
    assert not build_event("points.awarded", "sup1", awards_of("kudos_received"), source="points", clock=clock).without_data().__dict__.get("_valid")
