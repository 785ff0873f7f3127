"""The scoring rules file: the shipped defaults encode the brief's recognition rules, a bad
file is refused with its line and the reason, and the pure helpers (conditions, badge tiers,
weekly streaks, ledger entry ids) compute what they promise.

Event data is built with ``build_event(...).data``, i.e. exactly as a consumer reads it off the
wire: datetimes are strings, enums plain strings, booleans JSON booleans.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.recognition.points.domain import Condition, Rule, RuleSet, badge_level, consecutive_weeks
from services.recognition.points.rules import DEFAULT_RULES, RulesError, load_rules, parse_rules
from services.recognition.points.store import entry_id
from shared.config import ConfigError
from shared.events import build_event

UTC = timezone.utc
AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
SRC = "team-rules.yaml"
SHIPPED = DEFAULT_RULES.read_text(encoding="utf-8")

REP = "p-rep-ana"
SUPPORT_1 = "p-sup-bram"
SUPPORT_2 = "p-sup-chen"
REQUEST = "r-1001"


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def wire(type: str, data: dict[str, Any], subject: str = REQUEST, source: str = "requests") -> dict[str, Any]:
    """The event's data as a consumer sees it (validated, then serialised to JSON types)."""
    return build_event(type, subject, data, source=source).data


def request_data(type: str, *, status: str, actor: str = REP, **extra: Any) -> dict[str, Any]:
    base = {"request_id": REQUEST, "requester_id": REP, "department": "pricing", "actor_id": actor,
            "status": status, "at": AT}
    return wire(type, {**base, **extra})


def delivered(*, on_time: bool, rush: bool, assignees: list[str] | None = None) -> dict[str, Any]:
    return request_data(
        "request.delivered", status="delivered", actor=SUPPORT_1,
        assignee_ids=assignees or [SUPPORT_1, SUPPORT_2],
        priority="rush" if rush else "normal", rush=rush,
        needed_by=datetime(2026, 11, 30, 16, tzinfo=UTC), on_time=on_time, notice_business_hours=20.5,
    )


def submitted(*, complete: bool) -> dict[str, Any]:
    return request_data(
        "request.submitted", status="submitted", kind="pricing", title="Volume discount for Acme",
        customer="Acme BV", deal_name="Acme renewal 2027", deal_value=125000.0,
        commitment="Told Acme we'd have a price by Friday" if complete else None,
        details_length=140 if complete else 20, needed_by=datetime(2026, 12, 3, 16, tzinfo=UTC),
        priority="normal", notice_business_hours=37.5, brief_complete=complete,
        brief_gaps=[] if complete else ["commitment: say what was committed to the customer"],
    )


def kudos_given(recipients: list[str], request_id: str | None = REQUEST) -> dict[str, Any]:
    return wire("kudos.given", {
        "kudos_id": "k-77", "giver_id": REP, "recipient_ids": recipients,
        "message": "Thanks for turning the Acme pricing around in a day!", "values": ["customer_first"],
        "gesture": "coffee", "request_id": request_id, "at": AT,
    }, subject="k-77", source="kudos")


def ids(matched: list[Rule]) -> list[str]:
    return [r.id for r in matched]


def points_per_person(matched: list[Rule], data: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for rule in matched:
        for person in rule.awardees(data):
            totals[person] = totals.get(person, 0) + rule.points
    return totals


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the ``nth`` line whose stripped text equals ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == needle]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} time(s) in the text"
    return hits[nth - 1]


def broken(old: str, new: str) -> str:
    """The shipped text with exactly one occurrence of ``old`` replaced."""
    assert SHIPPED.count(old) == 1, f"{old!r} occurs {SHIPPED.count(old)} times in rules.yaml"
    return SHIPPED.replace(old, new)


# -- 1. the shipped file --------------------------------------------------------------------------

def test_shipped_rules_load_from_the_default_path_and_from_a_copy(tmp_path):
    default = load_rules()
    copy = tmp_path / "rules.yaml"
    copy.write_text(SHIPPED, encoding="utf-8")
    copied = load_rules(copy)
    assert copied.source == str(copy)
    assert default.source == str(DEFAULT_RULES)
    assert [r.id for r in copied.rules] == [r.id for r in default.rules]
    assert default.rules == copied.rules and default.badges == copied.badges


def test_shipped_file_has_exactly_the_badges_of_the_brief(rules):
    assert {bid: (b.name, b.kind, b.tiers) for bid, b in rules.badges.items()} == {
        "internal_seller": ("Internal Seller", "count", (("bronze", 10), ("silver", 50), ("gold", 200))),
        "closed_loop": ("Closed Loop", "count", ((None, 10),)),
        "great_brief": ("Great Brief", "streak", ((None, 20),)),
        "grateful": ("Grateful", "distinct", ((None, 10),)),
        "clutch": ("Clutch", "count", ((None, 5),)),
        "fast_responder": ("Fast Responder", "count", ((None, 25),)),
        "team_favorite": ("Team Favorite", "distinct", ((None, 10),)),
        "streak": ("Streak", "weekly_streak", ((None, 4),)),
    }
    assert all(b.description for b in rules.badges.values())


def test_shipped_file_sets_the_giver_to_receiver_cap(rules):
    assert rules.giver_to_receiver_monthly_points == 30


def test_shipped_rules_ids_and_event_types(rules):
    assert ids(list(rules.rules)) == [
        "acknowledged_within_sla", "delivered_on_time", "delivered_late", "rush_delivered_on_time",
        "kudos_received", "kudos_added_on", "complete_brief", "incomplete_brief",
        "info_answered_within_a_day", "deal_update", "deal_update_week", "closed_the_loop",
        "thanked_the_helpers", "kudos_given",
    ]
    assert rules.event_types == frozenset({
        "request.acknowledged", "request.delivered", "kudos.given", "kudos.added_on",
        "request.submitted", "request.info_provided", "request.deal_updated", "request.closed",
    })


def test_each_rule_remembers_the_line_it_starts_on(rules):
    for rule in rules.rules:
        assert rule.line == line_of(SHIPPED, f"- id: {rule.id}"), rule.id


def test_rules_error_is_a_config_error():
    assert issubclass(RulesError, ConfigError)


def test_a_missing_rules_file_is_refused_with_its_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RulesError) as info:
        load_rules(missing)
    assert str(info.value).startswith(f"{missing}: cannot read the rules file")


def test_a_broken_file_on_disk_is_named_by_its_path(tmp_path):
    path = tmp_path / "rules.yaml"
    text = broken("version: 1", "version: 2")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value) == f"{path} line {line_of(text, 'version: 2')}: version must be 1"


# -- 2. the brief's rules, event by event -----------------------------------------------------------

@pytest.mark.parametrize("hours, expected", [(0.0, ["acknowledged_within_sla"]), (3.99, ["acknowledged_within_sla"]),
                                             (4.0, ["acknowledged_within_sla"]), (4.01, []), (12.0, [])])
def test_acknowledging_within_four_business_hours_earns_five(rules, hours, expected):
    data = request_data("request.acknowledged", status="acknowledged", actor=SUPPORT_1,
                        business_hours_since_submitted=hours)
    matched = rules.for_event("request.acknowledged", data)
    assert ids(matched) == expected
    if expected:
        assert points_per_person(matched, data) == {SUPPORT_1: 5}
        assert matched[0].badges == ("fast_responder",)
    else:
        assert points_per_person(matched, data) == {}


def test_on_time_delivery_earns_each_assignee_twenty(rules):
    data = delivered(on_time=True, rush=False)
    assert data["on_time"] is True and data["priority"] == "normal"
    matched = rules.for_event("request.delivered", data)
    assert ids(matched) == ["delivered_on_time"]
    assert points_per_person(matched, data) == {SUPPORT_1: 20, SUPPORT_2: 20}


def test_late_delivery_earns_each_assignee_five(rules):
    data = delivered(on_time=False, rush=False)
    matched = rules.for_event("request.delivered", data)
    assert ids(matched) == ["delivered_late"]
    assert points_per_person(matched, data) == {SUPPORT_1: 5, SUPPORT_2: 5}


def test_rush_on_time_delivery_matches_two_rules_for_thirty_five_each(rules):
    data = delivered(on_time=True, rush=True)
    matched = rules.for_event("request.delivered", data)
    assert ids(matched) == ["delivered_on_time", "rush_delivered_on_time"]
    assert [r.points for r in matched] == [20, 15]
    assert points_per_person(matched, data) == {SUPPORT_1: 35, SUPPORT_2: 35}
    assert matched[1].badges == ("clutch",)


def test_rush_late_delivery_earns_only_five(rules):
    data = delivered(on_time=False, rush=True)
    matched = rules.for_event("request.delivered", data)
    assert ids(matched) == ["delivered_late"]
    assert points_per_person(matched, data) == {SUPPORT_1: 5, SUPPORT_2: 5}


def test_an_assignee_listed_twice_is_awarded_once(rules):
    data = delivered(on_time=True, rush=False, assignees=[SUPPORT_1, SUPPORT_1, SUPPORT_2])
    rule = rules.for_event("request.delivered", data)[0]
    assert rule.awardees(data) == [SUPPORT_1, SUPPORT_2]


def test_kudos_given_matches_received_thanked_and_given(rules):
    data = kudos_given([SUPPORT_1, SUPPORT_2])
    matched = {r.id: r for r in rules.for_event("kudos.given", data)}
    assert list(matched) == ["kudos_received", "thanked_the_helpers", "kudos_given"]

    received = matched["kudos_received"]
    assert received.awardees(data) == [SUPPORT_1, SUPPORT_2]
    assert received.points == 10
    assert received.giver == "giver_id" and data[received.giver] == REP
    assert received.counterparts(data) == [REP]
    assert received.counterpart_role == "rep"
    assert received.badges == ("team_favorite",)

    thanked = matched["thanked_the_helpers"]
    assert thanked.awardees(data) == [REP]
    assert thanked.points == 5
    assert thanked.requires == "linked_request_delivered"
    assert thanked.limit_per_month == 10

    given = matched["kudos_given"]
    assert given.awardees(data) == [REP]
    assert given.points == 0
    assert given.counterparts(data) == [SUPPORT_1, SUPPORT_2]
    assert given.badges == ("grateful",)

    assert points_per_person(list(matched.values()), data) == {SUPPORT_1: 10, SUPPORT_2: 10, REP: 5}


def test_kudos_add_on_earns_each_recipient_five_and_names_the_adder_as_giver(rules):
    data = wire("kudos.added_on", {"kudos_id": "k-77", "actor_id": "p-mgr-dana", "giver_id": REP,
                                   "recipient_ids": [SUPPORT_1, SUPPORT_2], "message": "+1, great work", "at": AT},
                subject="k-77", source="kudos")
    matched = rules.for_event("kudos.added_on", data)
    assert ids(matched) == ["kudos_added_on"]
    assert points_per_person(matched, data) == {SUPPORT_1: 5, SUPPORT_2: 5}
    assert data[matched[0].giver] == "p-mgr-dana"


def test_complete_brief_earns_the_requester_ten(rules):
    data = submitted(complete=True)
    matched = rules.for_event("request.submitted", data)
    assert ids(matched) == ["complete_brief"]
    assert points_per_person(matched, data) == {REP: 10}
    assert matched[0].badges == ("great_brief",) and matched[0].resets == ()


def test_incomplete_brief_earns_nothing_and_resets_great_brief(rules):
    data = submitted(complete=False)
    matched = rules.for_event("request.submitted", data)
    assert ids(matched) == ["incomplete_brief"]
    assert points_per_person(matched, data) == {REP: 0}
    assert matched[0].resets == ("great_brief",) and matched[0].badges == ()


@pytest.mark.parametrize("hours, expected", [(0.25, ["info_answered_within_a_day"]),
                                             (8.0, ["info_answered_within_a_day"]), (8.5, []), (30.0, [])])
def test_answering_an_info_request_within_a_business_day_earns_ten(rules, hours, expected):
    data = request_data("request.info_provided", status="in_progress", business_hours_to_answer=hours)
    matched = rules.for_event("request.info_provided", data)
    assert ids(matched) == expected
    assert points_per_person(matched, data) == ({REP: 10} if expected else {})


@pytest.mark.parametrize("status", ["submitted", "acknowledged", "in_progress", "waiting_on_rep"])
def test_deal_update_on_an_open_request_counts_once_per_five_days_and_towards_the_streak(rules, status):
    data = request_data("request.deal_updated", status=status, text="Acme moved the signing to next week",
                        business_hours_since_last_update=12.5)
    matched = rules.for_event("request.deal_updated", data)
    assert ids(matched) == ["deal_update", "deal_update_week"]
    update, week = matched
    assert (update.points, update.once_per_key, update.once_per_business_days) == (5, "request_id", 5)
    assert data[update.once_per_key] == REQUEST
    assert update.badges == ("internal_seller",)
    assert (week.points, week.badges, week.once_per_key) == (0, ("streak",), None)
    assert points_per_person(matched, data) == {REP: 5}


def test_deal_update_on_a_delivered_request_only_counts_towards_the_streak(rules):
    data = request_data("request.deal_updated", status="delivered", text="Signed!")
    assert data["business_hours_since_last_update"] is None
    matched = rules.for_event("request.deal_updated", data)
    assert ids(matched) == ["deal_update_week"]
    assert points_per_person(matched, data) == {REP: 0}


@pytest.mark.parametrize("hours, expected", [(0.0, ["closed_the_loop"]), (24.0, ["closed_the_loop"]),
                                             (24.5, []), (None, [])])
def test_closing_the_loop_within_three_business_days_earns_fifteen(rules, hours, expected):
    data = request_data("request.closed", status="closed", outcome="won", business_hours_since_delivered=hours)
    matched = rules.for_event("request.closed", data)
    assert ids(matched) == expected
    if expected:
        assert points_per_person(matched, data) == {REP: 15}
        assert matched[0].badges == ("closed_loop",)


@pytest.mark.parametrize("type, data", [
    ("request.commented", {"text": "Any news?"}),
    ("request.started", {}),
    ("request.cancelled", {"reason": "Customer walked away"}),
])
def test_events_without_a_rule_match_nothing(rules, type, data):
    assert rules.for_event(type, request_data(type, status="in_progress", **data)) == []


def test_a_rule_only_matches_its_own_event_type(rules):
    data = request_data("request.acknowledged", status="acknowledged", business_hours_since_submitted=1.0)
    assert rules.for_event("request.started", data) == []


# -- 3. invalid files are refused with the line and the reason ----------------------------------------

INVALID = [
    # (what, old, new, line of the offending text in the new text, keyword(s) of the reason)
    ("unknown event type", "on: request.acknowledged", "on: request.acknowledge",
     "on: request.acknowledge", ["unknown event type", "request.acknowledge"]),
    ("to field the event lacks", "    to: actor_id\n    points: 5\n    reason: Acknowledged",
     "    to: assignee_ids\n    points: 5\n    reason: Acknowledged", "to: assignee_ids",
     ["has no field", "assignee_ids"]),
    ("negative points", "points: 20", "points: -1", "points: -1", ["points must be a whole number"]),
    ("points not a number", "points: 20", "points: lots", "points: lots", ["points must be a whole number"]),
    ("unknown operator", "when: {business_hours_since_submitted: {lte: 4}}",
     "when: {business_hours_since_submitted: {le: 4}}", "when: {business_hours_since_submitted: {le: 4}}",
     ["must be one of eq, ne, lt, lte, gt, gte, in"]),
    ("in without a list", "when: {status: {in: [submitted, acknowledged, in_progress, waiting_on_rep]}}",
     "when: {status: {in: submitted}}", "when: {status: {in: submitted}}", ["'in' needs a list"]),
    ("condition on a field the event lacks", "when: {on_time: false}", "when: {late: true}",
     "when: {late: true}", ["has no field", "'late'"]),
    ("unknown badge reference", "badges: [clutch]", "badges: [clutchh]", "badges: [clutchh]",
     ["badges must list known badge ids"]),
    ("reset of a non-streak badge", "resets: [great_brief]", "resets: [closed_loop]", "resets: [closed_loop]",
     ["only streak badges can be reset", "closed_loop is count"]),
    ("duplicate rule id", "- id: delivered_late", "- id: delivered_on_time", ("- id: delivered_on_time", 2),
     ["'delivered_on_time' is defined twice"]),
    ("duplicate badge id", "- id: clutch", "- id: grateful", ("- id: grateful", 2),
     ["badge 'grateful' is defined twice"]),
    ("tiers that shrink", "tiers: {bronze: 10, silver: 50, gold: 200}", "tiers: {bronze: 10, silver: 5, gold: 200}",
     "tiers: {bronze: 10, silver: 5, gold: 200}", ["tier thresholds must grow"]),
    ("equal tiers", "tiers: {bronze: 10, silver: 50, gold: 200}", "tiers: {bronze: 10, silver: 50, gold: 50}",
     "tiers: {bronze: 10, silver: 50, gold: 50}", ["tier thresholds must grow"]),
    ("tiers and threshold", "    tiers: {bronze: 10, silver: 50, gold: 200}\n",
     "    tiers: {bronze: 10, silver: 50, gold: 200}\n    threshold: 10\n", "- id: internal_seller",
     ["either tiers", "or one threshold"]),
    ("unknown key in a rule", "    points: 20\n", "    points: 20\n    bonus: 3\n", "bonus: 3",
     ["unknown key(s) bonus"]),
    ("version 2", "version: 1", "version: 2", "version: 2", ["version must be 1"]),
    ("YAML syntax error", "reason: Delivered (after the needed-by date)", "reason: Delivered: after the needed-by date",
     "reason: Delivered: after the needed-by date", ["not valid YAML", "mapping values are not allowed"]),
    ("once_per key not in the event", "once_per: {key: request_id, business_days: 5}",
     "once_per: {key: kudos_id, business_days: 5}", "once_per: {key: kudos_id, business_days: 5}",
     ["once_per takes key"]),
    ("once_per days not positive", "once_per: {key: request_id, business_days: 5}",
     "once_per: {key: request_id, business_days: 0}", "once_per: {key: request_id, business_days: 0}",
     ["business_days must be > 0"]),
    ("empty reason", "reason: Kudos received", 'reason: ""', 'reason: ""', ["a reason is required"]),
    ("blank reason", "reason: Kudos received", "reason:", "reason:", ["a reason is required"]),
    ("limit of zero", "limit: {per_month: 10}", "limit: {per_month: 0}", "limit: {per_month: 0}",
     ["per_month must be a whole number >= 1"]),
    ("unknown guard", "    requires: linked_request_delivered", "    requires: request_delivered",
     "requires: request_delivered", ["requires must be one of linked_request_delivered"]),
    ("negative cap", "giver_to_receiver_monthly_points: 30", "giver_to_receiver_monthly_points: -30",
     "giver_to_receiver_monthly_points: -30", ["giver_to_receiver_monthly_points must be a whole number"]),
]


@pytest.mark.parametrize("what, old, new, where, keywords", INVALID, ids=[case[0] for case in INVALID])
def test_invalid_rules_are_refused_with_line_and_reason(what, old, new, where, keywords):
    text = broken(old, new)
    needle, nth = where if isinstance(where, tuple) else (where, 1)
    line = line_of(text, needle, nth)
    with pytest.raises(RulesError) as info:
        parse_rules(text, SRC)
    message = str(info.value)
    assert message.startswith(f"{SRC} line {line}: "), message
    for keyword in keywords:
        assert keyword in message, message


def test_a_document_that_is_not_a_mapping_is_refused():
    with pytest.raises(RulesError, match=r"^team-rules\.yaml line 1: expected a mapping"):
        parse_rules("- just\n- a list\n", SRC)


def test_an_empty_rules_list_is_refused():
    assert SHIPPED.count("\nrules:\n") == 1 and SHIPPED.count("\nbadges:\n") == 1
    text = SHIPPED[: SHIPPED.index("\nrules:\n")] + "\nrules: []\n" + SHIPPED[SHIPPED.index("\nbadges:\n") + 1:]
    with pytest.raises(RulesError) as info:
        parse_rules(text, SRC)
    assert str(info.value) == f"{SRC} line {line_of(text, 'rules: []')}: rules must be a non-empty list"


# A plausible slip (awarding two fields at once) crashes the loader with a bare TypeError
# instead of being refused as a RulesError with its line: the validator tests membership of an
# unhashable value in a dict (`to not in fields`, `on not in known_types`, `b not in badges`,
# `once["key"] not in fields`).
UNHASHABLE = [
    ("to as a list", "    to: actor_id\n    points: 5\n    reason: Acknowledged",
     "    to: [actor_id, requester_id]\n    points: 5\n    reason: Acknowledged", "to: [actor_id, requester_id]"),
    ("on as a list", "on: request.acknowledged", "on: [request.acknowledged]", "on: [request.acknowledged]"),
    ("badge reference as a list", "badges: [clutch]", "badges: [[clutch]]", "badges: [[clutch]]"),
    ("once_per key as a list", "once_per: {key: request_id, business_days: 5}",
     "once_per: {key: [request_id], business_days: 5}", "once_per: {key: [request_id], business_days: 5}"),
]


@pytest.mark.parametrize("what, old, new, where", UNHASHABLE, ids=[case[0] for case in UNHASHABLE])
def test_a_list_where_a_name_is_expected_is_refused_with_its_line(what, old, new, where):
    text = broken(old, new)
    with pytest.raises(RulesError) as info:
        parse_rules(text, SRC)
    assert str(info.value).startswith(f"{SRC} line {line_of(text, where)}: ")


def test_a_key_given_twice_in_one_rule_is_refused():
    text = broken("    points: 20\n", "    points: 20\n    points: 200\n")
    with pytest.raises(RulesError) as info:
        parse_rules(text, SRC)
    assert str(info.value).startswith(f"{SRC} line {line_of(text, 'points: 200')}: ")


def test_a_rule_id_with_a_trailing_newline_is_not_a_slug():
    text = broken("- id: delivered_late", '- id: "delivered_late\\n"')
    with pytest.raises(RulesError, match="rule id must be a lower-case slug"):
        parse_rules(text, SRC)


# -- 4. YAML 1.1 booleans ---------------------------------------------------------------------------

def test_the_on_key_is_read_as_the_event_type_not_as_a_boolean(rules):
    ack = next(r for r in rules.rules if r.id == "acknowledged_within_sla")
    assert ack.on == "request.acknowledged"
    assert all(isinstance(r.on, str) and r.on.startswith(("request.", "kudos.")) for r in rules.rules)


def test_true_and_false_are_still_booleans_in_conditions(rules):
    on_time = next(r for r in rules.rules if r.id == "delivered_on_time")
    assert on_time.when == (Condition("on_time", "eq", True),)
    assert on_time.when[0].value is True


def test_the_loader_does_not_change_pyyaml_s_safe_loader():
    # The custom resolvers must stay on the rules loader only.
    assert yaml.safe_load("on: yes") == {True: True}


def test_a_minimal_rules_file_with_on_off_words_in_values():
    text = (
        "version: 1\n"
        "rules:\n"
        "  - id: said_yes\n"
        "    on: request.commented\n"
        "    when: {text: yes}\n"
        "    to: actor_id\n"
        "    points: 1\n"
        "    reason: on\n"
        "badges: []\n"
    )
    parsed = parse_rules(text, SRC)
    rule = parsed.rules[0]
    assert (rule.on, rule.reason, rule.when) == ("request.commented", "on", (Condition("text", "eq", "yes"),))
    assert parsed.giver_to_receiver_monthly_points is None
    assert rule.matches("request.commented", {"text": "yes", "actor_id": REP})
    assert not rule.matches("request.commented", {"text": True, "actor_id": REP})


# -- 5. conditions -------------------------------------------------------------------------------

def test_a_missing_field_never_holds():
    assert Condition("on_time", "eq", True).holds({}) is False
    assert Condition("request_id", "eq", None).holds({}) is False
    assert Condition("status", "ne", "closed").holds({}) is False
    assert Condition("hours", "lte", 4).holds({"other": 1}) is False


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte"])
def test_none_never_compares(op):
    assert Condition("business_hours_since_delivered", op, 24).holds({"business_hours_since_delivered": None}) is False


@pytest.mark.parametrize("op, value, actual, expected", [
    ("lte", 4, 4.0, True), ("lte", 4, 4.01, False), ("lt", 4, 4.0, False), ("lt", 4, 3.5, True),
    ("gte", 8, 8, True), ("gt", 8, 8, False), ("gt", 8, 8.5, True),
    ("lte", 4, True, False), ("gte", 1, True, False), ("gt", 0, False, False),   # a bool is not a number
    ("lte", 4, "3", False),                                                        # nor is a string
])
def test_ordering_conditions(op, value, actual, expected):
    assert Condition("x", op, value).holds({"x": actual}) is expected


def test_booleans_compare_with_booleans():
    assert Condition("on_time", "eq", True).holds({"on_time": True}) is True
    assert Condition("on_time", "eq", True).holds({"on_time": False}) is False
    assert Condition("on_time", "eq", False).holds({"on_time": False}) is True


@pytest.mark.parametrize("op, value, actual", [
    ("eq", True, 1), ("eq", False, 0), ("eq", 1, True), ("in", [True], 1), ("in", [0, 5], False),
])
def test_eq_and_in_do_not_confuse_booleans_with_numbers(op, value, actual):
    assert Condition("x", op, value).holds({"x": actual}) is False


def test_ne_condition():
    assert Condition("status", "ne", "closed").holds({"status": "delivered"}) is True
    assert Condition("status", "ne", "closed").holds({"status": "closed"}) is False


def test_in_condition():
    cond = Condition("status", "in", ["submitted", "acknowledged", "in_progress", "waiting_on_rep"])
    assert cond.holds({"status": "waiting_on_rep"}) is True
    assert cond.holds({"status": "delivered"}) is False
    assert cond.holds({"status": None}) is False


def test_all_conditions_of_a_rule_must_hold(rules):
    rush = next(r for r in rules.rules if r.id == "rush_delivered_on_time")
    assert rush.matches("request.delivered", {"on_time": True, "rush": True})
    assert not rush.matches("request.delivered", {"on_time": True, "rush": False})
    assert not rush.matches("request.delivered", {"on_time": False, "rush": True})
    assert not rush.matches("request.delivered", {"on_time": True})


def test_awardees_and_counterparts_ignore_missing_and_empty_values(rules):
    given = next(r for r in rules.rules if r.id == "kudos_given")
    assert given.awardees({}) == []
    assert given.awardees({"giver_id": ""}) == []
    assert given.counterparts({"recipient_ids": ["a", "", None, "a", "b"]}) == ["a", "b"]
    ack = next(r for r in rules.rules if r.id == "acknowledged_within_sla")
    assert ack.counterparts({"actor_id": "x"}) == []


# -- 6. badges and streaks ---------------------------------------------------------------------------

@pytest.mark.parametrize("level, reached, next_tier", [
    (0, [], ("bronze", 10)),
    (9, [], ("bronze", 10)),
    (10, ["bronze"], ("silver", 50)),
    (49, ["bronze"], ("silver", 50)),
    (50, ["bronze", "silver"], ("gold", 200)),
    (200, ["bronze", "silver", "gold"], None),
    (250, ["bronze", "silver", "gold"], None),
])
def test_internal_seller_tiers(rules, level, reached, next_tier):
    badge = rules.badges["internal_seller"]
    assert badge.reached(level) == reached
    assert badge.next_tier(level) == next_tier


@pytest.mark.parametrize("bid, threshold", [("closed_loop", 10), ("great_brief", 20), ("grateful", 10), ("clutch", 5),
                                            ("fast_responder", 25), ("team_favorite", 10), ("streak", 4)])
def test_single_threshold_badges_have_no_tier(rules, bid, threshold):
    badge = rules.badges[bid]
    assert badge.reached(threshold - 1) == []
    assert badge.next_tier(threshold - 1) == (None, threshold)
    assert badge.reached(threshold) == [None]
    assert badge.next_tier(threshold) is None
    assert badge.reached(threshold + 100) == [None]


def test_badge_level_by_kind(rules):
    b = rules.badges
    assert badge_level(b["closed_loop"], {"count": 7}) == 7
    assert badge_level(b["internal_seller"], {}) == 0
    # A streak counts the complete briefs after the latest break, kept as their times.
    assert badge_level(b["great_brief"], {"hits": [f"2026-11-{d:02d}T10:00:00+00:00" for d in range(1, 20)]}) == 19
    assert badge_level(b["great_brief"], {"count": 5, "hits": None}) == 0
    assert badge_level(b["grateful"], {"members": ["a", "b", "c"], "count": 99}) == 3
    assert badge_level(b["team_favorite"], {}) == 0
    assert badge_level(b["streak"], {"weeks": ["2026-W45", "2026-W46", "2026-W47", "2026-W48"], "count": 1}) == 4
    assert badge_level(b["streak"], {"weeks": ["2026-W40", "2026-W48"]}) == 1
    assert badge_level(b["streak"], {}) == 0


def test_badge_level_reaches_the_streak_badge_at_four_weeks(rules):
    streak = rules.badges["streak"]
    three = badge_level(streak, {"weeks": ["2026-W46", "2026-W47", "2026-W48"]})
    four = badge_level(streak, {"weeks": ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]})
    assert (streak.reached(three), streak.reached(four)) == ([], [None])


@pytest.mark.parametrize("weeks, expected", [
    ([], 0),
    (["2026-W48"], 1),
    (["2026-W45", "2026-W46", "2026-W47", "2026-W48"], 4),
    (["2026-W48", "2026-W46", "2026-W47", "2026-W45"], 4),          # order does not matter
    (["2026-W47", "2026-W48", "2026-W48"], 2),                      # duplicates count once
    (["2026-W40", "2026-W42", "2026-W43"], 2),                      # a gap resets the run
    (["2026-W40", "2026-W41", "2026-W42", "2026-W44"], 1),          # the run ends at the latest week
    (["2026-W09", "2026-W10"], 2),
])
def test_consecutive_weeks(weeks, expected):
    assert consecutive_weeks(weeks) == expected


def test_consecutive_weeks_across_a_53_week_year():
    assert date.fromisocalendar(2026, 53, 1) == date(2026, 12, 28)
    assert date(2026, 12, 31).isocalendar()[:2] == (2026, 53)
    assert date(2027, 1, 4).isocalendar()[:2] == (2027, 1)
    assert consecutive_weeks(["2026-W52", "2026-W53", "2027-W01"]) == 3
    assert consecutive_weeks(["2026-W51", "2026-W52", "2027-W01"]) == 1  # W53 missing is a gap


def test_consecutive_weeks_across_a_52_week_year():
    with pytest.raises(ValueError):
        date.fromisocalendar(2025, 53, 1)
    assert consecutive_weeks(["2025-W51", "2025-W52", "2026-W01", "2026-W02"]) == 4


# -- 7. ledger entry ids ----------------------------------------------------------------------------

def test_entry_id_is_deterministic():
    first = entry_id("ev-1", "delivered_on_time", SUPPORT_1)
    assert first == entry_id("ev-1", "delivered_on_time", SUPPORT_1)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)


def test_entry_id_is_the_uuid5_every_stored_ledger_has():
    # Ledgers, guards and badge evidence hold these ids: a new way to make them must give the same.
    for event, rule, person in [("ev-1", "delivered_on_time", SUPPORT_1), ("0f9c-é", "kudos_received", "Zoë Ω"),
                                ("", "r", "p:with:colons")]:
        expected = uuid.uuid5(uuid.NAMESPACE_URL, f"insidetrack:points:{event}:{rule}:{person}")
        assert entry_id(event, rule, person) == str(expected)


def test_entry_id_differs_when_any_input_differs():
    base = ("ev-1", "delivered_on_time", SUPPORT_1)
    variants = [
        base,
        ("ev-2", "delivered_on_time", SUPPORT_1),
        ("ev-1", "rush_delivered_on_time", SUPPORT_1),
        ("ev-1", "delivered_on_time", SUPPORT_2),
    ]
    assert len({entry_id(*v) for v in variants}) == 4
