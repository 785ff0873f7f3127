"""What one GraphQL request may ask for, and how often a user may ask.

The gateway validates every query with graphql-core's specified rules plus the rules made
here, before anything is executed:

- ``depth_limit_rule``: the longest chain of nested fields. ``{ me { name } }`` has depth 2
  (every field on the path counts, the root field is 1). Fragment spreads and inline
  fragments are followed; the subtrees of the introspection fields ``__schema`` and
  ``__type`` are not measured (the standard introspection query is deep but is answered
  by the gateway itself). A fragment that spreads itself (directly or through others)
  makes the depth unbounded, and the operation is refused.
- ``alias_limit_rule``: aliased fields written in the whole document, fragments included.
- ``cost_limit_rule``: an estimate of the work for the services (see ``cost_limit_rule``).
- ``field_count_rule``: fields written in the whole document (bounds the pairwise work of
  graphql-core's overlapping-fields rule).
- ``no_introspection_rule``: refuses ``__schema`` and ``__type`` (``__typename`` stays).

Everything walks the document with explicit stacks and memoises fragments, so a document
cannot make the rules recurse deeply, loop on fragment cycles, or spend exponential time
on fragments spread many times.

``RateLimiter`` is a token bucket per user.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping

from graphql import (
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    print_ast,
    validate,
)
from graphql.language import (
    SKIP,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    VisitorAction,
)
from graphql.validation import ValidationContext, ValidationRule

__all__ = [
    "INTROSPECTION_FIELDS",
    "MAX_PAGE_SIZE",
    "RateLimiter",
    "alias_limit_rule",
    "cost_limit_rule",
    "depth_limit_rule",
    "field_count_rule",
    "limit_rules",
    "no_introspection_rule",
    "validate_within_limits",
]

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
MAX_PAGE_SIZE = 100  # the services refuse or cap larger pages, so `first` counts up to this
PAGE_SIZE_ARGUMENTS = ("first", "last")  # `last` is used only when `first` is not given
COST_CEILING = 10**15  # costs saturate here: enough to refuse, no huge integers


def _refuse(rule: ValidationRule, node: Any, code: str, message: str) -> None:
    """Report that ``rule`` refuses the document at ``node``, with a machine-readable ``code``."""
    rule.report_error(GraphQLError(message, node, extensions={"code": code}))


class _PerOperation(ValidationRule):
    """A limit measured on each operation, fragments included where they are spread (so a
    fragment's own definition is not visited)."""

    @staticmethod
    def enter_fragment_definition(*_args: Any) -> VisitorAction:
        return SKIP


def _named(rule: type[ValidationRule], name: str) -> type[ValidationRule]:
    """A rule class named after its limit (``DepthLimitRule8``): one class per limit, each named apart."""
    rule.__name__ = rule.__qualname__ = name
    return rule


# --- walking a document ----------------------------------------------------------------


class _FragmentValues:
    """A value per fragment definition, computed once, children before parents.

    ``compute(fragment, lookup)`` computes the value of one fragment; ``lookup(name)`` gives
    the value of a spread fragment: its computed value, ``CYCLE`` when the spread closes a
    cycle (the fragment is still being computed), or ``None`` for an unknown fragment.
    The spread graph is walked with an explicit stack (no recursion, no exponential blowup).
    """

    CYCLE = object()

    def __init__(
        self,
        context: ValidationContext,
        compute: Callable[[FragmentDefinitionNode, Callable[[str], Any]], Any],
    ) -> None:
        self._context = context
        self._compute = compute
        self._values: dict[str, Any] = {}
        self._on_path: set[str] = set()

    def _spread_names(self, fragment: FragmentDefinitionNode) -> Iterator[str]:
        return (spread.name.value for spread in self._context.get_fragment_spreads(fragment.selection_set))

    def lookup(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        if name in self._on_path:
            return self.CYCLE
        return None  # unknown fragment (KnownFragmentNamesRule reports it)

    def get(self, name: str) -> Any:
        if name in self._values or name in self._on_path:
            return self.lookup(name)
        get_fragment = self._context.get_fragment
        root = get_fragment(name)
        if root is None:
            return None
        values, on_path = self._values, self._on_path
        path = [(root, self._spread_names(root))]
        on_path.add(name)
        while path:
            fragment, spreads = path[-1]
            for spread in spreads:
                if spread in values or spread in on_path:
                    continue
                child = get_fragment(spread)
                if child is not None:
                    path.append((child, self._spread_names(child)))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                # Still on the path while computed, so that a spread of itself is a cycle.
                values[fragment.name.value] = self._compute(fragment, self.lookup)
                on_path.discard(fragment.name.value)
        return values[name]


def _root_type(schema: GraphQLSchema, operation: OperationDefinitionNode) -> GraphQLObjectType | None:
    if operation.operation == OperationType.QUERY:
        return schema.query_type
    if operation.operation == OperationType.MUTATION:
        return schema.mutation_type
    return schema.subscription_type


def _field_def(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        return parent.fields.get(name)
    return None


def _condition_type(
    schema: GraphQLSchema, node: InlineFragmentNode | FragmentDefinitionNode, parent: GraphQLNamedType | None
) -> GraphQLNamedType | None:
    if node.type_condition is None:
        return parent
    return schema.get_type(node.type_condition.name.value)


# --- depth -------------------------------------------------------------------------------


def _selection_depth(selection_set: SelectionSetNode, lookup: Callable[[str], Any]) -> float:
    """The depth of the deepest field under ``selection_set`` (its own fields are depth 1).

    ``lookup(name)`` gives the depth of a spread fragment (``_FragmentValues.CYCLE`` for a
    cycle, which makes the depth infinite). Returns an int, or ``math.inf``.
    """
    deepest: float = 0
    stack = [(selection_set, 1)]
    while stack:
        current, depth = stack.pop()
        for selection in current.selections:
            if isinstance(selection, FieldNode):
                deepest = max(deepest, depth)
                if selection.selection_set and selection.name.value not in INTROSPECTION_FIELDS:
                    stack.append((selection.selection_set, depth + 1))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, depth))
            elif isinstance(selection, FragmentSpreadNode):
                spread = lookup(selection.name.value)
                if spread is _FragmentValues.CYCLE:
                    return math.inf
                if spread:
                    deepest = max(deepest, depth - 1 + spread)
    return deepest


def depth_limit_rule(max_depth: int) -> type[ValidationRule]:
    """A rule refusing operations nested deeper than ``max_depth`` fields."""
    if max_depth < 1:
        raise ValueError("max_depth must be at least 1")

    class DepthLimitRule(_PerOperation):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = _FragmentValues(
                context, lambda fragment, lookup: _selection_depth(fragment.selection_set, lookup)
            )

        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> VisitorAction:
            depth = _selection_depth(node.selection_set, self._fragments.get)
            if math.isinf(depth):
                _refuse(self, node, "QUERY_TOO_DEEP", "query depth is unbounded: a fragment spreads itself")
            elif depth > max_depth:
                _refuse(self, node, "QUERY_TOO_DEEP", f"query depth {depth} exceeds the limit of {max_depth}")
            return SKIP

    return _named(DepthLimitRule, f"DepthLimitRule{max_depth}")


# --- aliases -----------------------------------------------------------------------------


def alias_limit_rule(max_aliases: int) -> type[ValidationRule]:
    """A rule refusing documents with more than ``max_aliases`` aliased fields.

    Aliases are counted as written (a fragment counts once, however often it is spread);
    fragment spreads already let a query repeat work, which the cost rule measures.
    """
    if max_aliases < 0:
        raise ValueError("max_aliases must not be negative")

    return _field_counting_rule("AliasLimitRule", max_aliases, "aliases", "TOO_MANY_ALIASES",
                                lambda node: node.alias is not None)


# --- cost --------------------------------------------------------------------------------


def _as_page_size(value: Any) -> int | None:
    """An int page size from a variable's value, or None when it is not a usable number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_limits_see(variables: Mapping[str, Any]) -> dict[str, int | None]:
    """The variables as the limits read them: each one's page size, None when it is not a
    usable number (an id, a search word). Two requests whose variables differ only in those
    get the same verdict, so it is remembered per query and this (a portal's reads name a
    different person each, the same page size)."""
    return {name: _as_page_size(value) for name, value in variables.items()}


def _literal_page_size(node: ValueNode, variables: Mapping[str, Any], defaults: Mapping[str, ValueNode]) -> int | None:
    if isinstance(node, VariableNode):
        name = node.name.value
        if name in variables:
            return _as_page_size(variables[name])
        default = defaults.get(name)
        return None if default is None else _literal_page_size(default, {}, {})
    if isinstance(node, (IntValueNode, FloatValueNode)):
        try:
            return _as_page_size(float(node.value) if isinstance(node, FloatValueNode) else int(node.value))
        except (ValueError, OverflowError):
            return None
    return None  # null, or a value of the wrong type (ValuesOfCorrectTypeRule reports it)


def cost_limit_rule(
    max_cost: int, default_list_size: int = 10, variables: Mapping[str, Any] | None = None
) -> type[ValidationRule]:
    """A rule refusing operations whose estimated cost exceeds ``max_cost``.

    The estimate: every field costs 1, plus, for a field that takes a page size, the cost
    of its selection times the page size; so
    ``cost(field) = 1 + page_size(field) * cost(selection)`` (``page_size`` is 1 for other
    fields) and ``people(first: 100) { friends(first: 100) { name } }`` costs
    ``1 + 100 * (1 + 100 * 1) = 10101``. Multiplications compound down the tree, and every
    field is counted, also fields repeated under aliases or through repeated fragment spreads.

    The page size of a field is its ``first`` argument: a literal, or the variable's value
    from ``variables`` (then the variable's default in the operation). Without ``first``,
    a ``last`` argument counts instead (Relay connections take either). A field whose
    definition declares ``first`` but that is given no usable value counts the argument's
    default in the schema, else ``default_list_size``. Page sizes are clamped to 0..100.

    Fragment cycles add nothing here (the depth rule and NoFragmentCyclesRule refuse them).
    Costs saturate at ``COST_CEILING``.
    """
    if max_cost < 0:
        raise ValueError("max_cost must not be negative")
    if default_list_size < 0:
        raise ValueError("default_list_size must not be negative")
    given = dict(variables or {})

    class CostLimitRule(_PerOperation):
        variables = given  # for introspection and debugging

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._schema = context.schema
            # Fragment costs depend on the defaults of the variables not given, which
            # differ by operation: one memo per set of such defaults.
            self._memos: dict[tuple, _FragmentValues] = {}

        def _page_size(self, node: FieldNode, field: GraphQLField | None, defaults: Mapping[str, ValueNode]) -> int:
            arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
            declared = field is not None and any(name in field.args for name in PAGE_SIZE_ARGUMENTS)
            if not declared and not any(name in arguments for name in PAGE_SIZE_ARGUMENTS):
                return 1  # not a page
            size: int | None = None
            for name in PAGE_SIZE_ARGUMENTS:
                if name in arguments:
                    size = _literal_page_size(arguments[name], given, defaults)
                    if size is not None:
                        break
            if size is None and field is not None and "first" in field.args:
                size = _as_page_size(field.args["first"].default_value)
            if size is None:
                return default_list_size
            return min(max(size, 0), MAX_PAGE_SIZE)

        def _selection_cost(
            self,
            selection_set: SelectionSetNode,
            parent: GraphQLNamedType | None,
            lookup: Callable[[str], Any],
            defaults: Mapping[str, ValueNode],
        ) -> int:
            total = 0
            schema = self._schema
            stack = [(selection_set, parent, 1)]
            while stack:
                current, parent_type, factor = stack.pop()
                for selection in current.selections:
                    if isinstance(selection, FieldNode):
                        total = min(total + factor, COST_CEILING)
                        if selection.selection_set:
                            field = _field_def(parent_type, selection.name.value)
                            child_factor = min(factor * self._page_size(selection, field, defaults), COST_CEILING)
                            child_type = get_named_type(field.type) if field is not None else None
                            stack.append((selection.selection_set, child_type, child_factor))
                    elif isinstance(selection, InlineFragmentNode):
                        stack.append(
                            (selection.selection_set, _condition_type(schema, selection, parent_type), factor)
                        )
                    elif isinstance(selection, FragmentSpreadNode):
                        spread = lookup(selection.name.value)
                        if spread is not None and spread is not _FragmentValues.CYCLE:
                            total = min(total + factor * spread, COST_CEILING)
            return total

        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> VisitorAction:
            defaults = {
                definition.variable.name.value: definition.default_value
                for definition in node.variable_definitions or ()
                if definition.default_value is not None and definition.variable.name.value not in given
            }
            key = tuple(sorted((name, print_ast(value)) for name, value in defaults.items()))
            memo = self._memos.get(key)
            if memo is None:
                schema = self._schema
                memo = self._memos[key] = _FragmentValues(
                    self.context,
                    lambda fragment, lookup: self._selection_cost(
                        fragment.selection_set, _condition_type(schema, fragment, None), lookup, defaults
                    ),
                )
            cost = self._selection_cost(node.selection_set, _root_type(self._schema, node), memo.get, defaults)
            if cost > max_cost:
                shown = f"more than {COST_CEILING}" if cost >= COST_CEILING else str(cost)
                _refuse(self, node, "QUERY_TOO_EXPENSIVE", f"query cost {shown} exceeds the limit of {max_cost}")
            return SKIP

    return _named(CostLimitRule, f"CostLimitRule{max_cost}")


# --- fields written ---------------------------------------------------------------------

# graphql-core's OverlappingFieldsCanBeMergedRule compares fields pairwise: 300 copies of
# `me { name }` (4 KB) cost it 2 s of CPU, 1000 copies of `name` 4 s. Bounding the fields
# written bounds that work (200 fields: about 0.1 s at worst); the standard introspection
# query writes 72.
MAX_FIELDS = 200


def field_count_rule(max_fields: int = MAX_FIELDS) -> type[ValidationRule]:
    """A rule refusing documents that write more than ``max_fields`` fields (fragments included)."""
    if max_fields < 1:
        raise ValueError("max_fields must be at least 1")

    return _field_counting_rule("FieldCountRule", max_fields, "fields", "TOO_MANY_FIELDS", lambda node: True)


def _field_counting_rule(name: str, limit: int, noun: str, code: str,
                         counts: Callable[[FieldNode], bool]) -> type[ValidationRule]:
    """A rule counting the written fields that ``counts``, refusing more than ``limit``."""

    class CountingRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._count = 0

        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            if counts(node):
                self._count += 1

        def leave_document(self, node: Any, *_args: Any) -> None:
            if self._count > limit:
                _refuse(self, node, code, f"too many {noun} ({self._count}, limit {limit})")

    return _named(CountingRule, f"{name}{limit}")


def limit_rules(
    max_depth: int, max_aliases: int, max_cost: int, variables: Mapping[str, Any] | None, default_list_size: int = 10
) -> list[type[ValidationRule]]:
    """The depth, alias, cost and field-count rules for one request (the cost rule sees its variables)."""
    return [
        depth_limit_rule(max_depth),
        alias_limit_rule(max_aliases),
        cost_limit_rule(max_cost, default_list_size, variables),
        field_count_rule(),
    ]


def validate_within_limits(
    schema: GraphQLSchema, document: Any, limits: list[type[ValidationRule]], rules: list[type[ValidationRule]]
) -> list[GraphQLError]:
    """Validate with the cheap ``limits`` first, and with ``rules`` (the specified rules) only
    when the document is within them: an oversized document never reaches the costly rules."""
    return validate(schema, document, rules=limits) or validate(schema, document, rules=rules)


# --- introspection -----------------------------------------------------------------------


def no_introspection_rule() -> type[ValidationRule]:
    """A rule refusing ``__schema`` and ``__type`` (for when introspection is switched off)."""

    class NoIntrospectionRule(ValidationRule):
        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            if node.name.value in INTROSPECTION_FIELDS:
                _refuse(self, node, "INTROSPECTION_DISABLED",
                        f"introspection is switched off: '{node.name.value}' is not allowed")

    return NoIntrospectionRule


# --- rate limiting -----------------------------------------------------------------------


class RateLimiter:
    """Token bucket per key (a user id), thread-safe, injectable time source.

    Every key starts with ``burst`` tokens (default: ``per_minute``); a request takes one,
    and tokens come back at ``per_minute`` per minute up to ``burst``. ``allow`` answers
    ``(True, 0.0)``, or ``(False, seconds until the next token)`` for a Retry-After.

    Memory stays bounded: once more than ``max_keys`` keys are known, keys idle for over
    ``idle_seconds`` are forgotten (a forgotten key starts again with a full bucket, which
    it would nearly have anyway). Keys are kept in order of last use, so forgetting costs
    only the keys forgotten.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        burst: int | None = None,
        *,
        max_keys: int = 10_000,
        idle_seconds: float = 600.0,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self.per_minute = per_minute
        self.burst = burst if burst is not None else per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._max_keys = max_keys
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last update]

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def allow(self, key: str) -> tuple[bool, float]:
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [float(self.burst), now]
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket[1])  # a clock going backwards adds nothing
                bucket[0] = min(float(self.burst), bucket[0] + elapsed * self._rate)
                bucket[1] = now
            if len(self._buckets) > self._max_keys:
                self._forget_idle(now)
            # The tolerance absorbs float error (3 per minute: 20 s * 0.05/s may be 0.999...).
            if bucket[0] >= 1.0 - 1e-9:
                bucket[0] = max(0.0, bucket[0] - 1.0)
                return True, 0.0
            return False, max(0.0, (1.0 - bucket[0]) / self._rate)

    def _forget_idle(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, (_tokens, last) = next(iter(buckets.items()))
            if now - last <= self._idle_seconds:
                break  # ordered by last use: the rest were used more recently
            del buckets[key]
