"""GraphQL subscriptions over WebSocket with the ``graphql-transport-ws`` protocol.

Messages: connection_init (payload carries the token) -> connection_ack; ping/pong; subscribe
(id, payload {query, variables, operationName}) -> next* -> complete; complete from the
client ends a subscription; error for a subscribe that cannot run (also when the connection
has ``ws_max_subscriptions`` open: code TOO_MANY_SUBSCRIPTIONS). Close codes: 4400 bad
message, 4401 subscribe before ack, 4403 bad token, or a person deactivated or unknown (at
init, and checked again every ``ws_recheck_s`` while open, with the token's expiry), 4408 no
connection_init in time, 4409 an id already in use, 4429 a second connection_init, 1008 more
messages than ``ws_messages_per_s`` allows (bursts of ten times that pass), 1009 a message
over ``ws_max_message_bytes`` (the WebSocket server's own limit), 1013 a client too slow to
keep up (its bounded queue overflowed).

Each connection has its own bounded queue and worker thread: events are turned into results
there (service calls, execution), so a slow client never slows the hub or other clients.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse, specified_rules
from graphql.execution.values import get_argument_values, get_variable_values
from simple_websocket import ConnectionClosed

from services.gateway.auth import verify_token
from services.gateway.clients import ServiceError, ServiceUnavailable, segment
from services.gateway.context import RequestContext
from services.gateway.http import active_refusal, coded, public_error
from services.gateway.kudos import read_kudos
from services.gateway.limits import limit_rules, no_introspection_rule, validate_within_limits
from services.gateway.live import LiveHub
from services.gateway.requests import request_changed_refusal
from services.gateway.schema import run, schema
from shared.errors import AppError

log = logging.getLogger(__name__)
PROTOCOL = "graphql-transport-ws"
QUEUE_SIZE = 100
FIELD_KEYS = {"kudosGiven": "kudos_given", "leaderboardChanged": "leaderboard_changed",
              "badgeAwarded": "badge_awarded", "requestChanged": "request_changed"}


class Close(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class Operation:
    id: str
    document: Any
    variables: dict
    operation_name: str | None
    root_field: str | None = None
    arguments: dict = field(default_factory=dict)
    hub_id: int | None = None
    refresh_pending: bool = False


class Connection:
    def __init__(self, ws, settings, services, hub: LiveHub, base_url: str, init_timeout_s: float = 10.0,
                 active_cache: dict | None = None):
        self.ws, self.settings, self.services, self.hub = ws, settings, services, hub
        self.base_url = base_url
        self.init_timeout_s = init_timeout_s
        self.actor_id: str | None = None
        self.read_only = False
        self.expires_at: datetime | None = None
        self.active_cache = {} if active_cache is None else active_cache
        self.recheck_s = getattr(settings, "ws_recheck_s", 60.0)
        self.next_check = 0.0
        self.max_subscriptions = getattr(settings, "ws_max_subscriptions", 25)
        self.rate = getattr(settings, "ws_messages_per_s", 5.0)
        self.allowance = self.burst = 10 * self.rate  # a token bucket: messages the client may send now
        self.last_message = time.monotonic()
        self.operations: dict[str, Operation] = {}
        self.outbox: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.closed = threading.Event()
        self._send_lock = threading.Lock()

    # -- the connection's life -------------------------------------------------------------------

    def run(self) -> None:
        worker = threading.Thread(target=self._work, name="ws-worker", daemon=True)
        worker.start()
        try:
            self._receive_init()
            while not self.closed.is_set():
                raw = self.ws.receive(timeout=1)
                self._recheck()
                if raw is None:
                    continue
                self._throttle()
                self._handle(self._message(raw))
        except Close as close:
            self._close(close.code, close.reason)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for op in list(self.operations.values()):
                self._stop(op)
            self.outbox.put_nowait(None) if not self.outbox.full() else None
            worker.join(5)

    def _receive_init(self) -> None:
        deadline = time.monotonic() + self.init_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Close(4408, "Connection initialisation timeout")
            raw = self.ws.receive(timeout=left)
            if raw is None:
                continue
            message = self._message(raw)
            if message["type"] == "connection_init":
                payload = message.get("payload") or {}
                token = payload.get("token") or str(payload.get("Authorization") or payload.get("authorization") or "")
                token = token[7:] if token.lower().startswith("bearer ") else token
                try:
                    claims = verify_token(self.settings, token)
                except AppError:
                    raise Close(4403, "Forbidden") from None
                self.actor_id, self.read_only, self.expires_at = claims.subject, claims.read_only, claims.expires_at
                self._recheck()
                self._send({"type": "connection_ack"})
                return
            if message["type"] == "ping":
                self._send({"type": "pong"})
            elif message["type"] == "subscribe":
                raise Close(4401, "Unauthorized")

    def _recheck(self) -> None:
        """Close the connection of a person deactivated (or gone from the directory) or whose
        token expired: at init, then every ``recheck_s``. If the directory cannot be asked
        right now the connection stays (each service still checks who is acting)."""
        now = time.monotonic()
        if now < self.next_check or self.actor_id is None:
            return
        self.next_check = now + self.recheck_s
        if self.expires_at is not None and datetime.now(timezone.utc) >= self.expires_at:
            raise Close(4403, "Forbidden: the token has expired")
        refusal = active_refusal(self.services, self.active_cache, self.actor_id, ttl_s=min(self.recheck_s, 30.0),
                                 people=getattr(self.hub, "people", None))
        if refusal is not None:
            raise Close(4403, f"Forbidden: {refusal[2]}")

    def _throttle(self) -> None:
        """At most ``rate`` messages a second on average, bursts of ten times that."""
        now = time.monotonic()
        self.allowance = min(self.burst, self.allowance + (now - self.last_message) * self.rate)
        self.last_message = now
        if self.allowance < 1:
            raise Close(1008, "Too many messages")
        self.allowance -= 1

    def _message(self, raw: Any) -> dict:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deeply
            raise Close(4400, "Invalid message: not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Close(4400, "Invalid message: no type")
        return message

    def _handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "connection_init":
            raise Close(4429, "Too many initialisation requests")
        if kind == "ping":
            self._send({"type": "pong", **({"payload": message["payload"]} if "payload" in message else {})})
        elif kind == "pong":
            return
        elif kind == "subscribe":
            self._subscribe(message)
        elif kind == "complete":
            op = self.operations.pop(str(message.get("id")), None)
            if op is not None:
                self._stop(op)
        else:
            raise Close(4400, f"Invalid message type {kind!r}")

    # -- subscribe ---------------------------------------------------------------------------------

    def _subscribe(self, message: dict) -> None:
        op_id, payload = message.get("id"), message.get("payload")
        if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise Close(4400, "Invalid message: subscribe needs an id and a payload with a query")
        if op_id in self.operations:
            raise Close(4409, f"Subscriber for {op_id} already exists")
        if len(self.operations) >= self.max_subscriptions:
            return self._send({"id": op_id, "type": "error", "payload": [{
                "message": f"at most {self.max_subscriptions} operations at once on one connection",
                "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS"}}]})
        variables = payload.get("variables") or {}
        try:
            document = parse(payload["query"])
        except GraphQLError as exc:
            return self._send({"id": op_id, "type": "error", "payload": [coded(exc.formatted, "GRAPHQL_PARSE_FAILED")]})
        rules = list(specified_rules)
        if not self.settings.introspection:
            rules.append(no_introspection_rule())
        limits = limit_rules(self.settings.max_query_depth, self.settings.max_aliases, self.settings.max_query_cost, variables)
        errors = validate_within_limits(schema.graphql_schema, document, limits, rules)
        operation = get_operation_ast(document, payload.get("operationName"))
        if errors:
            return self._send({"id": op_id, "type": "error",
                               "payload": [coded(e.formatted, "GRAPHQL_VALIDATION_FAILED") for e in errors]})
        if operation is None:
            return self._send({"id": op_id, "type": "error", "payload": [{
                "message": "name the operation to run (operationName)", "extensions": {"code": "BAD_REQUEST"}}]})
        if self.read_only and operation.operation == OperationType.MUTATION:
            return self._send({"id": op_id, "type": "error", "payload": [{
                "message": "this token is read-only (a screen token)", "extensions": {"code": "FORBIDDEN"}}]})
        op = Operation(op_id, document, variables, payload.get("operationName"))
        self.operations[op_id] = op
        if operation.operation != OperationType.SUBSCRIPTION:
            self._enqueue((op, None))  # a query or mutation: one result, then complete
            return
        field_node = operation.selection_set.selections[0]
        op.root_field = field_node.name.value
        field_def = schema.graphql_schema.subscription_type.fields[op.root_field]
        # The arguments as the schema reads them: variables coerced first (``$p: Period!`` with
        # "WEEK" is the enum value ``week``, as a literal WEEK is), or the hub would match and
        # the refresh would read a board by the raw text ("WEEK"), and never push.
        coerced = get_variable_values(schema.graphql_schema, operation.variable_definitions or [], variables)
        if isinstance(coerced, list):
            self.operations.pop(op_id, None)
            return self._send({"id": op_id, "type": "error", "payload": [coded(e.formatted, "BAD_USER_INPUT") for e in coerced]})
        op.arguments = get_argument_values(field_def, field_node, coerced)
        if op.root_field == "requestChanged":  # the requests service says if the caller may see it
            refusal = request_changed_refusal(self._context(), op.arguments.get("id"))
            if refusal is not None:
                self.operations.pop(op_id, None)
                return self._send({"id": op_id, "type": "error", "payload": [refusal]})
        op.hub_id = self.hub.subscribe(op.root_field, op.arguments, lambda envelope, op=op: self._enqueue((op, envelope)))

    def _stop(self, op: Operation) -> None:
        if op.hub_id is not None:
            self.hub.unsubscribe(op.hub_id)
            op.hub_id = None

    def _enqueue(self, item) -> None:
        op, envelope = item
        if envelope is not None and op.root_field == "leaderboardChanged":
            # The event says the awards are on the boards (points.applied): read now. A refresh
            # already queued reads the board after this event too, so a burst queues one, and
            # one more once the worker has started reading (it clears the flag first).
            if op.refresh_pending:
                return
            op.refresh_pending = True
        self._put(item)

    def _put(self, item) -> None:
        if self.closed.is_set():
            return
        try:
            self.outbox.put_nowait(item)
        except queue.Full:
            log.warning("client too slow, closing", extra={"actor": self.actor_id})
            self.closed.set()
            self._close(1013, "Too slow: events were dropped")

    # -- the worker: events -> results ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None or self.closed.is_set():
                return
            op, envelope = item
            if op.id not in self.operations:
                continue
            try:
                if envelope is None:
                    self._send({"id": op.id, "type": "next", "payload": self._execute(op, None)})
                    self.operations.pop(op.id, None)
                    self._send({"id": op.id, "type": "complete"})
                else:
                    result = self._execute(op, self._root(op, envelope))
                    if result is not None:
                        self._send({"id": op.id, "type": "next", "payload": result})
            except ConnectionClosed:
                self.closed.set()
                return
            except Exception:  # noqa: BLE001 - keep serving this client's other subscriptions
                log.exception("subscription event failed", extra={"op": op.id})

    def _context(self) -> RequestContext:
        return RequestContext(actor_id=self.actor_id, services=self.services, base_url=self.base_url,
                              read_only=self.read_only)

    def _root(self, op: Operation, envelope) -> dict | None:
        ctx, data = self._context(), envelope.data
        key = FIELD_KEYS[op.root_field]
        try:
            if op.root_field == "kudosGiven":
                return {key: read_kudos(ctx, data["kudos_id"])}  # a private one only for who may see it
            if op.root_field == "requestChanged":
                return {key: ctx.services.requests.get(f"/requests/{segment(data['request_id'])}", self.actor_id)}
            if op.root_field == "badgeAwarded":
                return {key: {"person_id": data["person_id"], "badge": data["badge"], "name": data["name"],
                              "tier": data.get("tier"), "awarded_at": data["at"],
                              "evidence_event_ids": data.get("evidence_event_ids", [])}}
            op.refresh_pending = False  # boards changed from now on ask for another refresh
            args = op.arguments
            return {key: ctx.services.points.get(
                "/leaderboard", self.actor_id, period=_plain(args.get("period")), scope=_plain(args.get("scope")) or "company",
                department=_plain(args.get("department")), role=_plain(args.get("role")), first=10, me=self.actor_id)}
        except (ServiceError, ServiceUnavailable) as exc:
            log.warning("subscription payload unavailable", extra={"field": op.root_field, "error": repr(exc)})
            return None

    def _execute(self, op: Operation, root: dict | None) -> dict | None:
        if root is None and op.root_field is not None:
            return None
        result = run(op.document, self._context(), op.variables, op.operation_name, root=root)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [public_error(e) for e in result.errors]  # as over HTTP: a code, never internals
        return body

    # -- sending ------------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        with self._send_lock:
            self.ws.send(json.dumps(message, separators=(",", ":")))

    def _close(self, code: int, reason: str) -> None:
        try:
            self.ws.close(reason=code, message=reason)
        except Exception:  # noqa: BLE001 - already closed
            pass


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
