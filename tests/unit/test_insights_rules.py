"""Insights without I/O: which rules make the internal-selling score, histogram quantiles."""

from __future__ import annotations

from services.recognition.points.insights import rep_rules
from services.recognition.points.insights_docs import BINS, _nested, bin_of, quantile, share
from services.recognition.points.rules import DEFAULT_RULES, load_rules


def test_the_internal_selling_score_is_the_rep_rules_of_the_rules_file():
    assert rep_rules(load_rules(DEFAULT_RULES)) == {
        "complete_brief", "incomplete_brief", "info_answered_within_a_day", "deal_update", "deal_update_week",
        "closed_the_loop", "thanked_the_helpers"}


def test_hours_fall_in_bins_and_quantiles_are_their_upper_bounds():
    assert [BINS[bin_of(h)] for h in (0, 0.25, 0.3, 1.0, 7.9, 8.0, 8.1, 39, 41, 199, 500)] == [
        0.25, 0.25, 0.5, 1.0, 8.0, 8.0, 10.0, 40.0, 50.0, 200.0, float("inf")]
    hist = {str(bin_of(2.0)): 9, str(bin_of(30.0)): 1}
    assert (quantile(hist, 0.5), quantile(hist, 0.9), quantile(hist, 0.95)) == (2.0, 2.0, 30.0)
    assert quantile({str(bin_of(500)): 1}, 0.5) is None  # beyond the last bound: unknown, not infinite


def test_small_helpers():
    assert _nested({"ack.3": 1, "o.requests|0": 5, "received": 2}) == {"ack": {"3": 1}, "o": {"requests|0": 5}, "received": 2}
    assert (share(1, 3), share(0, 0)) == (0.3333, None)


def test_an_event_adds_to_the_periods_not_yet_over_and_history_to_all_time_only():
    from datetime import datetime, timedelta, timezone

    from services.recognition.points.insights import Insights
    from shared.calendar import BusinessCalendar
    from shared.clock import ManualClock
    from shared.config import Settings

    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a Thursday in week 48, November, Q4
    insights = Insights({"insights": None, "insight_requests": None}, load_rules(DEFAULT_RULES),
                        BusinessCalendar.from_settings(Settings()), directory=None, clock=ManualClock(now))
    insights.apply_batch([])  # a batch sets "now" for the periods it writes
    assert insights._keys(now) == ["2026-W48", "2026-11", "2026-Q4", "all"]
    assert insights._keys(now - timedelta(days=7)) == ["2026-11", "2026-Q4", "all"]  # last week: over
    assert insights._keys(now - timedelta(days=60)) == ["all"]  # September: history
    assert insights._keys(now + timedelta(days=7)) == ["2026-W49", "2026-12", "2026-Q4", "all"]  # clock skew: kept


def test_a_bucket_takes_each_persons_events_once_also_beyond_a_folded_persons_own_offsets():
    from services.recognition.points.insights import Insights
    from services.recognition.points.insights_docs import Marks

    def touch(offset, who, n=1):
        return ("kudos|0", offset, who, {f"{who}.kudos_received": n}, {})

    # Rita's own document (an older store) had taken offset 9; the bucket, folded, is at 5.
    marks = Marks({"kudos|0": 5}, {"rita": {"kudos|0": 9}})
    change = Insights._change([touch(4, "pia"), touch(7, "rita"), touch(7, "pia"), touch(10, "rita"),
                               touch(10, "jo")], marks)
    # One event may touch two people of one bucket (offset 10): both count; Rita's 7 she had.
    assert change.inc == {"pia.kudos_received": 1, "rita.kudos_received": 1, "jo.kudos_received": 1}
    assert change.taken == {"kudos|0": 10} and change.first == {"kudos|0": 7} and change.sets == {}
    # Delivered again within one batch: once.
    assert Insights._change([touch(11, "pia"), touch(11, "pia")], marks).inc == {"pia.kudos_received": 1}
    assert Insights._change([touch(5, "pia"), touch(9, "rita")], marks) is None


def test_a_persons_field_in_a_bucket_is_never_one_of_the_buckets_own():
    from services.recognition.points.insights_docs import _person_key

    assert [_person_key(p) for p in ("o", "l", "_id", "v", "rita", "a.b", "%o")] == ["%o", "%l", "%_id", "%v", "rita", "a%2Eb",
                                                                                 "%25o"]
