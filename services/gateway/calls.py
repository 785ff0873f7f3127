"""How resolvers and mutations call the services, and how a service's refusal becomes a GraphQL
answer.

Business-rule refusals from the services (HTTP 400/409/422) become ``errors: [UserError]`` in
a mutation's payload (``field``, ``code``, ``message``); permission refusals (401/403) and
unavailable services stay GraphQL errors with an ``extensions.code``.
"""

from __future__ import annotations

from typing import Any, Callable

from graphql import GraphQLError

from services.gateway.clients import ServiceError, ServiceUnavailable


def camel(name: str | None) -> str | None:
    if not name:
        return name
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class GatewayError(GraphQLError):
    """A GraphQL error with a stable ``extensions.code``."""

    def __init__(self, message: str, code: str):
        super().__init__(message, extensions={"code": code})


def refused(exc: ServiceError) -> GraphQLError:
    code = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND"}.get(exc.status, exc.code.upper())
    return GatewayError(exc.message, code)


def call_service(fn: Callable[[], Any]) -> Any:
    """Run a service call inside a query resolver: refusals become GraphQL errors."""
    try:
        return fn()
    except ServiceError as exc:
        raise refused(exc) from None
    except ServiceUnavailable as exc:
        raise GatewayError(str(exc), "SERVICE_UNAVAILABLE") from None


def call_service_or_none(fn: Callable[[], Any]) -> Any:
    """Like :func:`call_service` for a lookup by id: a missing object is null, not an error."""
    try:
        return fn()
    except ServiceError as exc:
        if exc.status == 404:
            return None
        raise refused(exc) from None
    except ServiceUnavailable as exc:
        raise GatewayError(str(exc), "SERVICE_UNAVAILABLE") from None


def private(fn: Callable[[], Any]) -> Any:
    """Like :func:`call_service` for a person's private figure (kudos allowance): null, not an
    error, when the owning service says it is not the caller's to see (``private``)."""
    try:
        return fn()
    except ServiceError as exc:
        if exc.status == 403 and exc.code == "private":
            return None
        raise refused(exc) from None
    except ServiceUnavailable as exc:
        raise GatewayError(str(exc), "SERVICE_UNAVAILABLE") from None


def run_mutation(payload_field: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run a mutation's service call; business-rule refusals become the payload's errors."""
    try:
        return {payload_field: fn(), "errors": []}
    except ServiceError as exc:
        if exc.status in (400, 409, 422):
            return {payload_field: None,
                    "errors": [{"field": camel(exc.field), "code": exc.code.upper(), "message": exc.message}]}
        raise refused(exc) from None
    except ServiceUnavailable as exc:
        raise GatewayError(str(exc), "SERVICE_UNAVAILABLE") from None
