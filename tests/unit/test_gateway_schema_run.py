"""The gateway executes every operation synchronously (services/gateway/schema.py run):
graphql-core is told that no value is awaitable, so a resolver must never be a coroutine."""

from __future__ import annotations

import functools
import inspect

from graphql import GraphQLObjectType, parse

from services.gateway.schema import run, schema


def _functions(resolver):
    while isinstance(resolver, functools.partial):
        yield resolver.func
        resolver = resolver.func
    if resolver is not None:
        yield resolver


def test_no_resolver_is_a_coroutine():
    checked = 0
    for type_ in schema.graphql_schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            for function in _functions(field.resolve):
                checked += 1
                assert not inspect.iscoroutinefunction(function) and not inspect.isasyncgenfunction(function), \
                    f"{type_.name}.{name} is async: run() would hand its coroutine out as a value"
    assert checked > 100  # the resolvers were found


def test_run_answers_from_a_root_value():
    # A subscription's message is executed on its root (the event's data); no service is called.
    document = parse("subscription { badgeAwarded { badge name tier } }")
    root = {"badge_awarded": {"person_id": "p_1", "badge": "b", "name": "Early bird", "tier": "gold", "awarded_at": None,
                              "evidence_event_ids": []}}
    result = run(document, context=None, root=root)
    assert result.errors is None and result.data == {"badgeAwarded": {"badge": "b", "name": "Early bird", "tier": "gold"}}
