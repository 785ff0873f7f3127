"""GraphQL over HTTP, done properly: POST and GET (queries only), sign-on, limits, one error shape.

- ``POST /graphql`` with ``application/json`` ``{query, variables, operationName}``;
  ``GET /graphql?query=...`` for queries only (a mutation over GET answers 405).
- Answers ``application/graphql-response+json`` when the client names it (status codes of
  the GraphQL-over-HTTP spec: 400 for a request that cannot run, 200 once it ran, even with
  field errors), else ``application/json`` (also for ``*/*`` or no Accept) with 200 for any
  well-formed request, its errors in the body (syntax, validation, variables).
- ``Authorization: Bearer <JWT>`` on every operation; 401 without a valid one, no data.
- Limits before execution: body size (413), query depth, aliases, estimated cost,
  introspection switch; a per-person rate limit (429 with Retry-After).
- Unexpected errors are logged with the request id and answered as "internal error": no
  stack trace ever reaches a client.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests as http
from flask import Blueprint, Response, current_app, request, send_file
from graphql import GraphQLError, OperationType, get_operation_ast, parse, specified_rules, validate

from services.gateway.auth import bearer_token, verify_token
from services.gateway.clients import ServiceError, ServiceUnavailable, segment
from services.gateway.context import RequestContext
from services.gateway.limits import RateLimiter, as_limits_see, limit_rules, no_introspection_rule
from services.gateway.schema import run, schema
from shared import fonts
from shared.errors import AppError

log = logging.getLogger(__name__)

# Portals and screens send the same few queries over and over: parsing and validating each
# once (graphql-core does both in Python) is most of a small query's cost in the gateway.
CACHED_QUERY_CHARS = 10_000


@lru_cache(maxsize=512)
def _parse_cached(query: str):
    return parse(query)


def _parse(query: str):
    """The parsed document (shared, never changed by execution); a GraphQLError if it is not GraphQL."""
    return _parse_cached(query) if len(query) <= CACHED_QUERY_CHARS else parse(query)


@lru_cache(maxsize=512)
def _rule_errors_cached(query: str, introspection: bool) -> tuple:
    return tuple(_validate_rules(_parse_cached(query), introspection))


def _validate_rules(document, introspection: bool) -> list:
    rules = list(specified_rules) + ([] if introspection else [no_introspection_rule()])
    return validate(schema.graphql_schema, document, rules=rules)


# The limits' verdict depends on the query and its variables' page sizes (the cost rule):
# remembered for the same pair (limits.as_limits_see), when there are few variables.
CACHED_VARIABLES_CHARS = 1_000


@lru_cache(maxsize=1024)
def _limit_errors_cached(query: str, variables_json: str, max_depth: int, max_aliases: int, max_cost: int) -> tuple:
    limits = limit_rules(max_depth, max_aliases, max_cost, json.loads(variables_json))
    return tuple(validate(schema.graphql_schema, _parse_cached(query), rules=limits))


def _limit_errors(query: str, document, variables: dict, settings) -> list:
    """The depth, alias, cost and field-count limits' errors for this query and variables."""
    if len(query) <= CACHED_QUERY_CHARS:
        try:
            key = json.dumps(as_limits_see(variables), sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            key = None
        if key is not None and len(key) <= CACHED_VARIABLES_CHARS:
            return list(_limit_errors_cached(query, key, settings.max_query_depth, settings.max_aliases,
                                             settings.max_query_cost))
    limits = limit_rules(settings.max_query_depth, settings.max_aliases, settings.max_query_cost, variables)
    return validate(schema.graphql_schema, document, rules=limits)


def _rule_errors(query: str, document, introspection: bool) -> list:
    """The specified GraphQL rules' errors for this query (remembered per query text)."""
    if len(query) <= CACHED_QUERY_CHARS:
        return list(_rule_errors_cached(query, introspection))
    return _validate_rules(document, introspection)
graphql_api = Blueprint("graphql", __name__)
GRAPHQL_RESPONSE = "application/graphql-response+json"


def _answer(body: dict[str, Any], status: int, media_type: str, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype=media_type, headers=headers or {})


def _media_type() -> str:
    """``application/graphql-response+json`` when the client names it (at least as high as
    ``application/json``); ``application/json`` when it names that, accepts anything
    (``*/*``) or sends no Accept at all (the GraphQL-over-HTTP spec: a client that says
    nothing is taken as a legacy ``application/json`` one)."""
    accept = request.accept_mimetypes
    named = {value.lower(): quality for value, quality in accept}
    graphql, plain = named.get(GRAPHQL_RESPONSE, 0), named.get("application/json", 0)
    if graphql > 0 and graphql >= plain:
        return GRAPHQL_RESPONSE
    if not accept or accept.best_match(["application/json"]) is not None:
        return "application/json"
    return GRAPHQL_RESPONSE


def _unrunnable(media_type: str) -> int:
    """The status of a well-formed request whose document cannot run (syntax, validation,
    limits, variable values): 400 in ``application/graphql-response+json``, 200 in
    ``application/json``, where the body's errors say it (the spec's legacy rule)."""
    return 400 if media_type == GRAPHQL_RESPONSE else 200


def _request_error(message: str, code: str, status: int, media_type: str, headers: dict | None = None) -> Response:
    return _answer({"errors": [{"message": message, "extensions": {"code": code}}]}, status, media_type, headers)


_TOO_DEEP = "the JSON is nested too deeply"


def _params() -> dict[str, Any]:
    if request.method == "GET":
        raw = request.args.to_dict()
        if "variables" in raw and raw["variables"]:
            try:
                raw["variables"] = json.loads(raw["variables"])
            except ValueError:
                raise AppError("bad_request", "variables must be a JSON object") from None
            except RecursionError:
                raise AppError("bad_request", _TOO_DEEP) from None
        return raw
    if request.mimetype == "application/graphql":
        return {"query": request.get_data(as_text=True)}
    if request.mimetype != "application/json":
        raise AppError("unsupported_media_type", "send application/json (or application/graphql)")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder recurses per level of nesting
        raise AppError("bad_request", _TOO_DEEP) from None
    if isinstance(body, list):
        # Batching would let one request run many operations past the per-request limits.
        raise AppError("bad_request", "batched operations (a JSON array) are not accepted: send one operation per request")
    if not isinstance(body, dict):
        raise AppError("bad_request", "the body must be a JSON object with a query")
    return body


@graphql_api.route("/graphql", methods=["GET", "POST"])
def graphql_endpoint():
    settings = current_app.config["SETTINGS"]
    media_type = _media_type()
    if request.method == "GET" and "query" not in request.args and request.accept_mimetypes.accept_html:
        return current_app.send_static_file("graphiql.html")
    if (request.content_length or 0) > settings.max_body_bytes:
        return _request_error(f"the request body is larger than {settings.max_body_bytes} bytes", "BODY_TOO_LARGE", 413, media_type)

    try:
        params = _params()
    except AppError as exc:
        status = 415 if exc.code == "unsupported_media_type" else 400
        return _request_error(exc.message, exc.code.upper(), status, media_type)
    query, variables, operation_name = params.get("query"), params.get("variables") or {}, params.get("operationName")
    if not isinstance(query, str) or not query.strip():
        return _request_error("no query: send {\"query\": \"...\"}", "BAD_REQUEST", 400, media_type)
    if not isinstance(variables, dict) or (operation_name is not None and not isinstance(operation_name, str)):
        return _request_error("variables must be an object and operationName a string", "BAD_REQUEST", 400, media_type)

    try:
        document = _parse(query)
    except GraphQLError as exc:
        return _answer({"errors": [coded(exc.formatted, "GRAPHQL_PARSE_FAILED")]}, _unrunnable(media_type), media_type)
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return _request_error("name the operation to run (operationName)", "BAD_REQUEST", 400, media_type)
    if request.method == "GET" and operation.operation != OperationType.QUERY:
        return _request_error("mutations are sent with POST, never GET", "METHOD_NOT_ALLOWED", 405, media_type,
                              {"Allow": "POST"})

    try:
        claims = verify_token(settings, bearer_token(request.headers.get("Authorization")))
    except AppError as exc:
        return _request_error(exc.message, "UNAUTHENTICATED", 401, media_type, {"WWW-Authenticate": "Bearer"})

    if claims.read_only and operation.operation != OperationType.QUERY:
        return _request_error("this token is read-only (a screen token)", "FORBIDDEN", 403, media_type)
    refusal = _refuse_inactive(claims.subject)
    if refusal is not None:
        status, code, message = refusal
        return _request_error(message, code, status, media_type)

    limiter: RateLimiter = current_app.extensions["rate_limiter"]
    allowed, wait = limiter.allow(claims.subject)
    if not allowed:
        return _request_error("too many requests; slow down", "RATE_LIMITED", 429, media_type,
                              {"Retry-After": str(max(1, int(wait + 0.999)))})

    # The cheap limits first (the cost rule sees the variables), remembered per query text and
    # variables; the specified rules only for a document within them, remembered per query text.
    errors = _limit_errors(query, document, variables, settings) or _rule_errors(query, document, settings.introspection)
    if errors:
        return _answer({"errors": [coded(e.formatted, "GRAPHQL_VALIDATION_FAILED") for e in errors]},
                       _unrunnable(media_type), media_type)

    context = RequestContext(actor_id=claims.subject, services=current_app.extensions["services"],
                             base_url=request.host_url.rstrip("/"), read_only=claims.read_only)
    result = run(document, context, variables, operation_name)
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [public_error(e) for e in result.errors]
    if settings.env != "production":
        body["extensions"] = {"serviceCalls": context.calls}  # to see batching at work
    if result.data is None and result.errors and media_type == GRAPHQL_RESPONSE:
        # The operation could not start (e.g. bad variable values): a request error.
        return _answer(body, 400 if _is_request_error(result.errors) else 200, media_type)
    return _answer(body, 200, media_type)


ACTIVE_CHECK_TTL_S = 30.0
INACTIVE = (403, "FORBIDDEN", "this account is deactivated")


def _refuse_inactive(person_id: str) -> tuple[int, str, str] | None:
    """A valid token for someone deactivated, or unknown to the directory, gets no data.

    Answered from the people topic's copy (live.PeopleStatus) for anyone it knows; else asked
    of the requests service and cached for 30 s per person. If the directory cannot be asked
    right now the request goes on: every service still checks who is acting, and refuses them
    itself.
    """
    return active_refusal(current_app.extensions["services"], current_app.extensions["active_cache"], person_id,
                          people=current_app.extensions["live_hub"].people)


def active_refusal(services, cache: dict, person_id: str, ttl_s: float = ACTIVE_CHECK_TTL_S,
                   people=None) -> tuple[int, str, str] | None:
    """(status, code, message) when ``person_id`` is deactivated or unknown, else None: from
    ``people`` (live.PeopleStatus) when it knows them, else asked of the requests service and
    kept ``ttl_s`` in ``cache``; None if it cannot be asked now."""
    active = people.active(person_id) if people is not None else None
    if active is not None:
        return None if active else INACTIVE
    now = time.monotonic()
    hit = cache.get(person_id)
    if hit is not None and now - hit[0] < ttl_s:
        return hit[1]
    try:
        services.requests.get(f"/people/{segment(person_id)}", person_id)
        verdict = None
    except ServiceError as exc:
        verdict = (INACTIVE if exc.code == "inactive_actor"
                   else (401, "UNAUTHENTICATED", "the signed-in person is not in the directory"))
    except ServiceUnavailable:
        return None
    if len(cache) > 10_000:
        cache.clear()
    cache[person_id] = (now, verdict)
    return verdict


def _is_request_error(errors: list[GraphQLError]) -> bool:
    return all(e.path is None for e in errors)


def coded(formatted: dict[str, Any], code: str) -> dict[str, Any]:
    """``formatted`` with ``extensions.code`` (``code`` unless it has one): every error a client
    gets names a stable code (docs/graphql.md)."""
    extensions = formatted.get("extensions") or {}
    return formatted if extensions.get("code") else {**formatted, "extensions": {**extensions, "code": code}}


def public_error(error: GraphQLError) -> dict[str, Any]:
    """What a client may see of an error: its message and code; never internals."""
    original = error.original_error
    if original is None or isinstance(original, (GraphQLError, ServiceError, ServiceUnavailable)):
        # Without a path the operation never started: its variables' values were refused.
        return coded(error.formatted, "BAD_USER_INPUT" if error.path is None else "FIELD_ERROR")
    incident = uuid.uuid4().hex[:12]
    log.error("resolver failed", exc_info=original, extra={"incident": incident, "path": error.path})
    return {"message": f"internal error (incident {incident})", "path": error.path, "locations": error.formatted.get("locations"),
            "extensions": {"code": "INTERNAL"}}


@graphql_api.get("/screens/leaderboard")
def leaderboard_screen():
    """The office TV page: no build step; it signs in with ?token=... or the configured screen token."""
    settings = current_app.config["SETTINGS"]
    page = (Path(current_app.root_path) / "static" / "screen.html").read_text(encoding="utf-8")
    if settings.screen_token:
        config = json.dumps({"token": settings.screen_token}).replace("</", "<\\/")
        page = page.replace("<!--SCREEN_CONFIG-->", f"<script>window.SCREEN_CONFIG = {config};</script>")
    return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})


# Web fonts: the faces the kudos cards are drawn with (shared/fonts), so the screen and any
# portal page show every name (CJK, Thai, Devanagari, colour emoji) whatever the browser's
# machine has installed. Public like the screen page; any origin may load them (a portal
# elsewhere links /fonts/fonts.css and sets ``font-family: var(--it-font)``).
FONT_HEADERS = {"Access-Control-Allow-Origin": "*"}


@graphql_api.get("/fonts/fonts.css")
def web_fonts_css():
    return Response(fonts.web_fonts_css("/fonts/"), mimetype="text/css",
                    headers={**FONT_HEADERS, "Cache-Control": "public, max-age=3600"})


@graphql_api.get("/fonts/<name>")
def web_font(name: str):
    path = fonts.served_files(fonts.font_dir(current_app.config["SETTINGS"])).get(name)
    if path is None or not path.is_file():
        return Response("no such font\n", status=404, mimetype="text/plain")
    response = send_file(path, mimetype="font/collection" if name.endswith(".ttc") else "font/ttf",
                         conditional=True, max_age=7 * 24 * 3600)
    response.headers.update(FONT_HEADERS)
    return response


@graphql_api.get("/schema.graphql")
def sdl():
    return Response(str(schema) + "\n", mimetype="text/plain", headers={"Content-Disposition": "inline; filename=schema.graphql"})


@graphql_api.get("/cards/<path:name>")
def card(name: str):
    """Kudos cards are public: pass them through from the kudos service, with caching headers."""
    settings = current_app.config["SETTINGS"]
    headers = {k: v for k, v in request.headers.items() if k.lower() == "if-none-match"}
    try:
        card_path = f"/cards/{segment(name)}"
    except ServiceError as exc:  # a name no card has (one with a "/")
        return _request_error(exc.message, "NOT_FOUND", 404, "application/json")
    try:
        upstream = http.get(f"{settings.service_url('kudos')}{card_path}", headers=headers,
                            params={"s": request.args["s"]} if "s" in request.args else None, timeout=settings.service_timeout_s)
    except http.RequestException:
        return _request_error("cards are unavailable right now", "SERVICE_UNAVAILABLE", 503, "application/json")
    keep = {k: v for k, v in upstream.headers.items() if k.lower() in ("etag", "cache-control", "content-type")}
    return Response(upstream.content, status=upstream.status_code, headers=keep)
