"""The gateway's query limits (depth, aliases, cost, introspection) and its rate limiter."""

from __future__ import annotations

import threading

import graphene
import graphql
import pytest
from graphene import relay
from graphql.utilities import TypeInfo, TypeInfoVisitor
from graphql.validation import ValidationContext, specified_rules

from services.gateway.limits import (
    RateLimiter,
    alias_limit_rule,
    cost_limit_rule,
    depth_limit_rule,
    field_count_rule,
    limit_rules,
    no_introspection_rule,
    validate_within_limits,
)


# --- a small schema ------------------------------------------------------------------------


class Person(graphene.ObjectType):
    id = graphene.ID()
    name = graphene.String()
    manager = graphene.Field(lambda: Person)
    friends = graphene.List(lambda: Person, first=graphene.Int())


class PersonConnection(relay.Connection):
    class Meta:
        node = Person


class Query(graphene.ObjectType):
    me = graphene.Field(Person)
    person = graphene.Field(Person, id=graphene.ID(required=True))
    people = graphene.List(Person, first=graphene.Int())
    people_page = relay.ConnectionField(PersonConnection)  # Relay: first, last, after, before


SCHEMA = graphene.Schema(query=Query).graphql_schema


def check(query: str, *rules, with_specified: bool = False) -> list[str]:
    """Validation messages of ``query`` under ``rules`` (and the spec's rules if asked)."""
    all_rules = [*specified_rules, *rules] if with_specified else list(rules)
    return [error.message for error in graphql.validate(SCHEMA, graphql.parse(query), rules=all_rules)]


def valid(query: str) -> None:
    """The test queries are valid GraphQL, so only the limits can refuse them."""
    assert check(query, with_specified=True) == []


def nested_managers(levels: int, leaf: str = "name") -> str:
    return "manager { " * levels + leaf + " }" * levels


# --- depth ---------------------------------------------------------------------------------


def test_a_shallow_query_passes():
    query = "{ me { manager { name } } }"  # depth 3
    valid(query)
    assert check(query, depth_limit_rule(10)) == []
    assert check(query, depth_limit_rule(3)) == []
    assert check(query, depth_limit_rule(2)) == ["query depth 3 exceeds the limit of 2"]


def test_a_deep_query_is_refused_with_its_depth():
    query = "{ me { " + nested_managers(10) + " } }"  # me + 10 managers + name = 12
    valid(query)
    assert check(query, depth_limit_rule(10)) == ["query depth 12 exceeds the limit of 10"]
    assert check(query, depth_limit_rule(12)) == []


def test_depth_is_measured_through_fragments_and_inline_fragments():
    query = """
        { me { ...Chain } }
        fragment Chain on Person { manager { ... on Person { manager { ...Deeper } } } }
        fragment Deeper on Person { manager { manager { ... { manager { name } } } } }
    """
    # me 1, manager 2, manager 3, (Deeper) manager 4, manager 5, manager 6, name 7
    valid(query)
    assert check(query, depth_limit_rule(7)) == []
    assert check(query, depth_limit_rule(6)) == ["query depth 7 exceeds the limit of 6"]


def test_a_fragment_spread_twice_counts_at_its_deepest_use():
    query = """
        { me { ...P manager { manager { ...P } } } }
        fragment P on Person { manager { name } }
    """
    valid(query)
    assert check(query, depth_limit_rule(5)) == []  # me, manager, manager, manager, name
    assert check(query, depth_limit_rule(4)) == ["query depth 5 exceeds the limit of 4"]


def test_introspection_subtrees_are_not_measured():
    query = "{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } }"
    assert check(query, depth_limit_rule(2)) == []


def test_every_operation_is_measured():
    query = "query Shallow { me { name } } query Deep { me { " + nested_managers(4) + " } }"
    assert check(query, depth_limit_rule(5)) == ["query depth 6 exceeds the limit of 5"]


@pytest.mark.timeout(10)
def test_a_fragment_cycle_neither_hangs_nor_crashes():
    query = "{ me { ...A } } fragment A on Person { manager { ...A } }"
    assert check(query, depth_limit_rule(10)) == ["query depth is unbounded: a fragment spreads itself"]
    assert check(query, cost_limit_rule(5000)) == []  # adds nothing; the depth rule refuses
    messages = check(query, *limit_rules(10, 30, 5000, None), with_specified=True)
    assert "Cannot spread fragment 'A' within itself." in messages
    assert "query depth is unbounded: a fragment spreads itself" in messages


@pytest.mark.timeout(10)
def test_a_longer_fragment_cycle_neither_hangs_nor_crashes():
    query = """
        { me { ...A } }
        fragment A on Person { manager { ...B } name }
        fragment B on Person { friends { ...C } }
        fragment C on Person { manager { ...A ...B } }
    """
    messages = check(query, *limit_rules(10, 30, 5000, None), with_specified=True)
    assert any(message.startswith("Cannot spread fragment") for message in messages)
    assert "query depth is unbounded: a fragment spreads itself" in messages


@pytest.mark.timeout(10)
def test_a_long_fragment_chain_does_not_recurse():
    # graphql-core aborts validation of such documents itself; the rules must not depend
    # on that, so run them alone over a chain of 1500 fragments.
    n = 1500  # more than Python's recursion limit
    fragments = " ".join(f"fragment F{i} on Person {{ manager {{ ...F{i + 1} }} }}" for i in range(n))
    document = graphql.parse("{ me { ...F0 } } " + fragments + f" fragment F{n} on Person {{ name }}")
    messages = []
    for rule in (depth_limit_rule(10), cost_limit_rule(1000)):
        type_info = TypeInfo(SCHEMA)
        context = ValidationContext(SCHEMA, document, type_info, lambda error: messages.append(error.message))
        graphql.visit(document, TypeInfoVisitor(type_info, rule(context)))
    # me, n managers, name
    assert messages == [f"query depth {n + 2} exceeds the limit of 10", f"query cost {n + 2} exceeds the limit of 1000"]


# --- aliases -------------------------------------------------------------------------------


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: me {{ name }}" for i in range(count)) + " }"


def test_aliases_up_to_the_limit_are_allowed():
    valid(aliased(30))
    assert check(aliased(30), alias_limit_rule(30)) == []


def test_one_alias_too_many_is_refused():
    assert check(aliased(31), alias_limit_rule(30)) == ["too many aliases (31, limit 30)"]


def test_aliases_inside_fragments_count():
    query = "{ x: me { ...F } } fragment F on Person { n1: name n2: name boss: manager { n3: name } }"
    valid(query)
    assert check(query, alias_limit_rule(5)) == []
    assert check(query, alias_limit_rule(4)) == ["too many aliases (5, limit 4)"]


# --- cost ----------------------------------------------------------------------------------


def test_nested_pages_multiply():
    query = "{ people(first: 100) { friends(first: 100) { name } } }"
    valid(query)
    # people 1 + 100 * (friends 1 + 100 * name 1) = 10101
    assert check(query, cost_limit_rule(5000)) == ["query cost 10101 exceeds the limit of 5000"]
    assert check(query, cost_limit_rule(10101)) == []


def test_a_small_query_is_cheap():
    assert check("{ me { name manager { name } } }", cost_limit_rule(4)) == []
    assert check("{ people(first: 5) { name friends(first: 2) { name } } }", cost_limit_rule(5000)) == []
    # people 1 + 5 * (name 1 + friends 1 + 2 * name 1) = 21
    assert check("{ people(first: 5) { name friends(first: 2) { name } } }", cost_limit_rule(20)) == [
        "query cost 21 exceeds the limit of 20"
    ]


def test_variables_give_the_page_size():
    query = "query Q($n: Int) { people(first: $n) { friends(first: $n) { name } } }"
    valid(query)
    assert check(query, cost_limit_rule(5000, variables={"n": 100})) == ["query cost 10101 exceeds the limit of 5000"]
    assert check(query, cost_limit_rule(5000, variables={"n": 3})) == []  # 1 + 3 * (1 + 3) = 13
    assert check(query, cost_limit_rule(12, variables={"n": 3})) == ["query cost 13 exceeds the limit of 12"]
    # limit_rules hands the request's variables to the cost rule
    assert check(query, *limit_rules(10, 30, 5000, {"n": 100})) == ["query cost 10101 exceeds the limit of 5000"]
    assert check(query, *limit_rules(10, 30, 5000, {"n": 3})) == []


def test_a_missing_page_size_counts_the_default_list_size():
    missing_variable = "query Q($n: Int) { people(first: $n) { friends { name } } }"
    no_argument = "{ people { friends { name } } }"
    null_value = "{ people(first: null) { friends { name } } }"
    for query in (missing_variable, no_argument, null_value):
        valid(query)
        assert check(query, cost_limit_rule(110)) == ["query cost 111 exceeds the limit of 110"]  # 1 + 10 * 11
        assert check(query, cost_limit_rule(110, default_list_size=5)) == []  # 1 + 5 * 6 = 31
    assert check(missing_variable, cost_limit_rule(110, variables={"n": None})) == [
        "query cost 111 exceeds the limit of 110"
    ]


def test_a_variable_default_counts_when_the_variable_is_not_given():
    query = "query Q($n: Int = 50) { people(first: $n) { name } }"
    valid(query)
    assert check(query, cost_limit_rule(50)) == ["query cost 51 exceeds the limit of 50"]
    assert check(query, cost_limit_rule(50, variables={"n": 2})) == []


def test_page_sizes_are_clamped_to_100():
    query = "{ people(first: 1000000) { name } }"
    valid(query)
    assert check(query, cost_limit_rule(100)) == ["query cost 101 exceeds the limit of 100"]
    assert check(query, cost_limit_rule(101)) == []
    huge = "query Q($n: Int) { people(first: $n) { name } }"
    assert check(huge, cost_limit_rule(100, variables={"n": 2**40})) == ["query cost 101 exceeds the limit of 100"]
    assert check("{ people(first: -5) { name } }", cost_limit_rule(1)) == []  # no page: 1


def test_relay_connections_count_first_or_last():
    def query(arguments: str) -> str:
        return "{ peoplePage" + arguments + " { edges { node { name } } } }"

    valid(query("(last: 100)"))
    # peoplePage 1 + n * (edges 1 + node 1 + name 1)
    assert check(query("(first: 100)"), cost_limit_rule(300)) == ["query cost 301 exceeds the limit of 300"]
    assert check(query("(last: 100)"), cost_limit_rule(300)) == ["query cost 301 exceeds the limit of 300"]
    assert check(query(""), cost_limit_rule(30)) == ["query cost 31 exceeds the limit of 30"]  # default 10


def test_aliases_and_repeated_fragments_add_up():
    aliased_pages = "{ a: people(first: 50) { name } b: people(first: 50) { name } }"
    assert check(aliased_pages, cost_limit_rule(101)) == ["query cost 102 exceeds the limit of 101"]
    fragments = """
        { people(first: 10) { ...F ...F friends(first: 2) { ...F } } }
        fragment F on Person { manager { name } }
    """
    valid(fragments)
    # people 1 + 10 * (F 2 + F 2 + friends 1 + 2 * F 2) = 1 + 10 * 9 = 91
    assert check(fragments, cost_limit_rule(90)) == ["query cost 91 exceeds the limit of 90"]
    assert check(fragments, cost_limit_rule(91)) == []


@pytest.mark.timeout(10)
def test_fragments_spread_many_times_are_costed_without_blowing_up():
    # Each level spreads the next one twice: 2**40 leaves, measured in a moment.
    levels = 40
    fragments = " ".join(f"fragment L{i} on Person {{ ...L{i + 1} ...L{i + 1} }}" for i in range(levels))
    query = "{ me { ...L0 } } " + fragments + f" fragment L{levels} on Person {{ name }}"
    assert check(query, cost_limit_rule(5000)) == [f"query cost {1 + 2**levels} exceeds the limit of 5000"]
    pages = "{ people(first: 100) { " + "friends(first: 100) { " * 12 + "name" + " }" * 12 + " } }"  # ~100**13
    assert check(pages, cost_limit_rule(5000)) == ["query cost more than 1000000000000000 exceeds the limit of 5000"]


def test_the_standard_introspection_query_passes_the_default_limits():
    query = graphql.get_introspection_query(descriptions=True)
    assert check(query, *limit_rules(10, 30, 5000, None), with_specified=True) == []


# --- introspection -------------------------------------------------------------------------


def test_introspection_can_be_switched_off():
    rule = no_introspection_rule()
    assert check("{ __schema { types { name } } }", rule) == [
        "introspection is switched off: '__schema' is not allowed"
    ]
    assert check('{ __type(name: "Person") { name } }', rule) == [
        "introspection is switched off: '__type' is not allowed"
    ]
    hidden = "{ me { ...F } } fragment F on Person { name } fragment G on Query { __schema { queryType { name } } }"
    assert check(hidden, rule) == ["introspection is switched off: '__schema' is not allowed"]
    assert check("{ __typename me { __typename name } }", rule) == []


def test_errors_carry_codes_and_locations():
    [error] = graphql.validate(SCHEMA, graphql.parse("{ me { " + nested_managers(10) + " } }"), [depth_limit_rule(10)])
    assert error.extensions == {"code": "QUERY_TOO_DEEP"}
    assert error.locations and error.locations[0].line == 1


# --- fields written ------------------------------------------------------------------------


def test_fields_up_to_the_limit_are_allowed_and_one_more_is_refused():
    rule = field_count_rule(5)
    assert check("{ me { id name manager { name } } }", rule) == []  # 5 fields
    assert check("{ me { id name manager { id name } } }", rule) == ["too many fields (6, limit 5)"]


def test_fields_inside_fragments_count_as_written():
    rule = field_count_rule(3)
    assert check("{ me { ...F } } fragment F on Person { id name }", rule) == []  # me, id, name
    assert check("{ me { ...F } } fragment F on Person { id name manager { name } }", rule) == ["too many fields (5, limit 3)"]


def test_the_standard_introspection_query_writes_fewer_fields_than_the_default_limit():
    assert check(graphql.get_introspection_query(descriptions=True), field_count_rule()) == []


class _Recorder(graphql.validation.ValidationRule):
    seen: list = []

    def enter_document(self, *_args):
        _Recorder.seen.append(1)


def test_a_field_flood_is_refused_before_the_costly_rules_run():
    """1000 copies of one field cost graphql-core's overlapping-fields rule seconds of CPU
    (pairwise); the limits refuse the document first and the other rules never see it."""
    _Recorder.seen = []
    flood = graphql.parse("{ me { " + "name " * 1000 + "} }")
    errors = validate_within_limits(SCHEMA, flood, limit_rules(10, 30, 5000, {}), [*specified_rules, _Recorder])
    assert [e.message for e in errors] == ["too many fields (1001, limit 200)"]
    assert errors[0].extensions == {"code": "TOO_MANY_FIELDS"}
    assert _Recorder.seen == []
    assert validate_within_limits(SCHEMA, graphql.parse("{ me { name } }"), limit_rules(10, 30, 5000, {}),
                                  [*specified_rules, _Recorder]) == []
    assert _Recorder.seen == [1]


# --- rate limiting -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_is_allowed_then_refused_until_a_token_returns():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock, burst=3)
    assert [limiter.allow("u1") for _ in range(3)] == [(True, 0.0)] * 3
    allowed, wait = limiter.allow("u1")
    assert not allowed and wait == pytest.approx(20.0)
    clock.advance(5)
    allowed, wait = limiter.allow("u1")
    assert not allowed and wait == pytest.approx(15.0)
    clock.advance(15)
    assert limiter.allow("u1") == (True, 0.0)
    allowed, wait = limiter.allow("u1")
    assert not allowed and wait == pytest.approx(20.0)


def test_tokens_do_not_pile_up_beyond_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, burst=2)
    clock.advance(3600)
    assert [limiter.allow("u1")[0] for _ in range(3)] == [True, True, False]


def test_the_burst_defaults_to_the_rate_per_minute():
    limiter = RateLimiter(5, clock=FakeClock())
    assert [limiter.allow("u1")[0] for _ in range(6)] == [True] * 5 + [False]


def test_keys_are_independent():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock, burst=3)
    for _ in range(3):
        limiter.allow("u1")
    assert limiter.allow("u1")[0] is False
    assert limiter.allow("u2") == (True, 0.0)


def test_a_clock_going_backwards_adds_no_tokens():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock, burst=1)
    assert limiter.allow("u1")[0] is True
    clock.advance(-100)
    assert limiter.allow("u1")[0] is False


def test_many_keys_do_not_grow_memory_without_bound():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    for i in range(10_000):
        limiter.allow(f"old{i}")
    assert len(limiter) == 10_000
    clock.advance(601)  # every old key is now idle for over 10 minutes
    for i in range(5_000):
        limiter.allow(f"new{i}")
    assert len(limiter) == 5_000
    # Keys used within the last 10 minutes are kept (forgetting them would reset their limit).
    clock.advance(300)
    limiter.allow("new0")
    for i in range(6_000):
        limiter.allow(f"more{i}")
    assert len(limiter) == 11_000
    clock.advance(301)  # new1.. idle for 601 s, new0 for 301 s
    limiter.allow("last")
    assert len(limiter) == 6_000 + 2


def test_the_limiter_is_thread_safe():
    limiter = RateLimiter(100, clock=FakeClock(), burst=100)
    allowed = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = sum(limiter.allow("shared")[0] for _ in range(200))
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100


@pytest.mark.parametrize("kwargs", [{"per_minute": 0}, {"per_minute": 10, "burst": 0}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


def test_the_limits_verdict_is_remembered_per_query_and_variables():
    """The gateway remembers the limits' verdict for a query text and its variables (a screen
    sends the same read all day); other variables are judged again."""
    from services.gateway import http as gateway_http
    from services.gateway.config import GatewaySettings
    from shared.config import load_settings

    settings = load_settings(GatewaySettings, env={}, max_query_cost=20)
    query = "query($n: Int) { people(first: $n) { edges { node { name } } } }"
    document = gateway_http._parse(query)

    def verdict(variables):
        return [e.extensions["code"].upper() for e in gateway_http._limit_errors(query, document, variables, settings)]

    assert verdict({"n": 5}) == []
    assert verdict({"n": 100}) == ["QUERY_TOO_EXPENSIVE"]  # same text, other page size: refused
    assert verdict({"n": 5}) == [] and verdict({"n": 100}) == ["QUERY_TOO_EXPENSIVE"]  # remembered, each its own
    assert verdict({"n": 100, "pad": "x" * 2000}) == ["QUERY_TOO_EXPENSIVE"]  # large variables: judged, not kept


# --- the limits' verdict, remembered --------------------------------------------------------


def test_the_limits_verdict_is_shared_by_variables_that_differ_only_in_ids_not_in_page_sizes():
    """A portal's reads name a different person each with the same page size: one verdict per
    query and page size (a year's 2,000 people missed the cache on every read before), while a
    page size over the cost limit is still refused, whoever it names."""
    from types import SimpleNamespace

    from services.gateway import http

    settings = SimpleNamespace(max_query_depth=10, max_aliases=30, max_query_cost=300)  # 20 a page: 101; 100: 501
    query = ("query($p: ID, $n: Int) { kudosFeed(personId: $p, direction: RECEIVED, first: $n) "
             "{ edges { node { message giver { name } } } } }")
    document = graphql.parse(query)
    http._limit_errors_cached.cache_clear()
    for i in range(50):
        assert http._limit_errors(query, document, {"p": f"p_{i}", "n": 20}, settings) == []
    assert http._limit_errors_cached.cache_info().misses == 1

    too_many = http._limit_errors(query, document, {"p": "p_1", "n": 1_000_000}, settings)
    assert too_many and "cost" in too_many[0].message
    assert http._limit_errors(query, document, {"p": "p_2", "n": 1_000_000}, settings)
    assert http._limit_errors(query, document, {"p": "p_3", "n": "many"}, settings) == []  # not a number: the default size
    assert http._limit_errors_cached.cache_info().misses == 3
