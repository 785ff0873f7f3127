"""Live leaderboards: the points service's ``points.applied`` notice (what a batch changed) and
the gateway hub handing it to the subscribers whose board it changed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from services.gateway.live import LiveHub
from services.recognition.points.applied import announce_applied, applied_events
from shared.calendar import BusinessCalendar
from shared.clock import ManualClock
from shared.config import load_settings
from shared.events import decode
from shared.events.schemas import APPLIED_MAX_PEOPLE, PointsAwarded

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)  # a Wednesday: week 2026-W48


def award(person: str, points: int, at: datetime = NOW, n: int = 0) -> PointsAwarded:
    return PointsAwarded(entry_id=f"e-{person}-{n}", person_id=person, points=points, rule="kudos_received",
                         reason="kudos", source_event_id=f"s{n}", source_event_type="kudos.given", at=at)


@pytest.fixture
def calendar() -> BusinessCalendar:
    return BusinessCalendar.from_settings(load_settings(env={}))


def test_the_notice_names_the_people_and_boards_whose_points_changed(calendar, clock):
    batch = [award("pia", 10), award("rita", 0), award("pia", 5, n=1), award("li", 10, datetime(2026, 10, 1, 9, tzinfo=timezone.utc))]
    [event] = applied_events(batch, calendar, clock)
    envelope, data = decode(event.to_bytes())
    assert (envelope.type, envelope.subject, envelope.source) == ("points.applied", "leaderboards", "points")
    assert data.person_ids == ["pia", "li"]  # rita's award is capped: no board changed for her
    assert data.period_keys == ["2026-10", "2026-11", "2026-Q4", "2026-W40", "2026-W48", "all"]
    assert data.awards == 3


def test_no_points_no_notice_and_many_people_several_notices(calendar, clock):
    assert applied_events([award("rita", 0)], calendar, clock) == []
    events = applied_events([award(f"p{i}", 1) for i in range(APPLIED_MAX_PEOPLE + 1)], calendar, clock)
    assert [len(e.data["person_ids"]) for e in events] == [APPLIED_MAX_PEOPLE, 1]


def test_an_outage_is_raised_for_a_retry_and_a_refusal_only_logged(calendar, clock):
    def down(_events):
        raise KafkaTimeoutError("broker away")

    def refused(_events):
        raise MessageSizeTooLargeError("too big")

    with pytest.raises(KafkaTimeoutError):  # the consumer retries the batch: the notice goes out then
        announce_applied(down, [award("pia", 10)], calendar, clock)
    announce_applied(refused, [award("pia", 10)], calendar, clock)  # the awards stay applied


def test_the_hub_hands_a_notice_to_the_boards_it_changed_at_once(calendar):
    hub = LiveHub(load_settings(env={}), clock=ManualClock(NOW))
    got: dict[str, list] = {"week": [], "month": [], "quarter": [], "kudos": []}
    for period in ("week", "month", "quarter"):
        hub.subscribe("leaderboardChanged", {"period": period}, got[period].append)
    hub.subscribe("kudosGiven", {}, got["kudos"].append)

    [this_week] = applied_events([award("pia", 10)], calendar, ManualClock(NOW))
    hub.publish(this_week)
    assert [len(got[k]) for k in ("week", "month", "quarter", "kudos")] == [1, 1, 1, 0]

    # History from last spring changes no board a live leaderboard shows (last week's: movement).
    [old] = applied_events([award("li", 10, datetime(2026, 4, 1, 9, tzinfo=timezone.utc))], calendar, ManualClock(NOW))
    hub.publish(old)
    assert [len(got[k]) for k in ("week", "month", "quarter")] == [1, 1, 1]
    [last_week] = applied_events([award("li", 10, datetime(2026, 11, 18, 9, tzinfo=timezone.utc))], calendar, ManualClock(NOW))
    hub.publish(last_week)
    assert [len(got[k]) for k in ("week", "month", "quarter")] == [2, 2, 2]
