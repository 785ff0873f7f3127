"""The GraphQL types every part of the schema shares: the product's enums (built from
shared/vocabulary.py), the DateTime scalar, typed user errors, and Relay connections."""

from __future__ import annotations

import inspect
from datetime import datetime
from enum import Enum
from typing import Any

import graphene
from graphql import FieldNode, FragmentSpreadNode, GraphQLError, StringValueNode

from shared import vocabulary
from shared.clock import NotAnInstant, instant_from_iso


def _enum(words: type[Enum]) -> type[graphene.Enum]:
    """The GraphQL enum of one of the product's vocabularies (shared/vocabulary.py): its names
    upper-cased (``PRICING``), its values as the services take them (``pricing``)."""
    return graphene.Enum(words.__name__, [(word.value.upper(), word.value) for word in words],
                         description=inspect.getdoc(words))


Role = _enum(vocabulary.Role)
Department = _enum(vocabulary.Department)
Priority = _enum(vocabulary.Priority)
Outcome = _enum(vocabulary.Outcome)
Gesture = _enum(vocabulary.Gesture)
RequestKind = _enum(vocabulary.RequestKind)
RequestStatus = _enum(vocabulary.RequestStatus)
Period = _enum(vocabulary.Period)
Scope = _enum(vocabulary.Scope)
KudosDirection = _enum(vocabulary.KudosDirection)
WebhookEvent = _enum(vocabulary.WebhookEvent)
WebhookFormat = _enum(vocabulary.WebhookFormat)
DeliveryStatus = _enum(vocabulary.DeliveryStatus)


class DateTime(graphene.Scalar):
    """An ISO 8601 date-time with a timezone (e.g. 2026-11-27T10:00:00+01:00)."""

    @staticmethod
    def serialize(value):
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        raise GraphQLError(f"DateTime cannot represent {value!r}")

    @staticmethod
    def parse_value(value):
        try:
            return instant_from_iso(value)
        except NotAnInstant as exc:
            raise GraphQLError({"not_text": "DateTime must be an ISO 8601 string",
                                "not_iso": f"DateTime {value!r} is not ISO 8601",
                                "no_timezone": "DateTime needs a timezone (Z or +01:00)"}[exc.reason]) from None

    @classmethod
    def parse_literal(cls, node, _variables=None):
        if isinstance(node, StringValueNode):
            return cls.parse_value(node.value)
        raise GraphQLError("DateTime must be an ISO 8601 string")


def selects_any(info, names: set[str]) -> bool:
    """Whether the query asks, anywhere below the field being resolved (fragments too), for a
    field named one of ``names``: a resolver then asks its service for that part with the rest."""
    stack = [node.selection_set for node in info.field_nodes if node.selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode) and selection.name.value in names:
                return True
            if isinstance(selection, FragmentSpreadNode):  # validation refuses cycles
                selection = info.fragments.get(selection.name.value)
            if selection is not None and selection.selection_set:
                stack.append(selection.selection_set)
    return False


def enum_value(value: Any) -> Any:
    """The plain value of a graphene enum argument (or the value itself)."""
    return getattr(value, "value", value)


class UserError(graphene.ObjectType):
    """A business rule refused the mutation; nothing was changed."""

    field = graphene.String(description="The input field at fault, if one is.")
    code = graphene.String(required=True, description="Stable, machine-readable (e.g. RUSH_NEEDS_REASON).")
    message = graphene.String(required=True)


class PageInfo(graphene.ObjectType):
    has_next_page = graphene.Boolean(required=True)
    has_previous_page = graphene.Boolean(required=True)
    start_cursor = graphene.String()
    end_cursor = graphene.String()


def connection_types(node: type, name: str) -> tuple[type, type]:
    """A Relay-style ``<Name>Connection`` with edges, pageInfo and totalCount."""
    edge = type(f"{name}Edge", (graphene.ObjectType,), {
        "cursor": graphene.String(required=True),
        "node": graphene.Field(node, required=True),
    })
    connection = type(f"{name}Connection", (graphene.ObjectType,), {
        "edges": graphene.List(graphene.NonNull(edge), required=True),
        "page_info": graphene.Field(PageInfo, required=True),
        "total_count": graphene.Int(required=True),
    })
    return connection, edge


def connection_from_page(page: dict[str, Any], items: list[Any] | None = None, cursors: list[str] | None = None) -> dict:
    """Turn a service page (items, cursors, page_info, total_count) into a connection value."""
    items = page["items"] if items is None else items
    cursors = cursors if cursors is not None else page.get("cursors") or [i.get("cursor") for i in items]
    edges = [{"cursor": c, "node": n} for c, n in zip(cursors, items)]
    return {
        "edges": edges,
        "page_info": {
            "has_next_page": page["page_info"]["has_next_page"], "has_previous_page": False,
            "start_cursor": cursors[0] if cursors else None, "end_cursor": page["page_info"]["end_cursor"],
        },
        "total_count": page["total_count"],
    }
